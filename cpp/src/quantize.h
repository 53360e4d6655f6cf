// quantize.h — float rows to GGUF block types (the writing side of ggml_types.h).
//
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: the reference round-to-nearest rules of the format (scale from
// the block's extreme values), bit-identical to gguf.quants (tests/test_quantize.py checks it).
// Q4_K, Q5_K, Q6_K: per sub-block a weighted least-squares search over candidate scales (and
// minimums), then the sub-block scales quantized against a per-super-block scale, then the
// elements re-quantized with the scales as stored. quantize.cpp documents the details.
//
// Dimension letters: k = elements per row (a multiple of the type's block), r = rows.
#pragma once

#include <cstdint>

#include "ggml_types.h"

namespace apls {

// Whether quantize_row can write this type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K).
bool can_quantize(TensorType type);

// y (row_bytes(type, k) bytes) = x (k floats) in `type`. Throws APLS_STATUS_INVALID_ARGUMENT
// naming the type when it cannot be written or k is not a multiple of its block size.
void quantize_row(TensorType type, const float* x, uint8_t* y, int64_t k);

// r rows of k floats (row i at x + i * k) to r rows of row_bytes(type, k) bytes, rows split
// over n_threads threads (<= 0: 1). Same bytes whatever n_threads is.
void quantize_rows(TensorType type, const float* x, int64_t n_rows, int64_t k, uint8_t* y, int n_threads);

}  // namespace apls
