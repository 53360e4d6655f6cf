// cuda/cuda_common.h — error checks, device buffers and the device-side weight view shared by
// the CUDA backend's files. Host code; safe to include from .cpp and .cu files.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "common.h"
#include "ggml_types.h"

namespace apls::cuda {

// Throws apls::Error: APLS_STATUS_OUT_OF_MEMORY for allocation failures, else _INTERNAL, with
// the CUDA error's name, the call and where it was made.
[[noreturn]] void cuda_fail(cudaError_t e, const char* call, const char* file, int line);

#define APLS_CUDA_CHECK(call)                                                                    \
    do {                                                                                         \
        cudaError_t apls_e_ = (call);                                                            \
        if (apls_e_ != cudaSuccess) ::apls::cuda::cuda_fail(apls_e_, #call, __FILE__, __LINE__); \
    } while (0)
// After every kernel launch: launch-configuration errors surface here, not later.
#define APLS_CUDA_LAUNCHED() APLS_CUDA_CHECK(cudaGetLastError())

// Owning device allocation of n elements of T (uninitialised).
template <typename T>
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(size_t n) { resize(n); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        std::swap(p_, o.p_);
        std::swap(n_, o.n_);
        return *this;
    }
    ~DeviceBuffer() {
        if (p_) cudaFree(p_);
    }
    // Reallocates (contents lost) when n is larger than the current size.
    void resize(size_t n) {
        if (n <= n_) return;
        if (p_) cudaFree(p_);
        p_ = nullptr;
        n_ = 0;
        APLS_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)));
        n_ = n;
    }
    T* get() const { return p_; }
    size_t size() const { return n_; }

private:
    T* p_ = nullptr;
    size_t n_ = 0;
};

// A weight matrix on the device: `rows` rows of k elements, row_bytes apart, in the device
// layout (weight_layout.h: float rows as in GGUF, quantized rows with quants and scales apart).
struct DeviceWeight {
    TensorType type = TensorType::F32;
    const uint8_t* data = nullptr;
    int64_t k = 0;
    int64_t rows = 0;
    size_t row_bytes = 0;
};

}  // namespace apls::cuda
