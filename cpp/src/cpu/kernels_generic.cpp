// cpu/kernels_generic.cpp — portable scalar kernels: the fallback and the readable reference
// for the SIMD versions (same arithmetic, same per-block structure).
#include <cmath>
#include <cstring>

#include "cpu/kernels.h"

namespace apls::cpu {
namespace {

void quantize_act(const float* x, BlockQ8A* y, int64_t k) {
    for (int64_t b = 0; b < k / QK; ++b) {
        const float* xb = x + b * QK;
        float amax = 0.0f;
        for (int i = 0; i < QK; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int i = 0; i < QK; ++i) {
            const int q = static_cast<int>(std::nearbyint(xb[i] * id));
            y[b].qs[i] = static_cast<int8_t>(q);
            sum += q;
        }
        y[b].d = d;
        y[b].s = d * static_cast<float>(sum);
    }
}

// One output element: dot of weight row w (nb blocks) with activation row x.
float dot_q4_0(const BlockQ4_0* w, const BlockQ8A* x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        int isum = 0;
        for (int j = 0; j < QK / 2; ++j) {
            isum += (w[b].qs[j] & 0xF) * x[b].qs[j] + (w[b].qs[j] >> 4) * x[b].qs[j + QK / 2];
        }
        // sum (q - 8) * a = sum q*a - 8 * sum a
        const float dw = f16_to_f32(w[b].d);
        acc += dw * (x[b].d * static_cast<float>(isum) - 8.0f * x[b].s);
    }
    return acc;
}

float dot_q4_1(const BlockQ4_1* w, const BlockQ8A* x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        int isum = 0;
        for (int j = 0; j < QK / 2; ++j) {
            isum += (w[b].qs[j] & 0xF) * x[b].qs[j] + (w[b].qs[j] >> 4) * x[b].qs[j + QK / 2];
        }
        acc += f16_to_f32(w[b].d) * x[b].d * static_cast<float>(isum) + f16_to_f32(w[b].m) * x[b].s;
    }
    return acc;
}

float dot_q8_0(const BlockQ8_0* w, const BlockQ8A* x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        int isum = 0;
        for (int j = 0; j < QK; ++j) isum += w[b].qs[j] * x[b].qs[j];
        acc += f16_to_f32(w[b].d) * x[b].d * static_cast<float>(isum);
    }
    return acc;
}

// 5-bit weights of one block: q[j] in [0, 32).
void unpack_q5(const uint8_t* qh4, const uint8_t* qs, int* q) {
    uint32_t qh;
    std::memcpy(&qh, qh4, 4);
    for (int j = 0; j < QK; ++j) q[j] = q5_quant(qs, qh, j);
}

int qsum(const BlockQ8A& x) {
    int s = 0;
    for (int j = 0; j < QK; ++j) s += x.qs[j];
    return s;
}

float dot_q5_0(const BlockQ5_0* w, const BlockQ8A* x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        int q[QK], isum = 0;
        unpack_q5(w[b].qh, w[b].qs, q);
        for (int j = 0; j < QK; ++j) isum += q[j] * x[b].qs[j];
        // sum (q - 16) * a = sum q*a - 16 * sum a, exact in integers
        acc += f16_to_f32(w[b].d) * x[b].d * static_cast<float>(isum - 16 * qsum(x[b]));
    }
    return acc;
}

float dot_q5_1(const BlockQ5_1* w, const BlockQ8A* x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        int q[QK], isum = 0;
        unpack_q5(w[b].qh, w[b].qs, q);
        for (int j = 0; j < QK; ++j) isum += q[j] * x[b].qs[j];
        acc += f16_to_f32(w[b].d) * x[b].d * static_cast<float>(isum) + f16_to_f32(w[b].m) * x[b].s;
    }
    return acc;
}

// Q4_K / Q5_K: sub-block j of super-block i pairs with activation block 8i + j.
template <bool kQ5>
float dot_q45_k(const uint8_t* w, const BlockQ8A* x, int64_t nb) {
    const uint64_t bs = kQ5 ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
    float acc = 0.0f;
    for (int64_t i = 0; i < nb / 8; ++i) {
        const K45Block b = k45_block(w + i * bs, kQ5);
        for (int j = 0; j < 8; ++j) {
            const BlockQ8A& a = x[8 * i + j];
            int isum = 0;
            for (int l = 0; l < 32; ++l) isum += k45_quant(b.qs, b.qh, j, l) * a.qs[l];
            acc += b.d * static_cast<float>(b.sc[j]) * a.d * static_cast<float>(isum) -
                   b.dmin * static_cast<float>(b.mn[j]) * a.s;
        }
    }
    return acc;
}

// Q6_K: activation block 8i + c holds elements 32c.. of super-block i, two sub-blocks of 16.
float dot_q6_k(const BlockQ6_K* w, const BlockQ8A* x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t i = 0; i < nb / 8; ++i) {
        const float d = f16_to_f32(w[i].d);
        for (int c8 = 0; c8 < 8; ++c8) {
            const BlockQ8A& a = x[8 * i + c8];
            const int h = c8 / 4, c = c8 % 4;
            int isum = 0;
            for (int half = 0; half < 2; ++half) {
                int s16 = 0;
                for (int l = 16 * half; l < 16 * half + 16; ++l)
                    s16 += (q6k_quant(w[i].ql, w[i].qh, h, c, l) - 32) * a.qs[l];
                isum += w[i].scales[2 * c8 + half] * s16;
            }
            acc += d * a.d * static_cast<float>(isum);
        }
    }
    return acc;
}

