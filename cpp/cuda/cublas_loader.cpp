// cuda/cublas_loader.cpp — see cublas_loader.h.
#include "cuda/cublas_loader.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

#include "common.h"

namespace apls::cuda {

namespace {

void* open_library(std::string* tried) {
    // The toolkit's library (on the loader path or under the toolkit found at build time), then
    // the PyPI wheel nvidia-cublas (site-packages/nvidia/cu13/lib), found through APLS_CUBLAS_LIB.
    const char* env = std::getenv("APLS_CUBLAS_LIB");
    std::string candidates[] = {
        env ? env : "",
        "libcublas.so.13",
        "libcublas.so",
#ifdef APLS_CUDA_TOOLKIT_LIBDIR
        std::string(APLS_CUDA_TOOLKIT_LIBDIR) + "/libcublas.so.13",
#endif
    };
    for (const std::string& c : candidates) {
        if (c.empty()) continue;
        if (void* h = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
        *tried += (tried->empty() ? "" : ", ") + c;
    }
    return nullptr;
}

template <typename F>
void resolve(void* lib, const char* name, F& fn) {
    fn = reinterpret_cast<F>(dlsym(lib, name));
    if (!fn) fail(APLS_STATUS_UNSUPPORTED, "cuBLAS has no symbol ", name);
}

}  // namespace

const Cublas& cublas() {
    static Cublas lib;
    static std::once_flag once;
    static std::string error;
    std::call_once(once, [] {
        std::string tried;
        void* h = open_library(&tried);
        if (!h) {
            error = "cuBLAS not found (tried " + tried +
                    "; install the CUDA toolkit's cuBLAS or `pip install nvidia-cublas` and set APLS_CUBLAS_LIB)";
            return;
        }
        try {
            resolve(h, "cublasCreate_v2", lib.create);
            resolve(h, "cublasDestroy_v2", lib.destroy);
            resolve(h, "cublasSetStream_v2", lib.set_stream);
            resolve(h, "cublasSetMathMode", lib.set_math_mode);
            resolve(h, "cublasGemmEx", lib.gemm_ex);
            resolve(h, "cublasGemmStridedBatchedEx", lib.gemm_strided_batched_ex);
        } catch (const std::exception& e) {
            error = e.what();
        }
    });
    if (!error.empty()) fail(APLS_STATUS_UNSUPPORTED, error);
    return lib;
}

void cublas_check(cublasStatus_t s, const char* what) {
    if (s != CUBLAS_STATUS_SUCCESS) fail(APLS_STATUS_INTERNAL, "cuBLAS error ", static_cast<int>(s), " in ", what);
}

CublasHandle::CublasHandle(cudaStream_t stream) {
    const Cublas& b = cublas();
    cublas_check(b.create(&handle_), "cublasCreate");
    try {
        cublas_check(b.set_stream(handle_, stream), "cublasSetStream");
        cublas_check(b.set_math_mode(handle_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    } catch (...) {
        b.destroy(handle_);
        throw;
    }
}

CublasHandle::~CublasHandle() {
    if (handle_) cublas().destroy(handle_);
}

}  // namespace apls::cuda
