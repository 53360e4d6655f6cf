// cuda/graphs.cpp — capture and replay of forward passes; see graphs.h.
#include "cuda/graphs.h"

#include <chrono>
#include <cstdio>
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

namespace {

bool log_captures() {
    static const bool on = [] {
        const char* e = std::getenv("APLS_CUDA_GRAPHS_LOG");
        return e && e[0] == '1';
    }();
    return on;
}

}  // namespace

void GraphCache::clear() {
    for (auto& [key, e] : graphs_)
        if (e.exec) cudaGraphExecDestroy(e.exec);
    graphs_.clear();
}

void GraphCache::evict_oldest() {
    auto oldest = graphs_.begin();
    for (auto it = graphs_.begin(); it != graphs_.end(); ++it)
        if (it->second.used < oldest->second.used) oldest = it;
    if (oldest == graphs_.end()) return;
    if (oldest->second.exec) cudaGraphExecDestroy(oldest->second.exec);
    graphs_.erase(oldest);
}

void GraphCache::launch(const std::string& key, cudaStream_t stream, const std::function<void()>& enqueue) {
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
        const auto t0 = std::chrono::steady_clock::now();
        if (graphs_.size() >= max_) evict_oldest();
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
        it = graphs_.emplace(key, Entry{exec, 0}).first;
        ++captures_;
        if (log_captures()) {
            std::string shown = key;  // plan flags are bytes 0/1: shown as digits
            for (char& c : shown)
                if (c >= 0 && c < 10) c = static_cast<char>('0' + c);
            std::fprintf(stderr, "apls: CUDA graph %zu captured in %.2f ms (%zu cached): %s\n", captures_,
                         std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
                         graphs_.size(), shown.c_str());
        }
    }
    it->second.used = ++launches_;
    APLS_CUDA_CHECK(cudaGraphLaunch(it->second.exec, stream));
}

}  // namespace apls::cuda
