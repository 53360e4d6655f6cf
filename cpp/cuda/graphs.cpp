// cuda/graphs.cpp — capture and replay of forward passes; see graphs.h.
#include "cuda/graphs.h"

#include <cstdlib>

#include "cuda/cuda_common.h"

namespace apls::cuda {

bool GraphCache::enabled() {
    static const bool on = [] {
        const char* e = std::getenv("APLS_CUDA_GRAPHS");
        return !(e && e[0] == '0');
    }();
    return on;
}

void GraphCache::clear() {
    for (auto& [key, exec] : graphs_)
        if (exec) cudaGraphExecDestroy(exec);
    graphs_.clear();
}

void GraphCache::launch(const std::string& key, cudaStream_t stream, const std::function<void()>& enqueue) {
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
        if (graphs_.size() >= max_) clear();
        cudaGraph_t g = nullptr;
        APLS_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
        try {
            enqueue();
        } catch (...) {
            cudaStreamEndCapture(stream, &g);
            if (g) cudaGraphDestroy(g);
            throw;
        }
        APLS_CUDA_CHECK(cudaStreamEndCapture(stream, &g));
        cudaGraphExec_t exec = nullptr;
        const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
        cudaGraphDestroy(g);
        APLS_CUDA_CHECK(e);
        it = graphs_.emplace(key, exec).first;
    }
    APLS_CUDA_CHECK(cudaGraphLaunch(it->second, stream));
}

}  // namespace apls::cuda
