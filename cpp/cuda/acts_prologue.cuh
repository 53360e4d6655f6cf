// cuda/acts_prologue.cuh — the row ops that feed quantized products (RMSNorm, SwiGLU) as device
// functions: their element arithmetic, shared by their own kernels (ops.cu), and the prologue a
// one-token product runs instead of their launch (matvec.cu, launch.h ActsPrologue; with
// APLS_CUDA_FUSE set, until a GPU measurement decides the default).
//
// Why: a one-token step is ~10 dependent kernels a layer, and each boundary costs ~2 us on an
// H100 whatever the kernel does (the round trip of one kernel's writes to the next one's reads,
// docs/BENCHMARKS.md "What a kernel boundary costs"). Computing a layer's two RMSNorms and its
// SwiGLU inside the products that read them removes three of those boundaries; every block of
// the product repeats the op (a row of at most a few thousand elements), which costs less.
//
// Same bits as the kernels: rms_norm_kernel's wide form (one thread an element, a row of at most
// 1024) squares each element alone (fmaf(v, v, 0)), adds each warp's 32 by a butterfly, then the
// warps' sums by a butterfly over 32 lanes (zeros past the last warp); here warp w of the block
// takes the row's groups of 32 w, w + W, ... and does the same per group, and every warp adds the
// groups' sums the same way. The quantization is quantize32 on the same values.
#pragma once

#include <cuda_runtime.h>

#include "cuda/dequant.cuh"
#include "cuda/launch.h"
#include "cuda/pdl.cuh"

namespace apls::cuda {

// RMSNorm's scale from the sum of squares of a row of d, and an element of its output.
__device__ __forceinline__ float rms_scale(float sum_sq, int d, float eps) {
    return rsqrtf(sum_sq / static_cast<float>(d) + eps);
}
__device__ __forceinline__ float rms_out(float x, float scale, float w) { return x * scale * w; }

// SwiGLU's element: silu(g) * u.
__device__ __forceinline__ float silu_mul_value(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// Groups of 32 a warp loads before it computes (one memory round trip for up to this many).
constexpr int kPrologueAhead = 8;

// This lane's element of groups of 32 first, first + nw, ... (kPrologueAhead of them; zeros past
// nb) of the prologue's rows a and b, all loads issued before any is used.
__device__ __forceinline__ void load_groups(const ActsPrologue& p, int first, int nw, int nb,
                                            float (&va)[kPrologueAhead], float (&vb)[kPrologueAhead]) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int i = 0; i < kPrologueAhead; ++i) {
        const int g = first + i * nw;
        va[i] = g < nb ? p.a[g * 32 + lane] : 0.0f;
        vb[i] = g < nb ? p.b[g * 32 + lane] : 0.0f;
    }
}

// The block's warps compute the activations of one token row of k (k % 32 == 0; RMS_NORM: k <=
// 1024 with 4 warps, so that the row is one pass) into qs (k int8), d, s (k / 32) as the op's
// kernel writes xq. Every thread of the block calls it; it ends with a barrier.
__device__ __forceinline__ void acts_prologue(const ActsPrologue& p, int k, int8_t* qs, float* d, float* s) {
    __shared__ float red[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x / 32, nw = blockDim.x / 32, nb = k / 32;
    if (p.kind == ActsPrologue::RMS_NORM) {
        float v[kPrologueAhead], w[kPrologueAhead];
        load_groups(p, warp, nw, nb, v, w);
#pragma unroll
        for (int i = 0; i < kPrologueAhead; ++i) {
            const int b = warp + i * nw;
            const float sq = warp_sum(fmaf(v[i], v[i], 0.0f));
            if (b < nb && lane == 0) red[b] = sq;
        }
        __syncthreads();
        const float scale = rms_scale(warp_sum(lane < nb ? red[lane] : 0.0f), k, p.eps);
#pragma unroll
        for (int i = 0; i < kPrologueAhead; ++i) {
            const int b = warp + i * nw;  // the same for the whole warp (quantize32's shuffles)
            if (b < nb) quantize32(rms_out(v[i], scale, w[i]), qs + b * 32, d + b, s + b);
        }
    } else {
        for (int b0 = warp; b0 < nb; b0 += nw * kPrologueAhead) {
            float g[kPrologueAhead], u[kPrologueAhead];
            load_groups(p, b0, nw, nb, g, u);
#pragma unroll
            for (int i = 0; i < kPrologueAhead; ++i) {
                const int b = b0 + i * nw;
                if (b < nb) quantize32(silu_mul_value(g[i], u[i]), qs + b * 32, d + b, s + b);
            }
        }
    }
    __syncthreads();
}

// Before the wait for the previous kernel: the norm's weight (no kernel writes it) toward L2.
__device__ __forceinline__ void acts_prologue_prefetch(const ActsPrologue& p, int k) {
    if (p.kind != ActsPrologue::RMS_NORM) return;
    for (int j = threadIdx.x * 32; j < k; j += static_cast<int>(blockDim.x) * 32) prefetch_l2(p.b + j);
}

}  // namespace apls::cuda