void matmul_q(TensorType type, const uint8_t* w, int64_t k, const BlockQ8A* x, int64_t n_tok, float* y, int64_t ldy,
              int64_t r0, int64_t r1) {
    const int64_t nb = k / QK;
    const uint64_t rb = row_bytes(type, k);
    for (int64_t t = 0; t < n_tok; ++t) {
        const BlockQ8A* xt = x + t * nb;
        for (int64_t r = r0; r < r1; ++r) {
            const uint8_t* wr = w + r * rb;
            float v = 0.0f;
            switch (type) {
                case TensorType::Q4_0:
                    v = dot_q4_0(reinterpret_cast<const BlockQ4_0*>(wr), xt, nb);
                    break;
                case TensorType::Q4_1:
                    v = dot_q4_1(reinterpret_cast<const BlockQ4_1*>(wr), xt, nb);
                    break;
                case TensorType::Q8_0:
                    v = dot_q8_0(reinterpret_cast<const BlockQ8_0*>(wr), xt, nb);
                    break;
                case TensorType::Q5_0:
                    v = dot_q5_0(reinterpret_cast<const BlockQ5_0*>(wr), xt, nb);
                    break;
                case TensorType::Q5_1:
                    v = dot_q5_1(reinterpret_cast<const BlockQ5_1*>(wr), xt, nb);
                    break;
                case TensorType::Q4_K:
                    v = dot_q45_k<false>(wr, xt, nb);
                    break;
                case TensorType::Q5_K:
                    v = dot_q45_k<true>(wr, xt, nb);
                    break;
                case TensorType::Q6_K:
                    v = dot_q6_k(reinterpret_cast<const BlockQ6_K*>(wr), xt, nb);
                    break;
                default:
                    break;
            }
            y[t * ldy + r] = v;
        }
    }
}

float weight_at(TensorType type, const uint8_t* w, int64_t j) {
    uint16_t h;
    switch (type) {
        case TensorType::F32: {
            float f;
            std::memcpy(&f, w + 4 * j, 4);
            return f;
        }
        case TensorType::F16:
            std::memcpy(&h, w + 2 * j, 2);
            return f16_to_f32(h);
        case TensorType::BF16:
            std::memcpy(&h, w + 2 * j, 2);
            return bf16_to_f32(h);
        default:
            return 0.0f;
    }
}

void matmul_f(TensorType type, const uint8_t* w, int64_t k, const float* x, int64_t n_tok, float* y, int64_t ldy,
              int64_t r0, int64_t r1) {
    const uint64_t rb = row_bytes(type, k);
    for (int64_t t = 0; t < n_tok; ++t) {
        for (int64_t r = r0; r < r1; ++r) {
            const uint8_t* wr = w + r * rb;
            float acc = 0.0f;
            for (int64_t j = 0; j < k; ++j) acc += weight_at(type, wr, j) * x[t * k + j];
            y[t * ldy + r] = acc;
        }
    }
}

float dot_kv(const float* q, const void* k, int64_t n, bool kv_f16) {
    float acc = 0.0f;
    if (kv_f16) {
        const uint16_t* kh = static_cast<const uint16_t*>(k);
        for (int64_t i = 0; i < n; ++i) acc += q[i] * f16_to_f32(kh[i]);
    } else {
        const float* kf = static_cast<const float*>(k);
        for (int64_t i = 0; i < n; ++i) acc += q[i] * kf[i];
    }
    return acc;
}

void axpy_kv(float a, const void* v, float* y, int64_t n, bool kv_f16) {
    if (kv_f16) {
        const uint16_t* vh = static_cast<const uint16_t*>(v);
        for (int64_t i = 0; i < n; ++i) y[i] += a * f16_to_f32(vh[i]);
    } else {
        const float* vf = static_cast<const float*>(v);
        for (int64_t i = 0; i < n; ++i) y[i] += a * vf[i];
    }
}

// Grouped attention, the reference for the SIMD versions: per head and row, a dot product in
// dimension order; per output element, a sum over rows in order. Heads are independent.
void attn_scores(const float* q, int64_t n_q, int64_t hd, const void* k, int64_t stride, int64_t n, bool kv_f16,
                 float scale, float* s, int64_t lds) {
    const uint8_t* kb = static_cast<const uint8_t*>(k);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t h = 0; h < n_q; ++h) s[h * lds + i] = dot_kv(q + h * hd, kb + i * stride, hd, kv_f16) * scale;
}

void attn_accum(const float* w, int64_t ldw, int64_t n_q, int64_t hd, const void* v, int64_t stride, int64_t n,
                bool kv_f16, float* out) {
    const uint8_t* vb = static_cast<const uint8_t*>(v);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t h = 0; h < n_q; ++h) axpy_kv(w[h * ldw + i], vb + i * stride, out + h * hd, hd, kv_f16);
}

float attn_softmax(float* s, int64_t n) {
    float mx = s[0];
    for (int64_t i = 1; i < n; ++i) mx = s[i] > mx ? s[i] : mx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
        s[i] = std::exp(s[i] - mx);
        sum += s[i];
    }
    return sum;
}

void f32_to_f16_row(const float* x, uint16_t* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = f32_to_f16(x[i]);
}

const KernelTable kTable = {"generic",   quantize_act, matmul_q,     matmul_f, dot_kv,        axpy_kv,
                            attn_scores, attn_accum,   attn_softmax, nullptr,  f32_to_f16_row};

}  // namespace

const KernelTable* kernels_generic() { return &kTable; }

}  // namespace apls::cpu
