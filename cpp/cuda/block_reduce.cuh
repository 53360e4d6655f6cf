// cuda/block_reduce.cuh — block-wide reductions in a fixed order: a butterfly within each warp,
// the warps' results through shared memory, then a butterfly over them in every warp. Every
// thread gets the same bits (a butterfly gives all lanes the same value), and the order
// depends only on blockDim, so results are reproducible run to run.
#pragma once

#include <cuda_runtime.h>

#include <cmath>

namespace apls::cuda {

struct SumOp {
    __device__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// identity: the value of lanes past the block's warps. shared: 32 floats, reused between calls.
template <typename Op>
__device__ __forceinline__ float block_reduce(float v, float identity, float* shared, Op op = Op()) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();  // the previous call's readers are done with shared
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < n_warps ? shared[lane] : identity;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float block_sum(float v, float* shared) { return block_reduce<SumOp>(v, 0.0f, shared); }
__device__ __forceinline__ float block_max(float v, float* shared) { return block_reduce<MaxOp>(v, -INFINITY, shared); }

}  // namespace apls::cuda
