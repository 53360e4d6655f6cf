// quantize.cpp — float rows to GGUF block types; see quantize.h.
//
// Compiled with -ffp-contract=off (cmake/sources.cmake): the reference rules of Q4_0..Q8_0 must
// round exactly like gguf.quants (float32 multiply, then add), never through a fused multiply-add.
//
// K-quants (our implementation of the published approach; layouts in ggml_types.h):
// - Q4_K, Q5_K (q in [0, 15] / [0, 31], x ~ d*sc*q - dmin*m): each sub-block of 32 is fitted as
//   x ~ a*q + b (a >= 0, b <= 0) by weighted least squares, with importance w = rms(super-block)
//   + |x| (large weights matter more, small ones are not ignored). Candidates: the inverse scale
//   (nmax + t) / (max - min) for t in [-1, 1] in steps of 0.1; for each, q = round, then the exact
//   least-squares (a, b) for those q (b clamped to <= 0), and the weighted error; the best
//   candidate is refined by re-rounding with its (a, b) while the error drops. Then the 8 scales
//   and the 8 offsets are quantized to 6 bits against d = max a / 63 and dmin = max(-b) / 63 (as
//   stored in F16): per sub-block the rounded (scale, offset) and their neighbours (+-1 each) are
//   tried and the pair with the least weighted error after re-quantizing the elements is kept.
// - Q6_K (q in [-32, 31], x ~ d*sc*q, sc int8): each sub-block of 16 fitted as x ~ a*q with
//   w = x^2, candidates -(32 + t) / x_maxabs for t in [-1, 1] in steps of 0.1 (the extreme value
//   goes to the end with one more level), least-squares a; the 16 scales quantized to int8
//   against d = a_maxabs / -128 (the rounded value or a neighbour, whichever re-quantizes the
//   sub-block with the least weighted error); elements re-quantized with the stored scales.
#include "quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "common.h"

namespace apls {

namespace {

inline void put_half(uint8_t* p, float f) {
    const uint16_t h = f32_to_f16(f);
    std::memcpy(p, &h, 2);
}

inline float get_half(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return f16_to_f32(h);
}

// ---- reference rules (32-element blocks) ----

// The element of largest magnitude (the first one on ties), with its sign.
float signed_absmax(const float* x, int n) {
    float amax = 0.0f, m = 0.0f;
    for (int i = 0; i < n; ++i)
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            m = x[i];
        }
    return m;
}

// A block's 32 quants (< 2^kBits) stored from p: for 5 bits the high bits first (qh, bit j of a
// little-endian word = bit 4 of element j), then the nibbles (element j low, j + 16 high).
template <int kBits>
void pack_q45(const uint8_t* q, uint8_t* p) {
    if (kBits == 5) {
        uint32_t qh = 0;
        for (int j = 0; j < QK; ++j) qh |= static_cast<uint32_t>(q[j] >> 4) << j;
        std::memcpy(p, &qh, 4);
        p += 4;
    }
    for (int j = 0; j < QK / 2; ++j) p[j] = static_cast<uint8_t>((q[j] & 0xF) | (q[j + QK / 2] & 0xF) << 4);
}

// Q4_0 / Q5_0: d = max / -(2^(bits-1)), q = trunc(x / d + offset + 0.5) clamped.
template <int kBits>
void quantize_sym(const float* x, uint8_t* y, int64_t k) {
    constexpr int bs = kBits == 4 ? 18 : 22, half = 1 << (kBits - 1), qmax = (1 << kBits) - 1;
    for (int64_t b = 0; b < k / QK; ++b, x += QK, y += bs) {
        const float d = signed_absmax(x, QK) / static_cast<float>(-half);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint8_t q[QK];
        for (int j = 0; j < QK; ++j)
            q[j] = static_cast<uint8_t>(
                std::min(qmax, static_cast<int>(std::trunc(x[j] * id + (static_cast<float>(half) + 0.5f)))));
        put_half(y, d);
        pack_q45<kBits>(q, y + 2);
    }
}

// Q4_1 / Q5_1: d = (max - min) / qmax, q = trunc((x - min) / d + 0.5) clamped, m = min.
template <int kBits>
void quantize_affine(const float* x, uint8_t* y, int64_t k) {
    constexpr int bs = kBits == 4 ? 20 : 24, qmax = (1 << kBits) - 1;
    for (int64_t b = 0; b < k / QK; ++b, x += QK, y += bs) {
        float lo = x[0], hi = x[0];
        for (int j = 1; j < QK; ++j) {
            lo = std::min(lo, x[j]);
            hi = std::max(hi, x[j]);
        }
        const float d = (hi - lo) / static_cast<float>(qmax);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint8_t q[QK];
        for (int j = 0; j < QK; ++j)
            q[j] = static_cast<uint8_t>(std::clamp(static_cast<int>(std::trunc((x[j] - lo) * id + 0.5f)), 0, qmax));
        put_half(y, d);
        put_half(y + 2, lo);
        pack_q45<kBits>(q, y + 4);
    }
}

// Q8_0: d = max|x| / 127, q = round(x / d), halves away from zero.
void quantize_q8_0(const float* x, uint8_t* y, int64_t k) {
    for (int64_t b = 0; b < k / QK; ++b, x += QK, y += sizeof(BlockQ8_0)) {
        float amax = 0.0f;
        for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_half(y, d);
        for (int j = 0; j < QK; ++j) y[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(x[j] * id)));
    }
}

