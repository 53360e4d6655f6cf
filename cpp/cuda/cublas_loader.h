// cuda/cublas_loader.h — cuBLAS, opened at run time (dlopen) so that the library loads on
// machines without it. Only the few entry points the backend uses are resolved.
#pragma once

#include <cublas_v2.h>

namespace apls::cuda {

struct Cublas {
    cublasStatus_t (*create)(cublasHandle_t*) = nullptr;
    cublasStatus_t (*destroy)(cublasHandle_t) = nullptr;
    cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t) = nullptr;
    cublasStatus_t (*set_math_mode)(cublasHandle_t, cublasMath_t) = nullptr;
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                              const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                              cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
    cublasStatus_t (*gemm_strided_batched_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                              const void*, const void*, cudaDataType, int, long long, const void*,
                                              cudaDataType, int, long long, const void*, void*, cudaDataType, int,
                                              long long, int, cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
};

// The loaded library (first call loads it); throws APLS_STATUS_UNSUPPORTED naming what was
// tried when cuBLAS cannot be found.
const Cublas& cublas();

// Throws APLS_STATUS_INTERNAL naming the call on a cuBLAS error.
void cublas_check(cublasStatus_t s, const char* what);

// A cuBLAS handle working on one stream, in the default math mode (F32 products stay F32: no
// TF32), destroyed with its owner.
class CublasHandle {
public:
    explicit CublasHandle(cudaStream_t stream);
    ~CublasHandle();
    CublasHandle(const CublasHandle&) = delete;
    CublasHandle& operator=(const CublasHandle&) = delete;
    cublasHandle_t get() const { return handle_; }

private:
    cublasHandle_t handle_ = nullptr;
};

}  // namespace apls::cuda
