// cuda/dequant.cuh — device-side reading of weight rows (F32, F16, BF16, Q8_0, Q4_0, Q4_1) in
// the device layout (weight_layout.h): quantized rows hold their blocks' quants, then their
// scale fields. Values as in ggml_types.h.
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

// Byte offsets in a quantized device row of nb blocks (TY: Q8_0 = 8, Q4_0 = 2, Q4_1 = 3): block
// b's quants at b * quant_bytes<TY>, its scale d (and Q4_1's offset m after it) at scale_at.
template <int TY>
constexpr int quant_bytes() {
    return TY == 8 ? 32 : 16;
}
template <int TY>
__device__ __forceinline__ int64_t scale_at(int64_t nb, int64_t b) {
    return nb * quant_bytes<TY>() + b * (TY == 3 ? 4 : 2);
}

// Element j of a row of k elements (slow path: embedding lookups, conversions); the CPU's
// dequantize_row value bit for bit.
__device__ __forceinline__ float dequant_elem(int type, const uint8_t* row, int64_t k, int64_t j) {
    const int64_t nb = k / 32, b = j / 32;
    const int i = static_cast<int>(j % 32);
    switch (type) {
        case 0:
            return reinterpret_cast<const float*>(row)[j];
        case 1:
            return half_at(row + 2 * j);
        case 30:
            return bf16_bits_to_float(*reinterpret_cast<const unsigned short*>(row + 2 * j));
        case 8:
            return half_at(row + scale_at<8>(nb, b)) * static_cast<float>(static_cast<int8_t>(row[j]));
        case 2: {
            const uint8_t* q = row + b * 16;
            const int v = i < 16 ? (q[i] & 0xF) : (q[i - 16] >> 4);
            return half_at(row + scale_at<2>(nb, b)) * static_cast<float>(v - 8);
        }
        case 3: {
            const uint8_t* q = row + b * 16;
            const int v = i < 16 ? (q[i] & 0xF) : (q[i - 16] >> 4);
            const uint8_t* dm = row + scale_at<3>(nb, b);
            return __fadd_rn(__fmul_rn(half_at(dm), static_cast<float>(v)), half_at(dm + 2));  // as the CPU: no fma
        }
        default:
            return __int_as_float(0x7fc00000);  // unreachable: the loader refuses other types
    }
}

// Block b of a quantized device row of nb blocks as 32 values: dequant_elem's, one 128-bit
// load (two for Q8_0) for the quants.
template <int TY>
__device__ __forceinline__ void dequant_block(const uint8_t* row, int64_t nb, int64_t b, float (&v)[32]) {
    const uint4* q = reinterpret_cast<const uint4*>(row + b * quant_bytes<TY>());
    const uint8_t* dm = row + scale_at<TY>(nb, b);
    const float d = half_at(dm), m = TY == 3 ? half_at(dm + 2) : 0.0f;
    uint4 raw[2];
    raw[0] = q[0];
    raw[1] = TY == 8 ? q[1] : raw[0];
    const uint8_t* bytes = reinterpret_cast<const uint8_t*>(raw);
#pragma unroll
    for (int i = 0; i < 32; ++i) {
        if (TY == 8) {
            v[i] = __fmul_rn(d, static_cast<float>(static_cast<int8_t>(bytes[i])));
        } else {
            const int n = i < 16 ? (bytes[i] & 0xF) : (bytes[i - 16] >> 4);
            v[i] =
                TY == 2 ? __fmul_rn(d, static_cast<float>(n - 8)) : __fadd_rn(__fmul_rn(d, static_cast<float>(n)), m);
        }
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