// ---- K-quants: scale searches ----

constexpr int kSearchSteps = 10;      // candidates t = i / 10, i in [-10, 10]
constexpr float kSearchStep = 0.1f;

// Weighted least squares fit x ~ a*q + b, b <= 0, q in [0, nmax] (see the file comment).
// Writes q to L; returns the weighted squared error.
struct Affine {
    float a, b;
};

float affine_error(const float* x, const float* w, const uint8_t* L, int n, Affine f) {
    float err = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float e = f.a * L[i] + f.b - x[i];
        err += w[i] * e * e;
    }
    return err;
}

// The least-squares (a, b) for fixed q, with b <= 0; false when the q are all equal (degenerate).
bool affine_lsq(const float* x, const float* w, const uint8_t* L, int n, Affine& f) {
    double sw = 0, sl = 0, sl2 = 0, sx = 0, slx = 0;
    for (int i = 0; i < n; ++i) {
        sw += w[i];
        sl += w[i] * L[i];
        sl2 += w[i] * L[i] * L[i];
        sx += w[i] * x[i];
        slx += w[i] * L[i] * x[i];
    }
    const double det = sw * sl2 - sl * sl;
    if (det <= 0 || sl2 <= 0) return false;
    double a = (sw * slx - sl * sx) / det, b = (sl2 * sx - sl * slx) / det;
    if (b > 0) {  // the format stores -b >= 0: best fit through the origin instead
        b = 0;
        a = slx / sl2;
    }
    if (a <= 0) return false;
    f = {static_cast<float>(a), static_cast<float>(b)};
    return true;
}

void affine_round(const float* x, int n, int nmax, Affine f, uint8_t* L) {
    const float ia = 1.0f / f.a;
    for (int i = 0; i < n; ++i)
        L[i] = static_cast<uint8_t>(std::clamp(static_cast<int>(std::nearbyint((x[i] - f.b) * ia)), 0, nmax));
}

