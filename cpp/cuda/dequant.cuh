// cuda/dequant.cuh — device-side reading of GGUF weight blocks (F32, F16, BF16, Q8_0, Q4_0,
// Q4_1; layouts in ggml_types.h). Quantized blocks are 2- or 4-byte aligned in memory, so they
// are read with 16-bit loads.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace apls::cuda {

__device__ __forceinline__ float half_at(const uint8_t* p) {
    return __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short*>(p)));
}

__device__ __forceinline__ float bf16_bits_to_float(unsigned short b) {
    return __uint_as_float(static_cast<unsigned int>(b) << 16);
}

// One element of a row (slow path: embedding lookups, conversions).
__device__ __forceinline__ float dequant_elem(int type, const uint8_t* row, int64_t j) {
    switch (type) {
        case 0: return reinterpret_cast<const float*>(row)[j];
        case 1: return half_at(row + 2 * j);
        case 30: return bf16_bits_to_float(*reinterpret_cast<const unsigned short*>(row + 2 * j));
        case 8: {
            const uint8_t* b = row + (j / 32) * 34;
            return half_at(b) * static_cast<float>(static_cast<int8_t>(b[2 + j % 32]));
        }
        case 2: {
            const uint8_t* b = row + (j / 32) * 18;
            const int i = static_cast<int>(j % 32);
            const int q = i < 16 ? (b[2 + i] & 0xF) : (b[2 + i - 16] >> 4);
            return half_at(b) * static_cast<float>(q - 8);
        }
        case 3: {
            const uint8_t* b = row + (j / 32) * 20;
            const int i = static_cast<int>(j % 32);
            const int q = i < 16 ? (b[4 + i] & 0xF) : (b[4 + i - 16] >> 4);
            return half_at(b) * static_cast<float>(q) + half_at(b + 2);
        }
        default: return __int_as_float(0x7fc00000);  // unreachable: the loader refuses other types
    }
}

// Q8 quantization of one block of 32 activations held one per lane of a full warp (value v at
// lane): the CPU's quantize_act bit for bit (see cuda::QActs). qs, d, s: the block's outputs.
__device__ __forceinline__ void quantize32(float v, int8_t* qs, float* d_out, float* s_out) {
    const int lane = threadIdx.x & 31;
    float amax = fabsf(v);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float d = __fdiv_rn(amax, 127.0f);
    const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
    const int q = __float2int_rn(__fmul_rn(v, id));
    qs[lane] = static_cast<int8_t>(q);
    int sum = q;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) {
        *d_out = d;
        *s_out = __fmul_rn(d, static_cast<float>(sum));
    }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

}  // namespace apls::cuda
