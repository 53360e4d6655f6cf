// test_cuda_ops.cpp — every CUDA op against the CPU op (or a float64 host reference) on fresh
// random inputs, with poisoned outputs so that unwritten elements are caught; and a timing mode.
//
//   test_cuda_ops            checks (exit 77 = skipped: no usable GPU)
//   test_cuda_ops --bench    times matvec (decode/verify shapes of 7B-class models) and attention
//   test_cuda_ops --bench-types   times matvec and F16 dequantization of each quantized type,
//                                 against the device's copy bandwidth
//
// Errors are NMSE = |out - ref|^2 / |ref|^2 against float64 references. Batch invariance (a
// token's result bit-identical alone or inside a batch of up to 64) is checked exactly.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "check.h"
#include "cpu/kernels.h"
#include "cpu/ops.h"
#include "cuda/launch.h"
#include "cuda/prompt_attention.h"
#include "cuda/weight_layout.h"
#include "ggml_types.h"
#include "rope.h"
#include "runner.h"

using namespace apls;
using apls::cuda::DeviceBuffer;
using apls::cuda::DeviceWeight;

namespace {

std::mt19937_64& rng() {
    static std::mt19937_64 r(std::random_device{}());  // fresh inputs every run
    return r;
}

std::vector<float> randn(size_t n, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng());
    return v;
}