Affine fit_affine(const float* x, const float* w, int n, int nmax) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
    }
    lo = std::min(lo, 0.0f);
    if (hi <= lo) return {0.0f, lo};  // all equal and <= 0: q = 0, x = b
    Affine best{(hi - lo) / static_cast<float>(nmax), lo};
    uint8_t L[32];
    affine_round(x, n, nmax, best, L);
    float best_err = affine_error(x, w, L, n, best);
    for (int s = -kSearchSteps; s <= kSearchSteps; ++s) {
        const float iscale = (static_cast<float>(nmax) + kSearchStep * static_cast<float>(s)) / (hi - lo);
        affine_round(x, n, nmax, {1.0f / iscale, lo}, L);
        Affine f;
        if (!affine_lsq(x, w, L, n, f)) continue;
        const float err = affine_error(x, w, L, n, f);
        if (err < best_err) {
            best_err = err;
            best = f;
        }
    }
    for (int it = 0; it < 4; ++it) {  // re-round with the fitted (a, b) while it helps
        affine_round(x, n, nmax, best, L);
        Affine f;
        if (!affine_lsq(x, w, L, n, f)) break;
        const float err = affine_error(x, w, L, n, f);
        if (!(err < best_err)) break;
        best_err = err;
        best = f;
    }
    return best;
}

// Weighted least squares fit x ~ a*q, q in [-nq, nq - 1]; returns a (0 for an all-zero block).
float fit_sym(const float* x, const float* w, int n, int nq) {
    const float xm = signed_absmax(x, n);
    if (xm == 0.0f) return 0.0f;
    auto fit = [&](float iscale, float& score) {  // LS scale for q = round(iscale * x); score = sumlx^2 / suml2
        double slx = 0, sl2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = std::clamp(static_cast<int>(std::nearbyint(iscale * x[i])), -nq, nq - 1);
            slx += w[i] * l * x[i];
            sl2 += w[i] * l * l;
        }
        score = sl2 > 0 ? static_cast<float>(slx * slx / sl2) : 0.0f;
        return sl2 > 0 ? static_cast<float>(slx / sl2) : 0.0f;
    };
    // Maximising sumlx^2 / suml2 minimises sum w (x - a q)^2 at the least-squares a.
    float best_score = -1.0f, best = 0.0f;
    for (int s = -kSearchSteps; s <= kSearchSteps; ++s) {
        float score;
        const float a = fit(-(static_cast<float>(nq) + kSearchStep * static_cast<float>(s)) / xm, score);
        if (a != 0.0f && score > best_score) {
            best_score = score;
            best = a;
        }
    }
    for (int it = 0; it < 4 && best != 0.0f; ++it) {
        float score;
        const float a = fit(1.0f / best, score);
        if (a == 0.0f || !(score > best_score)) break;
        best_score = score;
        best = a;
    }
    return best != 0.0f ? best : -xm / static_cast<float>(nq);
}

// ---- K-quants: blocks ----

