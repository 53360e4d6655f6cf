// cuda/pinned_buffer.h — page-locked host memory, for transfers the GPU copies asynchronously.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "cuda/cuda_common.h"

namespace apls::cuda {

// n elements of T in pinned host memory (freed with cudaFreeHost).
template <typename T>
class PinnedBuffer {
public:
    PinnedBuffer() = default;
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;
    ~PinnedBuffer() {
        if (p_) cudaFreeHost(p_);
    }
    // Reallocates (contents lost) when want is larger than the current size.
    void resize(size_t want) {
        if (want <= n_) return;
        if (p_) cudaFreeHost(p_);
        p_ = nullptr;
        n_ = 0;
        APLS_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&p_), want * sizeof(T)));
        n_ = want;
    }
    T* get() const { return p_; }

private:
    T* p_ = nullptr;
    size_t n_ = 0;
};

}  // namespace apls::cuda
