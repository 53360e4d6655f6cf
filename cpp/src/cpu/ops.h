// cpu/ops.h — row-wise operations of the forward pass (everything but matrix products and
// attention). Each works on one row at a time, so results never depend on the batch.
//
// Dimension letters: d = model width, t = tokens, hd = head size, nh = heads.
#pragma once

#include <cstdint>

#include "ggml_types.h"

namespace apls::cpu {

// dst (k) = the k elements of a row in any supported type (F32, F16, BF16, Q8_0, Q4_0, Q4_1,
// Q5_0, Q5_1, Q4_K, Q5_K, Q6_K), with the float32 operations of gguf.quants' dequantize.
void dequantize_row(TensorType type, const uint8_t* src, float* dst, int64_t k);

// y (n) = x / sqrt(mean(x^2) + eps) * w
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);

// Rotate the first n_rot dims of each of nh heads (x: (nh, hd)) by position-dependent angles,
// adjacent pairs (x[2i], x[2i+1]) — llama GGUF convention. cos_sin: (n_rot/2, 2) for this position.
void rope_pairs(float* x, int64_t nh, int64_t hd, int64_t n_rot, const float* cos_sin);

// cos_sin (n_rot/2, 2) for position pos: angle_i = pos * freq_scale * base^(-2i/n_rot).
void rope_table(int32_t pos, int64_t n_rot, float base, float freq_scale, float* cos_sin);

// g (n) = silu(g) * u
void silu_mul(float* g, const float* u, int64_t n);

// y (n) += x
void add(float* y, const float* x, int64_t n);

}  // namespace apls::cpu