template <bool kQ5>
void quantize_q45_k(const float* x, uint8_t* y, int64_t k) {
    constexpr int nmax = kQ5 ? 31 : 15;
    constexpr uint64_t bs = kQ5 ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
    for (int64_t i = 0; i < k / QK_K; ++i, x += QK_K, y += bs) {
        double ss = 0;
        for (int l = 0; l < QK_K; ++l) ss += static_cast<double>(x[l]) * x[l];
        const float av = static_cast<float>(std::sqrt(ss / QK_K));
        float w[QK_K];
        for (int l = 0; l < QK_K; ++l) w[l] = av + std::fabs(x[l]);
        Affine f[8];
        float amax = 0.0f, mmax = 0.0f;
        for (int j = 0; j < 8; ++j) {
            f[j] = fit_affine(x + 32 * j, w + 32 * j, 32, nmax);
            amax = std::max(amax, f[j].a);
            mmax = std::max(mmax, -f[j].b);
        }
        const float d = amax / 63.0f, dmin = mmax / 63.0f;
        std::memset(y, 0, bs);
        put_half(y, d);
        put_half(y + 2, dmin);
        const float ds = get_half(y), dm = get_half(y + 2);  // as stored
        // 6-bit scale and offset per sub-block: the rounded values and their neighbours, keeping
        // the pair with the least weighted error once the elements are re-quantized with them
        // (rounding the offset alone can leave the sub-block's range badly covered when dmin is
        // coarse, e.g. next to a sub-block with an outlier).
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; ++j) {
            const int s0 = ds > 0 ? std::min(63, static_cast<int>(std::nearbyint(f[j].a / ds))) : 0;
            const int m0 = dm > 0 ? std::min(63, static_cast<int>(std::nearbyint(-f[j].b / dm))) : 0;
            float best = INFINITY;
            sc[j] = static_cast<uint8_t>(s0);
            mn[j] = static_cast<uint8_t>(m0);
            for (int sv = std::max(0, s0 - 1); sv <= std::min(63, s0 + 1); ++sv)
                for (int mv = std::max(0, m0 - 1); mv <= std::min(63, m0 + 1); ++mv) {
                    const float dq = ds * sv, mq = dm * mv;
                    float err = 0.0f;
                    for (int l = 0; l < 32; ++l) {
                        const float xv = x[32 * j + l];
                        const int q =
                            dq > 0 ? std::clamp(static_cast<int>(std::nearbyint((xv + mq) / dq)), 0, nmax) : 0;
                        const float e = dq * q - mq - xv;
                        err += w[32 * j + l] * e * e;
                    }
                    if (err < best) {
                        best = err;
                        sc[j] = static_cast<uint8_t>(sv);
                        mn[j] = static_cast<uint8_t>(mv);
                    }
                }
        }
        uint8_t* s = y + 4;
        for (int j = 0; j < 4; ++j) {  // the inverse of k4_scales
            s[j] = static_cast<uint8_t>(sc[j] | (sc[j + 4] >> 4) << 6);
            s[j + 4] = static_cast<uint8_t>(mn[j] | (mn[j + 4] >> 4) << 6);
            s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | (mn[j + 4] & 0xF) << 4);
        }
        uint8_t* qh = y + 16;
        uint8_t* qs = y + (kQ5 ? 48 : 16);
        for (int j = 0; j < 8; ++j) {
            const float dq = ds * sc[j], mq = dm * mn[j];
            for (int l = 0; l < 32; ++l) {
                const int q =
                    dq > 0 ? std::clamp(static_cast<int>(std::nearbyint((x[32 * j + l] + mq) / dq)), 0, nmax) : 0;
                qs[32 * (j / 2) + l] |= static_cast<uint8_t>((q & 0xF) << (4 * (j & 1)));
                if (kQ5) qh[l] |= static_cast<uint8_t>((q >> 4) << j);
            }
        }
    }
}

void quantize_q6_k(const float* x, uint8_t* y, int64_t k) {
    for (int64_t i = 0; i < k / QK_K; ++i, x += QK_K, y += sizeof(BlockQ6_K)) {
        float w[QK_K], a[16];
        for (int l = 0; l < QK_K; ++l) w[l] = x[l] * x[l];
        float am = 0.0f;  // the scale of largest magnitude, signed
        for (int j = 0; j < 16; ++j) {
            a[j] = fit_sym(x + 16 * j, w + 16 * j, 16, 32);
            if (std::fabs(a[j]) > std::fabs(am)) am = a[j];
        }
        BlockQ6_K* b = reinterpret_cast<BlockQ6_K*>(y);
        std::memset(b, 0, sizeof(BlockQ6_K));
        const float d = am / -128.0f;
        put_half(reinterpret_cast<uint8_t*>(&b->d), d);
        const float ds = get_half(reinterpret_cast<const uint8_t*>(&b->d));
        // int8 scales: the rounded value and its neighbours, keeping the least weighted error
        // after re-quantizing (a scale rounded towards zero can clip a small sub-block's extremes).
        for (int j = 0; j < 16; ++j) {
            const int s0 = ds != 0.0f ? std::clamp(static_cast<int>(std::nearbyint(a[j] / ds)), -128, 127) : 0;
            float best = INFINITY;
            b->scales[j] = static_cast<int8_t>(s0);
            for (int sv = std::max(-128, s0 - 1); sv <= std::min(127, s0 + 1); ++sv) {
                const float dq = ds * sv;
                float err = 0.0f;
                for (int l = 16 * j; l < 16 * j + 16; ++l) {
                    const int q = dq != 0.0f ? std::clamp(static_cast<int>(std::nearbyint(x[l] / dq)), -32, 31) : 0;
                    const float e = dq * q - x[l];
                    err += (w[l] + 1e-30f) * e * e;
                }
                if (err < best) {
                    best = err;
                    b->scales[j] = static_cast<int8_t>(sv);
                }
            }
        }
        for (int e = 0; e < QK_K; ++e) {
            const float dq = ds * b->scales[e / 16];
            const int q = (dq != 0.0f ? std::clamp(static_cast<int>(std::nearbyint(x[e] / dq)), -32, 31) : 0) + 32;
            const int h = e / 128, c = (e % 128) / 32, l = e % 32;
            b->ql[64 * h + l + 32 * (c & 1)] |= static_cast<uint8_t>((q & 0xF) << (4 * (c / 2)));
            b->qh[32 * h + l] |= static_cast<uint8_t>((q >> 4) << (2 * c));
        }
    }
}

}  // namespace

