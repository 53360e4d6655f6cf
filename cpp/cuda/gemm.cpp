// cuda/gemm.cpp — see gemm.h.
#include "cuda/gemm.h"

#include "cuda/launch.h"

namespace apls::cuda {

void Gemm::run(const DeviceWeight& w, int64_t rows, const float* x, int n_tok, float* y, int64_t ldy, bool accumulate,
               bool same_x) {
    const int64_t k = w.k;
    const void* a = w.data;
    if (w.type != TensorType::F16) {
        w16_.resize(static_cast<size_t>(rows * k));
        dequantize_f16(w, rows, w16_.get(), stream_);
        a = w16_.get();
    }
    if (!same_x) {
        x16_.resize(static_cast<size_t>(n_tok) * k);
        to_f16(x, static_cast<int64_t>(n_tok) * k, x16_.get(), stream_);
    }
    // Column-major view: Y^T (rows, t) = W (k, rows)^T · X^T (k, t); ld of Y^T is ldy.
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    cublas_check(
        cublas().gemm_ex(handle_.get(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows), n_tok, static_cast<int>(k),
                         &alpha, a, CUDA_R_16F, static_cast<int>(k), x16_.get(), CUDA_R_16F, static_cast<int>(k), &beta,
                         y, CUDA_R_32F, static_cast<int>(ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
}

}  // namespace apls::cuda
