// cuda/weight_layout.cpp — GGUF rows into the device layout (weight_layout.h).
#include "cuda/weight_layout.h"

#include <cstring>

namespace apls::cuda {

QuantSplit quant_split(TensorType t) {
    switch (t) {
        case TensorType::Q8_0:
            return {32, 2};
        case TensorType::Q4_0:
            return {16, 2};
        case TensorType::Q4_1:
            return {16, 4};
        case TensorType::Q5_0:
            return {16, 6};
        case TensorType::Q5_1:
            return {16, 8};
        case TensorType::Q4_K:
            return {128, 16};
        case TensorType::Q5_K:
            return {160, 16};
        case TensorType::Q6_K:
            return {192, 18, true};
        default:
            return {};
    }
}

size_t device_row_bytes(TensorType t, int64_t k) {
    const TypeTraits tt = type_traits(t);
    const size_t gguf = static_cast<size_t>(k / tt.block) * tt.bytes;
    if (quant_split(t).quant_bytes == 0) return gguf;
    return (gguf + 15) / 16 * 16;
}

void to_device_rows(TensorType t, const uint8_t* src, int64_t k, int64_t rows, uint8_t* dst) {
    const QuantSplit qs = quant_split(t);
    const size_t src_row = static_cast<size_t>(k / type_traits(t).block) * type_traits(t).bytes;
    const size_t dst_row = device_row_bytes(t, k);
    if (qs.quant_bytes == 0) {
        std::memcpy(dst, src, src_row * static_cast<size_t>(rows));
        return;
    }
    const int64_t nb = k / type_traits(t).block;
    const int block = qs.quant_bytes + qs.scale_bytes;  // a GGUF block: scale fields, then quants (or after)
    const int q_off = qs.scales_last ? 0 : qs.scale_bytes, s_off = qs.scales_last ? qs.quant_bytes : 0;
    for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* s = src + r * src_row;
        uint8_t* quants = dst + r * dst_row;
        uint8_t* scales = quants + nb * qs.quant_bytes;
        for (int64_t b = 0; b < nb; ++b) {
            std::memcpy(quants + b * qs.quant_bytes, s + b * block + q_off, qs.quant_bytes);
            std::memcpy(scales + b * qs.scale_bytes, s + b * block + s_off, qs.scale_bytes);
        }
        std::memset(scales + nb * qs.scale_bytes, 0, dst_row - src_row);
    }
}

}  // namespace apls::cuda