bool can_quantize(TensorType type) {
    switch (type) {
        case TensorType::Q4_0:
        case TensorType::Q4_1:
        case TensorType::Q5_0:
        case TensorType::Q5_1:
        case TensorType::Q8_0:
        case TensorType::Q4_K:
        case TensorType::Q5_K:
        case TensorType::Q6_K:
            return true;
        default:
            return false;
    }
}

void quantize_row(TensorType type, const float* x, uint8_t* y, int64_t k) {
    if (!can_quantize(type))
        fail(APLS_STATUS_INVALID_ARGUMENT, "cannot quantize to type ", type_name(type),
             " (supported: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)");
    const int64_t block = type_traits(type).block;
    if (k <= 0 || k % block != 0)
        fail(APLS_STATUS_INVALID_ARGUMENT, "cannot quantize a row of ", k, " elements to ", type_name(type),
             ": the row length must be a multiple of ", block);
    switch (type) {
        case TensorType::Q4_0:
            quantize_sym<4>(x, y, k);
            break;
        case TensorType::Q5_0:
            quantize_sym<5>(x, y, k);
            break;
        case TensorType::Q4_1:
            quantize_affine<4>(x, y, k);
            break;
        case TensorType::Q5_1:
            quantize_affine<5>(x, y, k);
            break;
        case TensorType::Q8_0:
            quantize_q8_0(x, y, k);
            break;
        case TensorType::Q4_K:
            quantize_q45_k<false>(x, y, k);
            break;
        case TensorType::Q5_K:
            quantize_q45_k<true>(x, y, k);
            break;
        case TensorType::Q6_K:
            quantize_q6_k(x, y, k);
            break;
        default:
            break;
    }
}

void quantize_rows(TensorType type, const float* x, int64_t n_rows, int64_t k, uint8_t* y, int n_threads) {
    if (n_rows <= 0) return;
    quantize_row(type, x, y, k);  // validates type and k (and does row 0)
    const uint64_t rb = static_cast<uint64_t>(k) / type_traits(type).block * type_traits(type).bytes;
    const int64_t nt = std::clamp<int64_t>(n_threads, 1, n_rows);
    auto part = [&](int64_t t) {
        for (int64_t r = std::max<int64_t>(1, n_rows * t / nt); r < n_rows * (t + 1) / nt; ++r)
            quantize_row(type, x + r * k, y + r * rb, k);
    };
    std::vector<std::thread> helpers;
    for (int64_t t = 1; t < nt; ++t) helpers.emplace_back(part, t);
    part(0);
    for (auto& h : helpers) h.join();
}

}  // namespace apls
