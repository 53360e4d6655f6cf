// cuda/pdl.cuh — programmatic dependent launch (Hopper, compute capability >= 9.0).
//
// Normally a kernel starts only after the one before it in the stream has finished and its
// writes are flushed: between two dependent launches the GPU idles for a few microseconds, and
// a decode step is a few hundred launches. With PDL the next kernel is launched while the last
// wave of the previous one still runs; it waits (griddepcontrol.wait) for the previous grid to
// complete, with its memory visible, before it touches activations. Work that depends on
// nothing before it — loading this block's weight rows toward L2 — can go ahead of the wait.
//
// The protocol every kernel of the backend follows (launch_kernel() below launches them with PDL;
// launch_kernel_with(false, ...) without, for a kernel that measured slower with it):
//   1. pdl_trigger() first: the next kernel may be launched once all of this grid's blocks
//      have started (so earlier grids are all resident: no block can wait on one that never runs);
//   2. nothing that reads a buffer another kernel writes, or writes one another kernel reads
//      (weights, and the step inputs uploaded before the forward, may be read), until
//   3. pdl_wait(), which every block reaches before any other memory access or return.
// Because each kernel completes only after its wait, waiting for the previous grid waits for
// all grids before it: copies and host synchronisation after a kernel see every earlier write.
// APLS_CUDA_PDL=0 launches without PDL (plain stream order); the kernels are unchanged.
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#include "cuda/cuda_common.h"

namespace apls::cuda {

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Both, for kernels with nothing to do before their inputs are ready.
__device__ __forceinline__ void pdl_enter() {
    pdl_trigger();
    pdl_wait();
}

// Starts moving the 128-byte line holding p into L2 (no register, no wait).
__device__ __forceinline__ void prefetch_l2(const void* p) {
#if defined(__CUDA_ARCH__)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#endif
}

// Starts moving the line holding p into L1 (weights a block will read after its wait).
__device__ __forceinline__ void prefetch_l1(const void* p) {
#if defined(__CUDA_ARCH__)
    asm volatile("prefetch.global.L1 [%0];" ::"l"(p));
#endif
}

// Whether launches use PDL on the current device: compute capability >= 9.0 and APLS_CUDA_PDL
// not "0". Decided once per process.
inline bool pdl_enabled() {
    static const bool on = [] {
        const char* env = std::getenv("APLS_CUDA_PDL");
        if (env && std::strcmp(env, "0") == 0) return false;
        int dev = 0, major = 0;
        if (cudaGetDevice(&dev) != cudaSuccess) return false;
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
        return major >= 9;
    }();
    return on;
}

// kernel<<<grid, block, smem, stream>>>(args...), with PDL when `pdl` and enabled; checks the launch.
template <typename... Params, typename... Args>
void launch_kernel_with(bool pdl, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                        Args&&... args) {
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = pdl && pdl_enabled() ? 1 : 0;
    APLS_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
    launch_kernel_with(true, kernel, grid, block, smem, stream, std::forward<Args>(args)...);
}

}  // namespace apls::cuda
