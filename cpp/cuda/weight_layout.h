// cuda/weight_layout.h — how weight rows are laid out on the device.
//
// Float rows (F32, F16, BF16) are copied as they are. A GGUF quantized block puts its scale
// fields before its quants (Q8_0: 2 + 32 bytes, Q4_0: 2 + 16, Q4_1: 4 + 16, Q5_0: 2 + 4 + 16,
// Q5_1: 4 + 4 + 16, Q4_K: 16 + 128, Q5_K: 16 + 32 + 128) or after them (Q6_K: 192 + 16 + 2), so
// in most blocks the quants start at a 2-byte boundary and can only be read with 16-bit loads. On
// the device a quantized row of nb blocks holds the quants of all its blocks first (16, 32, 128,
// 160 or 192 bytes each: aligned 128-bit loads), then the blocks' other fields in block order
// (Q5's high bits count as such; dequant.cuh names them); rows are padded with zeros to a
// multiple of 16 bytes. Values are unchanged, only moved.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ggml_types.h"

namespace apls::cuda {

// Bytes of a block's quants and of its scale fields in the device layout (0, 0: not repacked).
struct QuantSplit {
    int quant_bytes = 0;
    int scale_bytes = 0;
    bool scales_last = false;  // the GGUF block has its quants first (Q6_K)
};
QuantSplit quant_split(TensorType t);

// Bytes between consecutive rows of k elements on the device.
size_t device_row_bytes(TensorType t, int64_t k);

// rows GGUF rows of k elements at src into the device layout at dst (rows * device_row_bytes).
void to_device_rows(TensorType t, const uint8_t* src, int64_t k, int64_t rows, uint8_t* dst);

}  // namespace apls::cuda
