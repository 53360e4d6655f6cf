// cuda/graphs.h — CUDA graphs of forward passes: the launches a walk enqueues, captured once per
// key (plan and batch shape) and replayed for every later step with that key.
//
// A replay costs one launch instead of one per kernel. Every kernel reads its per-step inputs
// from fixed device addresses (step_inputs.h), so one graph serves every step with the same
// key; whatever the key does not name must not change between steps (the caller's job).
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <string>
#include <unordered_map>

namespace apls::cuda {

class GraphCache {
public:
    explicit GraphCache(size_t max_graphs = 64) : max_(max_graphs) {}
    ~GraphCache() { clear(); }
    GraphCache(const GraphCache&) = delete;
    GraphCache& operator=(const GraphCache&) = delete;

    // Replays the graph of `key` on stream, capturing enqueue() first when there is none (the
    // cache is emptied when full: a bounded set of shapes).
    void launch(const std::string& key, cudaStream_t stream, const std::function<void()>& enqueue);
    void clear();
    // APLS_CUDA_GRAPHS=0 turns graphs off (every kernel launched directly).
    static bool enabled();

private:
    size_t max_;
    std::unordered_map<std::string, cudaGraphExec_t> graphs_;
};

}  // namespace apls::cuda
