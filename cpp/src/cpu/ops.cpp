// cpu/ops.cpp — scalar row operations; see ops.h. They are a small share of the time next to
// the matrix products, so they stay simple and exact.
#include "cpu/ops.h"

#include <cmath>
#include <cstring>

namespace apls::cpu {

void dequantize_row(TensorType type, const uint8_t* src, float* dst, int64_t k) {
    switch (type) {
        case TensorType::F32:
            std::memcpy(dst, src, static_cast<size_t>(k) * 4);
            return;
        case TensorType::F16:
        case TensorType::BF16: {
            for (int64_t i = 0; i < k; ++i) {
                uint16_t h;
                std::memcpy(&h, src + 2 * i, 2);
                dst[i] = type == TensorType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
            }
            return;
        }
        case TensorType::Q8_0: {
            const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(src);
            for (int64_t i = 0; i < k / QK; ++i) {
                const float d = f16_to_f32(b[i].d);
                for (int j = 0; j < QK; ++j) dst[i * QK + j] = d * b[i].qs[j];
            }
            return;
        }
        case TensorType::Q4_0: {
            const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(src);
            for (int64_t i = 0; i < k / QK; ++i) {
                const float d = f16_to_f32(b[i].d);
                for (int j = 0; j < QK / 2; ++j) {
                    dst[i * QK + j] = d * static_cast<float>((b[i].qs[j] & 0xF) - 8);
                    dst[i * QK + j + QK / 2] = d * static_cast<float>((b[i].qs[j] >> 4) - 8);
                }
            }
            return;
        }
        case TensorType::Q4_1: {
            const BlockQ4_1* b = reinterpret_cast<const BlockQ4_1*>(src);
            for (int64_t i = 0; i < k / QK; ++i) {
                const float d = f16_to_f32(b[i].d), m = f16_to_f32(b[i].m);
                for (int j = 0; j < QK / 2; ++j) {
                    dst[i * QK + j] = d * static_cast<float>(b[i].qs[j] & 0xF) + m;
                    dst[i * QK + j + QK / 2] = d * static_cast<float>(b[i].qs[j] >> 4) + m;
                }
            }
            return;
        }
        case TensorType::Q5_0:
        case TensorType::Q5_1: {
            const bool q5_1 = type == TensorType::Q5_1;
            const uint64_t bs = q5_1 ? sizeof(BlockQ5_1) : sizeof(BlockQ5_0);
            for (int64_t i = 0; i < k / QK; ++i) {
                const uint8_t* b = src + i * bs;
                uint16_t dh, mh = 0;
                uint32_t qh;
                std::memcpy(&dh, b, 2);
                if (q5_1) std::memcpy(&mh, b + 2, 2);
                std::memcpy(&qh, b + (q5_1 ? 4 : 2), 4);
                const uint8_t* qs = b + (q5_1 ? 8 : 6);
                const float d = f16_to_f32(dh), m = f16_to_f32(mh);
                for (int j = 0; j < QK; ++j) {
                    const int q = q5_quant(qs, qh, j);
                    dst[i * QK + j] = q5_1 ? d * static_cast<float>(q) + m : d * static_cast<float>(q - 16);
                }
            }
            return;
        }
        case TensorType::Q4_K:
        case TensorType::Q5_K: {
            const bool q5 = type == TensorType::Q5_K;
            const uint64_t bs = q5 ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
            for (int64_t i = 0; i < k / QK_K; ++i) {
                const K45Block b = k45_block(src + i * bs, q5);
                for (int j = 0; j < 8; ++j) {
                    const float ds = b.d * b.sc[j], dm = b.dmin * b.mn[j];
                    for (int l = 0; l < 32; ++l)
                        dst[i * QK_K + 32 * j + l] = ds * static_cast<float>(k45_quant(b.qs, b.qh, j, l)) - dm;
                }
            }
            return;
        }
        case TensorType::Q6_K: {
            const BlockQ6_K* b = reinterpret_cast<const BlockQ6_K*>(src);
            for (int64_t i = 0; i < k / QK_K; ++i) {
                const float d = f16_to_f32(b[i].d);
                for (int e = 0; e < QK_K; ++e) {
                    const int q = q6k_quant(b[i].ql, b[i].qh, e / 128, (e % 128) / 32, e % 32);
                    dst[i * QK_K + e] = d * static_cast<float>(b[i].scales[e / 16]) * static_cast<float>(q - 32);
                }
            }
            return;
        }
        default:
            std::memset(dst, 0, static_cast<size_t>(k) * 4);  // unreachable: model.cpp refuses other types
    }
}

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
    double ss = 0.0;  // double: the mean of squares over thousands of elements, order fixed
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
}

void rope_table(int32_t pos, int64_t n_rot, float base, float freq_scale, float* cos_sin) {
    for (int64_t i = 0; i < n_rot / 2; ++i) {
        const double theta =
            static_cast<double>(pos) * freq_scale *
            std::pow(static_cast<double>(base), -2.0 * static_cast<double>(i) / static_cast<double>(n_rot));
        cos_sin[2 * i] = static_cast<float>(std::cos(theta));
        cos_sin[2 * i + 1] = static_cast<float>(std::sin(theta));
    }
}

void rope_pairs(float* x, int64_t nh, int64_t hd, int64_t n_rot, const float* cos_sin) {
    for (int64_t h = 0; h < nh; ++h) {
        float* xh = x + h * hd;
        for (int64_t i = 0; i < n_rot / 2; ++i) {
            const float c = cos_sin[2 * i], s = cos_sin[2 * i + 1];
            const float a = xh[2 * i], b = xh[2 * i + 1];
            xh[2 * i] = a * c - b * s;
            xh[2 * i + 1] = a * s + b * c;
        }
    }
}

void silu_mul(float* g, const float* u, int64_t n) {
    for (int64_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void add(float* y, const float* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace apls::cpu
