// rope.h — rotary position embedding in the two layouts GGUF models use.
//
//   NORM (llama): rotated pairs are adjacent dimensions (x[2i], x[2i+1]); converters permute
//                 Hugging Face's q/k rows into this order.
//   NEOX (qwen2, qwen3): pairs are (x[i], x[i + n_rot/2]), Hugging Face's rotate_half layout,
//                 stored unpermuted.
// Both rotate pair i by angle_i = pos * freq_scale * base^(-2i/n_rot) (cpu::rope_table).
#pragma once

#include <cstdint>

namespace apls {

enum class RopeStyle : int32_t { NORM = 0, NEOX = 2 };  // values as llama.cpp's rope modes

// Rotate the first n_rot dims of each of nh heads (x: (nh, hd)); cos_sin: (n_rot/2, 2) for
// this position.
void rope_apply(RopeStyle style, float* x, int64_t nh, int64_t hd, int64_t n_rot, const float* cos_sin);

}  // namespace apls
