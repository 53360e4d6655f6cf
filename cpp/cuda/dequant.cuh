// cuda/dequant.cuh — device-side reading of weight rows (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1, Q4_K, Q5_K, Q6_K) in the device layout (weight_layout.h): quantized rows hold their
// blocks' quants, then their scale fields. Values as in ggml_types.h. TY: the ggml type id
// (Q4_0 2, Q4_1 3, Q5_0 6, Q5_1 7, Q8_0 8, Q4_K 12, Q5_K 13, Q6_K 14).
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

// A quantized device row of nb blocks (block_elems<TY>() elements each): block b's quants at
// b * quant_bytes<TY>, its scale fields (scale_bytes<TY>) at scale_at. Quant fields (as in the
// GGUF block): Q8_0 qs[32]; Q4_0, Q4_1, Q5_0, Q5_1 qs[16]; Q4_K qs[128]; Q5_K qh[32] qs[128];
// Q6_K ql[128] qh[64]. Scale fields: Q8_0, Q4_0 d; Q4_1 d m; Q5_0 d qh[4]; Q5_1 d m qh[4];
// Q4_K, Q5_K d dmin scales[12]; Q6_K scales[16] d.
template <int TY>
constexpr int block_elems() {
    return TY >= 12 ? 256 : 32;
}
template <int TY>
constexpr int quant_bytes() {
    return TY == 8 ? 32 : TY == 12 ? 128 : TY == 13 ? 160 : TY == 14 ? 192 : 16;
}
template <int TY>
constexpr int scale_bytes() {
    return TY == 3 ? 4 : TY == 6 ? 6 : TY == 7 ? 8 : TY == 12 || TY == 13 ? 16 : TY == 14 ? 18 : 2;
}
template <int TY>
__device__ __forceinline__ int64_t scale_at(int64_t nb, int64_t b) {
    return nb * quant_bytes<TY>() + b * scale_bytes<TY>();
}

// Sub-block j's 6-bit scale and min of a Q4_K / Q5_K block (scales: the 12 bytes; ggml_types.h).
__device__ __forceinline__ void k4_scale_min(const uint8_t* sc, int j, int& s, int& m) {
    if (j < 4) {
        s = sc[j] & 63;
        m = sc[j + 4] & 63;
    } else {
        s = (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4);
        m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
    }
}

// Sub-block j's float scale and offset of a Q4_K / Q5_K block (sf: its scale fields): a = d sc,
// b = dmin m, as the CPU computes them (x = a q - b).
__device__ __forceinline__ void k4_sub_scales(const uint8_t* sf, int j, float& a, float& b) {
    int sc, mn;
    k4_scale_min(sf + 4, j, sc, mn);
    a = __fmul_rn(half_at(sf), static_cast<float>(sc));
    b = __fmul_rn(half_at(sf + 2), static_cast<float>(mn));
}

// Element e (< 256) of a K-quant block as its integer quant and float scale/offset: x = a * q - m.
template <int TY>
__device__ __forceinline__ float kquant_elem(const uint8_t* row, int64_t nb, int64_t b, int e) {
    const uint8_t* q = row + b * quant_bytes<TY>();
    const uint8_t* sf = row + scale_at<TY>(nb, b);
    if (TY == 14) {
        const int h = e / 128, c = (e % 128) / 32, l = e % 32;
        const int lo = (q[64 * h + l + 32 * (c & 1)] >> (4 * (c / 2))) & 0xF;
        const int hi = (q[128 + 32 * h + l] >> (2 * c)) & 3;
        const float d = half_at(sf + 16);
        return __fmul_rn(__fmul_rn(d, static_cast<float>(static_cast<int8_t>(sf[e / 16]))),
                         static_cast<float>((lo | hi << 4) - 32));
    }
    const int j = e / 32, l = e % 32;
    const uint8_t* qs = q + (TY == 13 ? 32 : 0);
    int v = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0xF;
    if (TY == 13) v |= ((q[l] >> j) & 1) << 4;
    float ds, dm;
    k4_sub_scales(sf, j, ds, dm);
    return __fsub_rn(__fmul_rn(ds, static_cast<float>(v)), dm);  // as the CPU: no fma
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
        case 6:
        case 7: {
            const uint8_t* q = row + b * 16;
            const uint8_t* sf = row + (type == 6 ? scale_at<6>(nb, b) : scale_at<7>(nb, b));
            const uint32_t qh = static_cast<uint32_t>(sf[type == 6 ? 2 : 4]) | sf[type == 6 ? 3 : 5] << 8 |
                                sf[type == 6 ? 4 : 6] << 16 | static_cast<uint32_t>(sf[type == 6 ? 5 : 7]) << 24;
            const int v = (i < 16 ? (q[i] & 0xF) : (q[i - 16] >> 4)) | ((qh >> i) & 1) << 4;
            if (type == 6) return __fmul_rn(half_at(sf), static_cast<float>(v - 16));
            return __fadd_rn(__fmul_rn(half_at(sf), static_cast<float>(v)), half_at(sf + 2));
        }
        case 12:
            return kquant_elem<12>(row, k / 256, j / 256, static_cast<int>(j % 256));
        case 13:
            return kquant_elem<13>(row, k / 256, j / 256, static_cast<int>(j % 256));
        case 14:
            return kquant_elem<14>(row, k / 256, j / 256, static_cast<int>(j % 256));
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

// The warp sums of N values a lane (N a power of two <= 32) in N - 1 + log2(32 / N) shuffles
// instead of N butterflies' 5N: warp_sum's steps (offsets 16, 8, ...) each halve the slots a
// lane carries — lanes with the offset's bit set keep the upper half, the others the lower, each
// adding its partner's share — until one slot is left, whose remaining steps are warp_sum's. A
// lane's sum is warp_sum's for its slot, bit for bit (the same additions in the same order), and
// it holds slot warp_slot<N>(lane) only (lanes that differ below offset 32 / N hold the same).
template <int N>
__device__ __forceinline__ float warp_sums(float (&v)[N]) {
    static_assert(N >= 1 && N <= 32 && (N & (N - 1)) == 0, "N: a power of two <= 32");
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int n = N, o = 16; n > 1; n >>= 1, o >>= 1) {
        const bool upper = lane & o;
#pragma unroll
        for (int j = 0; j < n / 2; ++j) {
            const float give = upper ? v[j] : v[j + n / 2];  // the half the partner keeps
            const float keep = upper ? v[j + n / 2] : v[j];
            v[j] = keep + __shfl_xor_sync(0xffffffffu, give, o);
        }
    }
    float s = v[0];
#pragma unroll
    for (int o = 16 / N; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    return s;
}

// The slot whose sum warp_sums<N> leaves in `lane`.
template <int N>
__device__ __forceinline__ int warp_slot(int lane) {
    int s = 0;
#pragma unroll
    for (int n = N, o = 16; n > 1; n >>= 1, o >>= 1)
        if (lane & o) s += n / 2;
    return s;
}

}  // namespace apls::cuda
