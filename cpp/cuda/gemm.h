// cuda/gemm.h — matrix products for batches larger than the matvec kernels take (prompt
// processing): weights converted to F16 (in a scratch buffer, per matrix) and multiplied with
// F16 activations on the tensor cores through cuBLAS, F32 accumulation and output.
#pragma once

#include "cuda/cublas_loader.h"
#include "cuda/cuda_common.h"

namespace apls::cuda {

class Gemm {
public:
    explicit Gemm(cudaStream_t stream) : stream_(stream), handle_(stream) {}

    // y (t, ldy) [+]= x (t, k) · W[:rows]^T. same_x: x is the previous call's input, unchanged
    // (q/k/v, gate/up): its F16 copy is reused.
    void run(const DeviceWeight& w, int64_t rows, const float* x, int n_tok, float* y, int64_t ldy, bool accumulate,
             bool same_x = false);

private:
    cudaStream_t stream_;
    CublasHandle handle_;
    DeviceBuffer<uint16_t> w16_, x16_;  // F16 scratch: weights (rows, k), activations (t, k)
};

}  // namespace apls::cuda