template <typename T>
DeviceBuffer<T> upload(const std::vector<T>& v) {
    DeviceBuffer<T> b(v.size());
    APLS_CUDA_CHECK(cudaMemcpy(b.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return b;
}

template <typename T>
std::vector<T> download(const DeviceBuffer<T>& b, size_t n) {
    std::vector<T> v(n);
    APLS_CUDA_CHECK(cudaDeviceSynchronize());
    APLS_CUDA_CHECK(cudaMemcpy(v.data(), b.get(), n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
}

template <typename T>
void poison(DeviceBuffer<T>& b) {  // NaN in every float (0xFF bytes)
    APLS_CUDA_CHECK(cudaMemset(b.get(), 0xFF, b.size() * sizeof(T)));
}

double nmse(const std::vector<float>& out, const std::vector<double>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        if (!std::isfinite(out[i])) return INFINITY;  // unwritten (poison) or broken
        num += (out[i] - ref[i]) * (out[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return den > 0 ? num / den : num;
}

// Random weights of a type: quantized blocks with random scales and values (valid blocks).
std::vector<uint8_t> random_weights(TensorType t, int64_t rows, int64_t k) {
    const TypeTraits tt = type_traits(t);
    const size_t bytes = static_cast<size_t>(rows * k / tt.block * tt.bytes);
    std::vector<uint8_t> w(bytes);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> scale(0.001f, 0.02f);
    const std::vector<float> f = randn(static_cast<size_t>(rows * k), 0.05f);
    switch (t) {
        case TensorType::F32:
            std::memcpy(w.data(), f.data(), bytes);
            break;
        case TensorType::F16:
            for (size_t i = 0; i < f.size(); ++i) {
                uint16_t h = f32_to_f16(f[i]);
                std::memcpy(&w[2 * i], &h, 2);
            }
            break;
        case TensorType::BF16:
            for (size_t i = 0; i < f.size(); ++i) {
                uint32_t u;
                std::memcpy(&u, &f[i], 4);
                uint16_t h = u >> 16;
                std::memcpy(&w[2 * i], &h, 2);
            }
            break;
        default: {
            for (auto& b : w) b = static_cast<uint8_t>(byte(rng()));
            // Sane half-precision fields (random bits could be NaN or inf): the scale d, and the
            // offset m of Q4_1/Q5_1 or the min scale dmin of Q4_K/Q5_K (6-bit sub-scales stay random).
            const bool has_m = t == TensorType::Q4_1 || t == TensorType::Q5_1;
            const bool kq = t == TensorType::Q4_K || t == TensorType::Q5_K;
            const size_t d_at = t == TensorType::Q6_K ? 208 : 0;
            for (size_t off = 0; off < bytes; off += tt.bytes) {
                const float ks = kq ? 1.0f / 32 : t == TensorType::Q6_K ? 1.0f / 64 : 1.0f;
                uint16_t d = f32_to_f16(ks * scale(rng())), m = f32_to_f16(-8.0f * scale(rng()));
                uint16_t dmin = f32_to_f16(ks * scale(rng()));
                std::memcpy(&w[off + d_at], &d, 2);
                if (has_m) std::memcpy(&w[off + 2], &m, 2);
                if (kq) std::memcpy(&w[off + 2], &dmin, 2);
            }
        }
    }
    return w;
}

// GGUF rows of a type on the device, in the device layout (as the model loader uploads them).
struct DeviceRows {
    DeviceBuffer<uint8_t> buf;
    DeviceWeight w;
};
DeviceRows upload_rows(TensorType t, const std::vector<uint8_t>& gguf, int64_t rows, int64_t k) {
    std::vector<uint8_t> dev(cuda::device_row_bytes(t, k) * static_cast<size_t>(rows));
    cuda::to_device_rows(t, gguf.data(), k, rows, dev.data());
    DeviceRows r{upload(dev), {}};
    r.w = DeviceWeight{t, r.buf.get(), k, rows, cuda::device_row_bytes(t, k)};
    return r;
}

std::vector<double> matvec_ref(TensorType t, const std::vector<uint8_t>& w, int64_t rows, int64_t k,
                               const std::vector<float>& x, int n) {
    std::vector<double> y(static_cast<size_t>(n * rows));
    std::vector<float> row(static_cast<size_t>(k));
    const uint64_t rb = static_cast<uint64_t>(k) / type_traits(t).block * type_traits(t).bytes;
    for (int64_t r = 0; r < rows; ++r) {
        cpu::dequantize_row(t, w.data() + r * rb, row.data(), k);
        for (int i = 0; i < n; ++i) {
            double s = 0;
            for (int64_t j = 0; j < k; ++j) s += static_cast<double>(row[j]) * x[i * k + j];
            y[i * rows + r] = s;
        }
    }
    return y;
}

const TensorType kTypes[] = {TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q8_0,
                             TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,
                             TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K};

bool is_k_quant(TensorType t) { return type_traits(t).block == 256; }

// Row sizes for a type's tests: the given ones, or for the K-quants (super-blocks of 256) the
// nearest multiples of 256 (at least one).
std::vector<int64_t> sizes_for(TensorType t, std::initializer_list<int64_t> ks) {
    std::vector<int64_t> out;
    for (int64_t k : ks) out.push_back(is_k_quant(t) ? std::max<int64_t>(256, (k + 255) / 256 * 256) : k);
    return out;
}

}  // namespace

namespace {

// Q8 activations on the device (quantize_q8) for n rows of k.
struct DeviceActs {
    DeviceBuffer<int8_t> qs;
    DeviceBuffer<float> d, s;
    cuda::QActs acts;
    DeviceActs(const DeviceBuffer<float>& x, int n, int64_t k) : qs(n * k + 1), d(n * k / 32 + 1), s(n * k / 32 + 1) {
        acts = cuda::QActs{qs.get(), d.get(), s.get()};
        cuda::quantize_q8(x.get(), n, k, acts, nullptr);
    }
};

}  // namespace

APLS_TEST(quantize_q8_is_the_cpu_quantization_bit_for_bit) {
    const int n = 3;
    const int64_t k = 4096;
    auto x = randn(static_cast<size_t>(n * k), 2.0f);
    for (int i = 0; i < 32; ++i) x[i] = 0.0f;                       // an all-zero block
    for (int i = 32; i < 64; ++i) x[i] = (i % 2 ? 0.5f : -0.5f) * 127.0f / 64.0f;  // rounding ties
    auto dx = upload(x);
    DeviceActs a(dx, n, k);
    const auto qs = download(a.qs, a.qs.size());
    const auto d = download(a.d, a.d.size()), s = download(a.s, a.s.size());
    std::vector<cpu::BlockQ8A> ref(static_cast<size_t>(n * k / 32));
    for (int i = 0; i < n; ++i) cpu::kernels_generic()->quantize_act(x.data() + i * k, ref.data() + i * k / 32, k);
    bool same = true;
    for (size_t b = 0; b < ref.size(); ++b) {
        same &= std::memcmp(&ref[b].d, &d[b], 4) == 0 && std::memcmp(&ref[b].s, &s[b], 4) == 0;
        same &= std::memcmp(ref[b].qs, qs.data() + b * 32, 32) == 0;
    }
    CHECK(same);
}

APLS_TEST(matvec_matches_reference_and_is_batch_invariant) {
    for (TensorType t : kTypes) {
        const bool quant = cuda::is_quantized(t);
        for (int64_t k : sizes_for(t, {576, 4096, 96, 1536})) {
            const int64_t rows = 300;
            const auto w = random_weights(t, rows, k);
            const int n = cuda::kMaxMatvecTokens;  // 64: groups of 16 beyond 16 tokens
            const auto x = randn(static_cast<size_t>(n * k));
            const DeviceRows dw = upload_rows(t, w, rows, k);
            const DeviceWeight& W = dw.w;
            auto dx = upload(x);
            DeviceActs xq(dx, n, k);
            // Reference: float64 for float weights; the CPU kernel (same Q8 activations, exact
            // integer dots) for quantized ones, so only the float summation order differs.
            std::vector<double> ref;
            if (quant) {
                std::vector<cpu::BlockQ8A> xa(static_cast<size_t>(n * k / 32));
                for (int i = 0; i < n; ++i)
                    cpu::kernels_generic()->quantize_act(x.data() + i * k, xa.data() + i * k / 32, k);
                std::vector<float> yc(static_cast<size_t>(n * rows));
                cpu::kernels_generic()->matmul_q(t, w.data(), k, xa.data(), n, yc.data(), rows, 0, rows);
                ref.assign(yc.begin(), yc.end());
            } else {
                ref = matvec_ref(t, w, rows, k, x, n);
            }
            DeviceBuffer<float> y(static_cast<size_t>(n * rows));
            poison(y);
            cuda::matvec(W, rows, dx.get(), xq.acts, n, y.get(), rows, false, nullptr);
            const auto batch = download(y, y.size());
            const double e = nmse(batch, ref);
            if (!(e < 1e-11)) std::fprintf(stderr, "matvec %s k=%ld: nmse %.3g\n", type_name(t).c_str(), (long)k, e);
            CHECK(e < 1e-11);
            // Each batch size: the same bits for every token as in the largest batch.
            for (int m : {1, 2, 3, 5, 8, 9, 13, 16, 17, 40}) {
                poison(y);
                cuda::matvec(W, rows, dx.get(), xq.acts, m, y.get(), rows, false, nullptr);
                const auto part = download(y, static_cast<size_t>(m * rows));
                CHECK(std::memcmp(part.data(), batch.data(), part.size() * 4) == 0);
            }
            // accumulate: y += W x.
            cuda::matvec(W, rows, dx.get(), xq.acts, n, y.get(), rows, false, nullptr);
            cuda::matvec(W, rows, dx.get(), xq.acts, n, y.get(), rows, true, nullptr);
            const auto twice = download(y, y.size());
            std::vector<double> ref2(ref);
            for (auto& v : ref2) v *= 2;
            CHECK(nmse(twice, ref2) < 1e-11);
        }
    }
}

// Embedding lookups read rows of the device layout: the CPU's dequantized values bit for bit,
// also for rows padded to 16 bytes (k = 96: three blocks).
APLS_TEST(embed_is_the_cpu_dequantization) {
    for (TensorType t : kTypes) {
        for (int64_t k : sizes_for(t, {96, 576})) {
            const int64_t rows = 50;
            const auto w = random_weights(t, rows, k);
            const DeviceRows dw = upload_rows(t, w, rows, k);
            const std::vector<int32_t> tokens = {3, 0, 49, 3, 17};
            auto dt = upload(tokens);
            DeviceBuffer<float> x(tokens.size() * static_cast<size_t>(k));
            poison(x);
            cuda::embed(dw.w, dt.get(), static_cast<int>(tokens.size()), x.get(), nullptr);
            const auto out = download(x, x.size());
            std::vector<float> ref(out.size());
            for (size_t i = 0; i < tokens.size(); ++i)
                cpu::dequantize_row(t, w.data() + tokens[i] * (w.size() / rows), ref.data() + i * k, k);
            CHECK(std::memcmp(out.data(), ref.data(), out.size() * 4) == 0);
        }
    }
}

APLS_TEST(gemm_path_types_dequantize_to_f16) {
    for (TensorType t : kTypes) {
        for (int64_t k : sizes_for(t, {256, 96, 512})) {
            const int64_t rows = 64;
            const auto w = random_weights(t, rows, k);
            const DeviceRows dw = upload_rows(t, w, rows, k);
            DeviceBuffer<uint16_t> out(static_cast<size_t>(rows * k));
            poison(out);
            cuda::dequantize_f16(dw.w, rows, out.get(), nullptr);
            const auto h = download(out, out.size());
            std::vector<float> row(static_cast<size_t>(k));
            bool same = true;
            for (int64_t r = 0; r < rows; ++r) {
                cpu::dequantize_row(t, w.data() + r * (w.size() / rows), row.data(), k);
                for (int64_t j = 0; j < k; ++j) same &= h[r * k + j] == f32_to_f16(row[j]);
            }
            CHECK(same);
        }
    }
}

// d: SmolLM2's 576 (a partial chunk, 160 threads), 2048, and 8192 (two chunks of 1024 x 4).
static void check_rms_norm(int d, bool wide) {
    const int n = 7;
    const auto x = randn(static_cast<size_t>(n * d), 3.0f), w = randn(d);
    const std::vector<int32_t> rows = {6, 0, 3};
    auto dx = upload(x), dw = upload(w);
    auto dr = upload(rows);
    DeviceBuffer<float> y(static_cast<size_t>(n * d));
    for (bool selected : {false, true}) {
        poison(y);
        const int m = selected ? 3 : n;
        cuda::rms_norm(dx.get(), selected ? dr.get() : nullptr, dw.get(), y.get(), m, d, 1e-5f, nullptr, cuda::QActs{},
                       wide);
        const auto out = download(y, static_cast<size_t>(m * d));
        std::vector<double> ref(out.size());
        std::vector<float> row(d);
        for (int i = 0; i < m; ++i) {
            cpu::rms_norm(x.data() + (selected ? rows[i] : i) * d, w.data(), row.data(), d, 1e-5f);
            for (int j = 0; j < d; ++j) ref[i * d + j] = row[j];
        }
        CHECK(nmse(out, ref) < 1e-12);
        // Fused quantization: the same bytes as quantize_q8 of the output.
        DeviceActs alone(y, m, d);
        DeviceBuffer<int8_t> qs(static_cast<size_t>(m * d));
        DeviceBuffer<float> qd(static_cast<size_t>(m * d / 32)), qsum(static_cast<size_t>(m * d / 32));
        cuda::rms_norm(dx.get(), selected ? dr.get() : nullptr, dw.get(), y.get(), m, d, 1e-5f, nullptr,
                       cuda::QActs{qs.get(), qd.get(), qsum.get()}, wide);
        CHECK(download(qs, qs.size()) == download(alone.qs, qs.size()));
        CHECK(download(qd, qd.size()) == download(alone.d, qd.size()));
        CHECK(download(qsum, qsum.size()) == download(alone.s, qsum.size()));
    }
}

APLS_TEST(rms_norm_matches_cpu) {
    for (bool wide : {false, true})  // wide: a thread per element up to 1024 (decode and verify)
        for (int d : {64, 576, 1024, 2048, 8192}) check_rms_norm(d, wide);
}

// Heads of 64 and 128 dimensions, and a partial rotation (n_rot < head_dim: the rest is stored as
// is); pairs adjacent (llama) or NEOX (qwen2, qwen3: (x[i], x[i + n_rot/2])).
static void check_rope_store(int hd, int n_rot, RopeStyle style = RopeStyle::NORM) {
    const int n = 5, nh = 8, nkv = 2, n_layer = 3, layer = 1, kvd = nkv * hd;
    const std::vector<int32_t> pos = {0, 1, 17, 1000, 4095}, slots = {3, 0, 9, 4, 7};
    for (bool f16 : {true, false}) {
        const auto q = randn(static_cast<size_t>(n * nh * hd)), k = randn(static_cast<size_t>(n * kvd)),
                   v = randn(static_cast<size_t>(n * kvd));
        auto dq = upload(q), dk = upload(k), dv = upload(v);
        auto dp = upload(pos), ds = upload(slots);
        auto dfreq = upload(cuda::rope_inv_freq(10000.0f, n_rot));
        const int64_t stride = static_cast<int64_t>(n_layer) * 2 * kvd;
        DeviceBuffer<uint8_t> kv(static_cast<size_t>(10 * stride * (f16 ? 2 : 4)));
        APLS_CUDA_CHECK(cudaMemset(kv.get(), 0, kv.size()));
        cuda::RopeStoreArgs a{dq.get(),
                              dk.get(),
                              dv.get(),
                              dp.get(),
                              ds.get(),
                              n,
                              nh,
                              nkv,
                              hd,
                              n_rot,
                              10000.0f,
                              1.0f,
                              dfreq.get(),
                              kv.get(),
                              stride,
                              layer * 2 * kvd,
                              layer * 2 * kvd + kvd,
                              f16,
                              style};
        cuda::rope_store(a, nullptr);
        const auto qo = download(dq, q.size()), ko = download(dk, k.size());
        const auto cache = download(kv, kv.size());
        std::vector<float> qr(q), kr(k), cs(n_rot);
        std::vector<double> qref(q.size()), kref(k.size());
        for (int i = 0; i < n; ++i) {
            cpu::rope_table(pos[i], n_rot, 10000.0f, 1.0f, cs.data());
            rope_apply(style, qr.data() + i * nh * hd, nh, hd, n_rot, cs.data());
            rope_apply(style, kr.data() + i * kvd, nkv, hd, n_rot, cs.data());
        }
        for (size_t i = 0; i < q.size(); ++i) qref[i] = qr[i];
        for (size_t i = 0; i < k.size(); ++i) kref[i] = kr[i];
        const double eq = nmse(qo, qref), ek = nmse(ko, kref);
        if (!(eq < 1e-12 && ek < 1e-12))
            std::fprintf(stderr, "rope_store %s hd %d n_rot %d %s: nmse q %.3g k %.3g\n",
                         style == RopeStyle::NEOX ? "neox" : "norm", hd, n_rot, f16 ? "f16" : "f32", eq, ek);
        CHECK(eq < 1e-12);
        CHECK(ek < 1e-12);
        bool stored = true;
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < kvd; ++j) {
                const int64_t e = slots[i] * stride + layer * 2 * kvd + j;
                float kc, vc;
                if (f16) {
                    uint16_t hk, hv;
                    std::memcpy(&hk, &cache[2 * e], 2);
                    std::memcpy(&hv, &cache[2 * (e + kvd)], 2);
                    kc = f16_to_f32(hk), vc = f16_to_f32(hv);
                    stored &= hk == f32_to_f16(ko[i * kvd + j]) && hv == f32_to_f16(v[i * kvd + j]);
                } else {
                    std::memcpy(&kc, &cache[4 * e], 4);
                    std::memcpy(&vc, &cache[4 * (e + kvd)], 4);
                    stored &= kc == ko[i * kvd + j] && vc == v[i * kvd + j];
                }
            }
        if (!stored)
            std::fprintf(stderr, "rope_store %s hd %d n_rot %d %s: K/V rows in the cache differ\n",
                         style == RopeStyle::NEOX ? "neox" : "norm", hd, n_rot, f16 ? "f16" : "f32");
        CHECK(stored);
    }
}

APLS_TEST(rope_store_matches_cpu_and_fills_slots) {
    check_rope_store(64, 64);
    check_rope_store(128, 128);
    check_rope_store(128, 64);
    for (auto [hd, n_rot] : {std::pair{64, 64}, {128, 128}, {128, 64}, {24, 24}, {40, 32}})
        check_rope_store(hd, n_rot, RopeStyle::NEOX);
}

// The re-rotation of cached keys after a shift (kv_rerotate), both pair layouts, F16 and F32:
// every layer's K rows of the listed slots as the CPU store rotates them; V rows and other slots
// untouched.
APLS_TEST(kv_rerotate_matches_cpu) {
    const int n_layer = 3, nkv = 2, slots_n = 6;
    for (RopeStyle style : {RopeStyle::NORM, RopeStyle::NEOX})
        for (auto [hd, n_rot] : {std::pair{64, 64}, {40, 32}})
            for (bool f16 : {false, true}) {
                const int kvd = nkv * hd;
                const int64_t stride = static_cast<int64_t>(n_layer) * 2 * kvd;
                std::vector<float> vals = randn(static_cast<size_t>(slots_n * stride));
                std::vector<uint8_t> bytes(vals.size() * (f16 ? 2 : 4));
                for (size_t i = 0; i < vals.size(); ++i) {
                    if (f16) {
                        const uint16_t h = f32_to_f16(vals[i]);
                        std::memcpy(&bytes[2 * i], &h, 2);
                        vals[i] = f16_to_f32(h);
                    } else {
                        std::memcpy(&bytes[4 * i], &vals[i], 4);
                    }
                }
                auto dkv = upload(bytes);
                const std::vector<int32_t> slots = {4, 1};
                auto ds = upload(slots);
                std::vector<float> cs(n_rot);
                cpu::rope_table(-7, n_rot, 10000.0f, 1.0f, cs.data());
                auto dcs = upload(cs);
                cuda::kv_rerotate(dkv.get(), f16, stride, n_layer, kvd, ds.get(), 2, dcs.get(), nkv, hd, n_rot, style,
                                  nullptr);
                const auto out = download(dkv, bytes.size());
                std::vector<float> want = vals;
                for (int32_t s : slots)
                    for (int l = 0; l < n_layer; ++l)
                        rope_apply(style, want.data() + s * stride + l * 2 * kvd, nkv, hd, n_rot, cs.data());
                size_t bad = 0;
                for (size_t i = 0; i < want.size(); ++i) {
                    float got;
                    if (f16) {
                        uint16_t h;
                        std::memcpy(&h, &out[2 * i], 2);
                        got = f16_to_f32(h);
                        bad += h != f32_to_f16(want[i]);
                    } else {
                        std::memcpy(&got, &out[4 * i], 4);
                        bad += got != want[i];
                    }
                }
                if (bad)
                    std::fprintf(stderr, "kv_rerotate %s hd %d n_rot %d %s: %zu values differ from the CPU's\n",
                                 style == RopeStyle::NEOX ? "neox" : "norm", hd, n_rot, f16 ? "f16" : "f32", bad);
                CHECK(bad == 0);
            }
}

// Attention biases: q/k/v rows (one launch) and the output bias, each one float add per element,
// so bit for bit the CPU's cpu::add.
APLS_TEST(biases_are_the_cpu_addition) {
    const int n = 5, qd = 576, kvd = 192, d = 576;
    const auto q = randn(static_cast<size_t>(n * qd)), k = randn(static_cast<size_t>(n * kvd)),
               v = randn(static_cast<size_t>(n * kvd)), bq = randn(qd), bk = randn(kvd), bv = randn(kvd),
               x = randn(static_cast<size_t>(n * d)), bo = randn(d);
    auto dq = upload(q), dk = upload(k), dv = upload(v), dbq = upload(bq), dbk = upload(bk), dbv = upload(bv);
    auto dx = upload(x), dbo = upload(bo);
    cuda::qkv_bias(dq.get(), dk.get(), dv.get(), dbq.get(), dbk.get(), dbv.get(), n, qd, kvd, nullptr);
    cuda::add_bias(dx.get(), dbo.get(), n, d, nullptr);
    auto want = [&](std::vector<float> y, const std::vector<float>& b, int w) {
        for (int i = 0; i < n; ++i) cpu::add(y.data() + i * w, b.data(), w);
        return y;
    };
    const bool ok_q = download(dq, q.size()) == want(q, bq, qd), ok_k = download(dk, k.size()) == want(k, bk, kvd),
               ok_v = download(dv, v.size()) == want(v, bv, kvd), ok_o = download(dx, x.size()) == want(x, bo, d);
    if (!(ok_q && ok_k && ok_v && ok_o))
        std::fprintf(stderr, "biases: q %d k %d v %d out %d (1 = the CPU's bits)\n", ok_q, ok_k, ok_v, ok_o);
    CHECK(ok_q && ok_k && ok_v && ok_o);
}

// q/k norms (qwen3): every head of q and k RMS-normalised in place with weights of head_dim,
// as rms_norm does rows; head dims of qwen3 models and odd-sized test ones.
APLS_TEST(head_rms_norm_matches_cpu) {
    for (int hd : {24, 40, 64, 128}) {
        const int rows = 7 * 16;  // 7 tokens of 16 heads
        const auto x = randn(static_cast<size_t>(rows * hd), 3.0f), w = randn(hd);
        auto dx = upload(x), dw = upload(w);
        cuda::rms_norm(dx.get(), nullptr, dw.get(), dx.get(), rows, hd, 1e-6f, nullptr);
        const auto out = download(dx, x.size());
        std::vector<double> ref(out.size());
        std::vector<float> row(hd);
        for (int i = 0; i < rows; ++i) {
            cpu::rms_norm(x.data() + i * hd, w.data(), row.data(), hd, 1e-6f);
            for (int j = 0; j < hd; ++j) ref[i * hd + j] = row[j];
        }
        const double e = nmse(out, ref);
        if (!(e < 1e-12)) std::fprintf(stderr, "head rms_norm hd %d in place: nmse %.3g\n", hd, e);
        CHECK(e < 1e-12);
    }
}

namespace {

// Attention over random cache contents, float64 reference.
// The batch: the last n_tok positions of one sequence, or (two_seqs) of two sequences with
// separate entry lists, their tokens interleaved in the batch; or (tree) the last n_tok entries
// of one sequence are a token tree (random parents, positions by depth): each token sees the
// entries before the tree, its ancestors and itself (visibility.h).
struct AttnCase {
    int n_head, n_head_kv, hd, n_entries;
    int n_sink = 0, n_window = -1;
    bool explicit_view = false;
    int n_tok = 4;
    bool two_seqs = false;
    bool tree = false;
};

void check_attention(const AttnCase& c) {
    const int n_tok = c.n_tok, n_seq = c.two_seqs ? 2 : 1, kvd = c.n_head_kv * c.hd, n_layer = 2, layer = 1;
    const int64_t stride = static_cast<int64_t>(n_layer) * 2 * kvd;
    const int cap = n_seq * c.n_entries + 8;
    // Entries: slots permuted (a block table), positions 0..n-1 per sequence; the batch is the
    // last positions (token i of sequence i % n_seq).
    std::vector<int32_t> slot(n_seq * c.n_entries), epos(n_seq * c.n_entries);
    for (int j = 0; j < n_seq * c.n_entries; ++j) slot[j] = j, epos[j] = j % c.n_entries;
    std::shuffle(slot.begin(), slot.end(), rng());
    const auto kvf = randn(static_cast<size_t>(cap * stride));
    std::vector<uint16_t> kvh(kvf.size());
    for (size_t i = 0; i < kvf.size(); ++i) kvh[i] = f32_to_f16(kvf[i]);
    const auto q = randn(static_cast<size_t>(n_tok * c.n_head * c.hd), 2.0f);
    std::vector<int32_t> off(n_tok), n_end(n_tok), n_old(n_tok, c.n_entries - n_tok), pos(n_tok);
    for (int i = 0; i < n_tok; ++i)
        off[i] = (i % n_seq) * c.n_entries, pos[i] = c.n_entries - n_tok + i, n_end[i] = pos[i] + 1;
    std::vector<uint64_t> anc(n_tok, 0);  // tree: ancestors-and-self of each token
    if (c.tree) {
        const int base = c.n_entries - n_tok;
        for (int i = 0; i < n_tok; ++i) {
            const int parent = static_cast<int>(rng()() % (i + 1)) - 1;  // -1: a root
            anc[i] = (parent < 0 ? 0 : anc[parent]) | (uint64_t{1} << i);
            pos[i] = parent < 0 ? base : pos[parent] + 1;
            epos[base + i] = pos[i];
            n_end[i] = c.n_entries;  // the tree makes the list unsorted: every entry is tested
        }
    }
    std::vector<uint8_t> mask(n_seq * c.n_entries, 0);  // indexed like the entries (off + j)
    for (int j = 0; j < n_seq * c.n_entries; ++j) mask[j] = (j % c.n_entries % 3 == 0) || j % c.n_entries < 2;
    const bool view = c.explicit_view || c.n_sink > 0 || c.n_window >= 0;
    auto dkv = upload(kvh);
    auto dq = upload(q);
    auto ds = upload(slot), dp = upload(epos), doff = upload(off), dend = upload(n_end), dold = upload(n_old),
         dpos = upload(pos);
    auto danc = upload(anc);
    auto dmask = upload(mask);
    const int max_splits = (cap + cuda::kAttnSplit - 1) / cuda::kAttnSplit;
    DeviceBuffer<float> out(static_cast<size_t>(n_tok * c.n_head * c.hd));
    DeviceBuffer<float> pacc(static_cast<size_t>(n_tok * c.n_head * max_splits * c.hd)),
        pml(static_cast<size_t>(n_tok * c.n_head * max_splits * 2));
    cuda::AttentionArgs a{};
    a.q = dq.get();
    a.out = out.get();
    a.kv = dkv.get();
    a.slot_stride = stride;
    a.k_offset = layer * 2 * kvd;
    a.v_offset = layer * 2 * kvd + kvd;
    a.kv_f16 = true;
    a.entry_slot = ds.get();
    a.entry_pos = dp.get();
    a.view_mask = c.explicit_view ? dmask.get() : nullptr;
    a.off = doff.get();
    a.n_end = dend.get();
    a.n_old = view || c.tree ? dold.get() : nullptr;
    a.anc = c.tree ? danc.get() : nullptr;
    a.pos = dpos.get();
    a.view.n_sink = c.n_sink;
    a.view.n_window = c.n_window;
    a.view.on = view;
    a.view.explicit_list = c.explicit_view;
    a.n_tok = n_tok;
    a.n_head = c.n_head;
    a.n_head_kv = c.n_head_kv;
    a.head_dim = c.hd;
    a.max_splits = max_splits;
    a.part_acc = pacc.get();
    a.part_ml = pml.get();
    poison(out);
    cuda::attention(a, nullptr);
    const auto o = download(out, out.size());

    std::vector<double> ref(o.size(), 0.0);
    const int group = c.n_head / c.n_head_kv;
    for (int i = 0; i < n_tok; ++i)
        for (int h = 0; h < c.n_head; ++h) {
            const int g = h / group;
            std::vector<double> s;
            std::vector<int> who;
            for (int j = 0; j < n_end[i]; ++j) {
                const int p = epos[off[i] + j];
                bool vis = p <= pos[i];
                if (view && j < n_old[i])
                    vis &= c.explicit_view ? mask[off[i] + j] != 0
                                           : (p < c.n_sink || c.n_window < 0 || p > pos[i] - c.n_window);
                if (c.tree && j >= n_old[i]) vis &= ((anc[i] >> (j - n_old[i])) & 1) != 0;
                if (!vis) continue;
                double d = 0;
                for (int e = 0; e < c.hd; ++e)
                    d += static_cast<double>(q[(i * c.n_head + h) * c.hd + e]) *
                         f16_to_f32(kvh[slot[off[i] + j] * stride + layer * 2 * kvd + g * c.hd + e]);
                s.push_back(d / std::sqrt(static_cast<double>(c.hd)));
                who.push_back(j);
            }
            double mx = -INFINITY, sum = 0;
            for (double v : s) mx = std::max(mx, v);
            for (double& v : s) sum += (v = std::exp(v - mx));
            for (size_t u = 0; u < s.size(); ++u)
                for (int e = 0; e < c.hd; ++e)
                    ref[(i * c.n_head + h) * c.hd + e] +=
                        s[u] / sum *
                        f16_to_f32(kvh[slot[off[i] + who[u]] * stride + layer * 2 * kvd + kvd + g * c.hd + e]);
        }
    const double e = nmse(o, ref);
    if (!(e < 1e-10))
        std::fprintf(stderr, "attention heads %d/%d hd %d n %d t %d%s: nmse %.3g\n", c.n_head, c.n_head_kv, c.hd,
                     c.n_entries, n_tok, c.tree ? " tree" : "", e);
    CHECK(e < 1e-10);

    // With Q8 output (quantized Wo): the same floats, and their Q8 blocks bit for bit those of
    // quantize_q8 (DeviceActs) on them.
    if (n_tok <= cuda::kMaxMatvecTokens && c.hd % 32 == 0) {
        const int64_t k = static_cast<int64_t>(c.n_head) * c.hd;
        DeviceBuffer<int8_t> qs(n_tok * k);
        DeviceBuffer<float> qd(n_tok * k / 32), qsum(n_tok * k / 32);
        poison(qd);
        a.out_q = cuda::QActs{qs.get(), qd.get(), qsum.get()};
        poison(out);
        cuda::attention(a, nullptr);
        a.out_q = cuda::QActs{};
        CHECK(std::memcmp(download(out, out.size()).data(), o.data(), o.size() * 4) == 0);
        const DeviceActs want(out, n_tok, k);
        CHECK(download(qs, qs.size()) == download(want.qs, qs.size()));
        const auto d = download(qd, qd.size()), s = download(qsum, qsum.size());
        const auto wd = download(want.d, qd.size()), ws = download(want.s, qsum.size());
        CHECK(std::memcmp(d.data(), wd.data(), d.size() * 4) == 0 &&
              std::memcmp(s.data(), ws.data(), s.size() * 4) == 0);
    }

    // The prompt path (one entry list): cuBLAS scores and values, the same reference.
    if (!c.two_seqs && n_tok > 1) {
        cuda::PromptAttention prompt(nullptr);
        poison(out);
        CHECK(prompt.run(a, c.n_entries));
        const double ep = nmse(download(out, out.size()), ref);
        if (!(ep < 1e-10))
            std::fprintf(stderr, "prompt attention heads %d/%d hd %d n %d t %d: nmse %.3g\n", c.n_head, c.n_head_kv,
                         c.hd, c.n_entries, n_tok, ep);
        CHECK(ep < 1e-10);
    }

    // Batch invariance: the last token alone gives the same bits.
    a.n_tok = 1;
    auto dpos1 = upload(std::vector<int32_t>{pos[n_tok - 1]});
    auto dend1 = upload(std::vector<int32_t>{n_end[n_tok - 1]});
    auto dold1 = upload(std::vector<int32_t>{n_old[n_tok - 1]});
    auto doff1 = upload(std::vector<int32_t>{off[n_tok - 1]});
    auto danc1 = upload(std::vector<uint64_t>{anc[n_tok - 1]});
    auto dq1 = upload(std::vector<float>(q.end() - c.n_head * c.hd, q.end()));
    a.q = dq1.get();
    a.pos = dpos1.get();
    a.n_end = dend1.get();
    a.n_old = view || c.tree ? dold1.get() : nullptr;
    a.anc = c.tree ? danc1.get() : nullptr;
    a.off = doff1.get();
    poison(out);
    cuda::attention(a, nullptr);
    const auto one = download(out, static_cast<size_t>(c.n_head * c.hd));
    CHECK(std::memcmp(one.data(), o.data() + (n_tok - 1) * c.n_head * c.hd, one.size() * 4) == 0);
}

}  // namespace

APLS_TEST(attention_matches_reference) {
    check_attention({9, 3, 64, 40});             // SmolLM2's heads, one split
    check_attention({32, 8, 64, 700});           // Llama-3.2-1B's heads, three splits
    check_attention({32, 32, 128, 300});         // Llama-2-7B's heads (MHA)
    check_attention({16, 1, 128, 520});          // MQA: one KV head, two chunks of 8 query heads
    check_attention({9, 3, 64, 600, 4, 128});    // sinks + window view
    AttnCase ex{8, 2, 64, 300};
    ex.explicit_view = true;
    check_attention(ex);                         // explicit positions view
    // MHA batches (verify-sized and prompts) share K/V tiles among tokens: partial tiles, two
    // interleaved sequences, views; each checked bit for bit against its last token alone
    // (decode kernel).
    AttnCase v{32, 32, 128, 300};
    v.n_tok = 9;
    v.two_seqs = true;                           // MHA verify-sized, two sequences: two runs per tile
    check_attention(v);
    AttnCase c{32, 32, 128, 300};
    c.n_tok = 40;                                // MHA: 16 tokens per tile, the last tile partial
    check_attention(c);
    c = AttnCase{8, 4, 64, 200};
    c.n_tok = 23;
    c.two_seqs = true;  // 2 heads per KV head (8 tokens per tile): every tile mixes sequences
    check_attention(c);
    c = AttnCase{32, 32, 64, 700, 4, 128};
    c.n_tok = 20;  // MHA, sinks + window
    check_attention(c);
    c = AttnCase{32, 8, 64, 700};
    c.n_tok = 20;  // GQA of 4: one token per block
    check_attention(c);
    c = AttnCase{32, 8, 64, 700};
    c.n_tok = 9;  // verify-sized: one token per block
    check_attention(c);
    c = AttnCase{16, 1, 128, 520};
    c.n_tok = 18;  // MQA (chunks of 8 query heads): one token per block
    check_attention(c);
    c = AttnCase{8, 8, 64, 300};
    c.explicit_view = true;
    c.n_tok = 17;
    c.two_seqs = true;  // MHA, explicit view, two sequences
    check_attention(c);
    // Token trees (verify of several drafted continuations): GQA one token per block, MHA tiles
    // shared by the tree's tokens, the prompt path (n > 16), a view on the entries before them,
    // and head dims of qwen3 test models.
    for (AttnCase t : {AttnCase{9, 3, 64, 100}, AttnCase{32, 32, 128, 300}, AttnCase{8, 8, 64, 90},
                       AttnCase{4, 2, 24, 70}, AttnCase{8, 2, 40, 130}}) {
        t.tree = true;
        for (int n_tok : {5, 16, 40}) {
            t.n_tok = n_tok;
            check_attention(t);
        }
    }
    c = AttnCase{9, 3, 64, 600, 4, 128};
    c.tree = true;
    c.n_tok = 12;  // a tree under a sinks + window view
    check_attention(c);
}

APLS_TEST(argmax_matches_host) {
    const int m = 5, n_vocab = 49152;
    for (int n_valid : {n_vocab, 12288}) {
        auto x = randn(static_cast<size_t>(m * n_vocab), 3.0f);
        x[2 * n_vocab + 77] = 50.0f;  // a clear winner
        x[3 * n_vocab + 5] = x[3 * n_vocab + 9] = 60.0f;  // a tie: the lowest id wins
        auto dx = upload(x);
        DeviceBuffer<int32_t> ids(m);
        DeviceBuffer<float> p(m);
        poison(p);
        cuda::argmax_rows(dx.get(), m, n_vocab, n_valid, ids.get(), p.get(), nullptr);
        const auto id = download(ids, m);
        const auto pr = download(p, m);
        const auto after = download(dx, x.size());
        for (int i = 0; i < m; ++i) {
            int best = 0;
            for (int j = 1; j < n_valid; ++j)
                if (x[i * n_vocab + j] > x[i * n_vocab + best]) best = j;
            double s = 0;
            for (int j = 0; j < n_valid; ++j)
                s += std::exp(static_cast<double>(x[i * n_vocab + j]) - x[i * n_vocab + best]);
            CHECK(id[i] == best);
            CHECK(std::fabs(pr[i] - 1.0 / s) < 1e-5 * (1.0 / s) + 1e-7);
            for (int j = n_valid; j < n_vocab; ++j)
                CHECK(std::isinf(after[i * n_vocab + j]) && after[i * n_vocab + j] < 0);
        }
        CHECK(id[3] == 5);
    }
}

// The device's top k of each row against the host's (runner.h top_k_row): the same ids in the
// same order, ties (many: values from a small set) to the lowest id, -inf entries included.
APLS_TEST(top_k_matches_host) {
    const int m = 6;
    for (int n_vocab : {49152, 151936, 300}) {
        std::mt19937 rng(n_vocab);
        std::uniform_int_distribution<int> val(-40, 40);
        std::vector<float> x(static_cast<size_t>(m) * n_vocab);
        for (auto& v : x) v = static_cast<float>(val(rng)) * 0.25f;
        for (int j = 0; j < n_vocab; ++j) x[4 * static_cast<size_t>(n_vocab) + j] = -INFINITY;  // all -inf
        x[5 * static_cast<size_t>(n_vocab) + n_vocab - 1] = 100.0f;  // a clear winner last
        auto dx = upload(x);
        for (int k : {1, 3, 8}) {
            DeviceBuffer<int32_t> ids(static_cast<size_t>(m) * k);
            cuda::top_k_rows(dx.get(), m, n_vocab, k, ids.get(), nullptr);
            const auto got = download(ids, static_cast<size_t>(m) * k);
            for (int i = 0; i < m; ++i) {
                std::vector<int32_t> want(k);
                top_k_row(x.data() + static_cast<size_t>(i) * n_vocab, n_vocab, k, want.data());
                CHECK(std::equal(want.begin(), want.end(), got.begin() + i * k));
            }
        }
    }
}

namespace {

// Timing mode: matvec over 7B-class shapes (bandwidth) and attention at long context.
float time_ms(const std::function<void()>& fn, int reps = 50) {
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    for (int i = 0; i < 5; ++i) fn();
    std::vector<float> t;
    for (int i = 0; i < reps; ++i) {
        cudaEventRecord(a);
        fn();
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        float ms;
        cudaEventElapsedTime(&ms, a, b);
        t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return t[t.size() / 2];
}

// Attention of one decode token over n cached entries (random slots), per layer.
void bench_attention() {
    std::printf("%-22s %6s %4s %10s\n", "attention heads/kv/hd", "n", "t", "us");
    struct S {
        int nh, nkv, hd;
    };
    for (S s : {S{9, 3, 64}, S{32, 8, 64}, S{32, 32, 128}}) {
        for (int n : {64, 512, 4096}) {
            for (int t : {1, 9}) {
                const int kvd = s.nkv * s.hd, cap = 4096 + 16;
                const int64_t stride = 2 * kvd;
                std::vector<uint16_t> kvh(static_cast<size_t>(cap) * stride);
                for (auto& v : kvh) v = f32_to_f16(0.1f);
                std::vector<int32_t> slot(n), epos(n);
                for (int j = 0; j < n; ++j) slot[j] = j, epos[j] = j;
                std::vector<int32_t> off(t, 0), n_end(t), pos(t);
                for (int i = 0; i < t; ++i) pos[i] = n - t + i, n_end[i] = pos[i] + 1;
                auto dkv = upload(kvh);
                auto dq = upload(randn(static_cast<size_t>(t * s.nh * s.hd)));
                auto ds = upload(slot), dp = upload(epos), doff = upload(off), dend = upload(n_end), dpos = upload(pos);
                const int max_splits = (cap + cuda::kAttnSplit - 1) / cuda::kAttnSplit;
                DeviceBuffer<float> out(static_cast<size_t>(t * s.nh * s.hd));
                DeviceBuffer<float> pacc(static_cast<size_t>(t * s.nh * max_splits * s.hd)),
                    pml(static_cast<size_t>(t * s.nh * max_splits * 2));
                cuda::AttentionArgs a{};
                a.q = dq.get();
                a.out = out.get();
                a.kv = dkv.get();
                a.slot_stride = stride;
                a.k_offset = 0;
                a.v_offset = kvd;
                a.kv_f16 = true;
                a.entry_slot = ds.get();
                a.entry_pos = dp.get();
                a.off = doff.get();
                a.n_end = dend.get();
                a.pos = dpos.get();
                a.n_tok = t;
                a.n_head = s.nh;
                a.n_head_kv = s.nkv;
                a.head_dim = s.hd;
                a.max_splits = max_splits;
                a.part_acc = pacc.get();
                a.part_ml = pml.get();
                const float ms = time_ms([&] { cuda::attention(a, nullptr); });
                std::printf("%8d/%d/%-11d %6d %4d %10.1f\n", s.nh, s.nkv, s.hd, n, t, ms * 1e3);
            }
        }
    }
}

// The per-layer row operations of one decode token (7B and SmolLM2 widths): latency-bound.
void bench_row_ops() {
    std::printf("%-28s %10s\n", "row op (one token)", "us");
    for (int d : {576, 4096}) {
        auto dx = upload(randn(static_cast<size_t>(d))), dw = upload(randn(static_cast<size_t>(d)));
        DeviceBuffer<float> y(static_cast<size_t>(d));
        const float ms = time_ms([&] { cuda::rms_norm(dx.get(), nullptr, dw.get(), y.get(), 1, d, 1e-5f, nullptr); });
        std::printf("rms_norm d=%-17d %10.1f\n", d, ms * 1e3);
    }
    struct S {
        int nh, nkv, hd;
    };
    for (S s : {S{9, 3, 64}, S{32, 32, 128}}) {
        const int kvd = s.nkv * s.hd;
        auto dq = upload(randn(static_cast<size_t>(s.nh * s.hd))), dk = upload(randn(static_cast<size_t>(kvd)));
        auto dv = upload(randn(static_cast<size_t>(kvd)));
        auto dp = upload(std::vector<int32_t>{100}), ds = upload(std::vector<int32_t>{1});
        auto dfreq = upload(cuda::rope_inv_freq(10000.0f, s.hd));
        DeviceBuffer<uint16_t> kv(static_cast<size_t>(4 * 2 * kvd));
        cuda::RopeStoreArgs a{dq.get(), dk.get(), dv.get(), dp.get(),    ds.get(), 1,       s.nh, s.nkv, s.hd,
                              s.hd,     10000.0f, 1.0f,     dfreq.get(), kv.get(), 2 * kvd, 0,    kvd,   true};
        const float ms = time_ms([&] { cuda::rope_store(a, nullptr); });
        std::printf("rope_store heads %2d/%-2d hd %-4d %10.1f\n", s.nh, s.nkv, s.hd, ms * 1e3);
    }
}

// Device copy bandwidth (bytes read + written per second), the ceiling a matvec's weight stream
// is measured against.
double copy_gbs() {
    const size_t n = size_t{1} << 30;
    DeviceBuffer<uint8_t> a(n), b(n);
    const float ms =
        time_ms([&] { APLS_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), n, cudaMemcpyDeviceToDevice)); }, 20);
    return 2.0 * n / (ms * 1e-3) / 1e9;
}

// Matvec shapes (rows, k): 7B-class layers, then Qwen2.5-Coder-1.5B's (q/o 1536x1536, gate/up
// 8960x1536, down 1536x8960, the 151936-row head).
void bench_matvec(const std::vector<TensorType>& types, double copy) {
    std::printf("%-6s %-14s %4s %10s %10s %8s\n", "type", "rows x k", "t", "us", "GB/s", "of copy");
    for (TensorType t : types) {
        for (auto [rows, k] : {std::pair<int64_t, int64_t>{4096, 4096},
                               {11008, 4096},
                               {4096, 11008},
                               {2048, 2048},
                               {8192, 2048},
                               {2048, 8192},
                               {1536, 1536},
                               {8960, 1536},
                               {1536, 8960},
                               {151936, 1536}}) {
            if (k % type_traits(t).block != 0) continue;
            // Several copies so repeated runs do not hit L2 (50 MB).
            const int copies = rows * k > 100'000'000 ? 2 : 4;
            const auto w = random_weights(t, rows, k);
            std::vector<DeviceRows> dw;
            for (int c = 0; c < copies; ++c) dw.push_back(upload_rows(t, w, rows, k));
            const auto x = randn(static_cast<size_t>(16 * k));
            auto dx = upload(x);
            DeviceActs xq(dx, 16, k);
            DeviceBuffer<float> y(static_cast<size_t>(16 * rows));
            for (int n : {1, 2, 4, 8, 9, 16}) {
                int c = 0;
                const float ms = time_ms([&] {
                    cuda::matvec(dw[c++ % copies].w, rows, dx.get(), xq.acts, n, y.get(), rows, false, nullptr);
                });
                const double gbs = w.size() / (ms * 1e-3) / 1e9;
                std::printf("%-6s %6ldx%-7ld %4d %10.1f %10.1f %7.0f%%\n", type_name(t).c_str(), (long)rows, (long)k, n,
                            ms * 1e3, gbs, 100 * gbs / copy);
            }
        }
    }
}

// Prompt path of each quantized type: dequantization to F16 for cuBLAS (bytes written / s).
void bench_dequant(const std::vector<TensorType>& types) {
    std::printf("%-6s %-14s %10s %12s\n", "type", "rows x k", "us", "GB/s (f16)");
    for (TensorType t : types) {
        const int64_t rows = 8960, k = 1536;
        const DeviceRows dw = upload_rows(t, random_weights(t, rows, k), rows, k);
        DeviceBuffer<uint16_t> out(static_cast<size_t>(rows * k));
        const float ms = time_ms([&] { cuda::dequantize_f16(dw.w, rows, out.get(), nullptr); });
        std::printf("%-6s %6ldx%-7ld %10.1f %12.1f\n", type_name(t).c_str(), (long)rows, (long)k, ms * 1e3,
                    2.0 * rows * k / (ms * 1e-3) / 1e9);
    }
}

// --bench: everything; --bench-types: the weight-type kernels only (matvec and dequantization of
// Q5_0, Q5_1, Q4_K, Q5_K, Q6_K beside Q4_0/Q8_0, against copy bandwidth).
int bench(bool types_only) {
    const double copy = copy_gbs();
    std::printf("device copy bandwidth: %.0f GB/s (read + write)\n", copy);
    const std::vector<TensorType> qnew = {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q5_0, TensorType::Q5_1,
                                          TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K};
    if (types_only) {
        bench_matvec(qnew, copy);
        bench_dequant(qnew);
        return 0;
    }
    bench_row_ops();
    bench_attention();
    bench_matvec({TensorType::F16, TensorType::Q8_0, TensorType::Q4_0, TensorType::Q4_1}, copy);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        std::printf("SKIP: no usable CUDA device\n");
        return 77;
    }
    if (argc > 1 && std::string(argv[1]) == "--bench") return bench(false);
    if (argc > 1 && std::string(argv[1]) == "--bench-types") return bench(true);
    return apls_test::run_all();
}
