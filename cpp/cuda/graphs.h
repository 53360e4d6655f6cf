// cuda/graphs.h — CUDA graphs of forward passes: the launches a walk enqueues, captured once per
// key (plan and batch shape) and replayed for every later step with that key.
//
// A replay costs one launch instead of one per kernel. Every kernel reads its per-step inputs
// from fixed device addresses (step_inputs.h), so one graph serves every step with the same
// key; whatever the key does not name must not change between steps (the caller's job).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>

namespace apls::cuda {

class GraphCache {
public:
    // A session that drafts token trees meets ~40-60 keys (plain steps, verify batches of 2-16
    // tokens as chains and trees, each layer-skip candidate's draft step); a capture costs
    // milliseconds, a whole step's worth many times over on a small model.
    explicit GraphCache(size_t max_graphs = 128) : max_(max_graphs) {}
    ~GraphCache() { clear(); }
    GraphCache(const GraphCache&) = delete;
    GraphCache& operator=(const GraphCache&) = delete;

    // Replays the graph of `key` on stream, capturing enqueue() first when there is none (when
    // the cache is full, the least recently launched graph goes).
    void launch(const std::string& key, cudaStream_t stream, const std::function<void()>& enqueue);
    void clear();
    // APLS_CUDA_GRAPHS=0 turns graphs off (every kernel launched directly); APLS_CUDA_GRAPHS_LOG=1
    // prints each capture (key, milliseconds) to stderr.
    static bool enabled();

private:
    struct Entry {
        cudaGraphExec_t exec = nullptr;
        uint64_t used = 0;  // launch count at its last launch
    };
    void evict_oldest();
    size_t max_;
    size_t captures_ = 0;  // since construction (the log numbers them)
    uint64_t launches_ = 0;
    std::unordered_map<std::string, Entry> graphs_;
};

}  // namespace apls::cuda
