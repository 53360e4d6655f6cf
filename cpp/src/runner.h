// runner.h — a context's backend: where its K/V rows live, its scratch, and the forward pass.
//
// Context (context.h) keeps what every backend shares — the KV cache's bookkeeping (kv_cache.h),
// batch checks, rollback, greedy loops — and hands each validated batch to its runner. The CPU
// runner (cpu/cpu_runner.cpp) and the CUDA runner (cuda/runner.cpp) implement this one interface;
// make_runner picks the model's.
#pragma once

#include <cstdint>
#include <memory>

namespace apls {

class Context;
class KVStore;
struct Batch;
struct Plan;
struct Visibility;

class Runner {
public:
    virtual ~Runner() = default;
    // Where the cache's K/V rows live (attached to the context's KVCache).
    virtual KVStore& kv_store() = 0;
    // Forward pass of a validated batch under `plan`, attention as `vis` says (batch.h); K/V of
    // token i go to KV slot slots[i]. Returns the number of output rows (batch.out). On a
    // device the results stay there until asked for.
    // chain_step >= 0: step of a greedy chain (a batch of one token). Its greedy choice and
    // probability are kept as the chain's entry chain_step; for chain_step > 0 the batch's token
    // is replaced by entry chain_step - 1 (on a device, there), so the host queues the whole
    // chain without waiting for a token. Every backend takes chain steps; the CPU runs each at once.
    virtual int32_t forward(const Batch& batch, const Plan& plan, const Visibility& vis, const int64_t* slots,
                            int32_t chain_step = -1) = 0;
    // Whether the backend queues work ahead of the host (a device): then a chain costs the host
    // one wait, not one per step.
    virtual bool chains() const = 0;
    // The first n entries of the chain (waits for them).
    virtual void chain_results(int32_t n, int32_t* ids, float* probs) = 0;
    // Queue the copy of chain entry `step` to the host, after the forward that makes it;
    // chain_entry(step) then waits for that entry alone, not for steps queued after it. At most
    // kChainFetches entries may be fetched and not yet read.
    static constexpr int32_t kChainFetches = 4;
    virtual void chain_fetch(int32_t step) = 0;
    virtual int32_t chain_entry(int32_t step) = 0;
    // Logits of the last forward's first n_rows output rows, (n_rows, n_vocab), on the host.
    virtual const float* logits(int32_t n_rows) = 0;
    // The greedy choice of output row i of the last forward (largest logit, ties to the lowest
    // id) and, when top_p is set, its softmax probability; a device computes them there.
    virtual int32_t argmax(int32_t i, float* top_p) = 0;
    // The k best ids of each of the last forward's first n_rows output rows, (n_rows, k) into ids:
    // largest logit first, ties to the lowest id (1 <= k <= min(64, n_vocab)); a device picks
    // them there and copies back the ids, not the logits.
    virtual void top_k(int32_t n_rows, int32_t k, int32_t* ids) = 0;
    // The most tokens a batch may hold with each token's logits bit-identical to decoding it
    // alone (larger batches take other kernels); speculative verify batches stay within it.
    virtual int32_t max_invariant_batch() const = 0;
    virtual int32_t n_threads() const = 0;
};

// The runner of ctx's model device (the CPU's, or cuda::make_runner).
std::unique_ptr<Runner> make_runner(Context& ctx);

// Index of the largest of x[0..n); ties go to the lowest index (as the greedy sampler does).
int32_t argmax_row(const float* x, int32_t n);
// Softmax probability of x[best]: 1 / sum exp(x - x[best]).
float top_prob_row(const float* x, int32_t n, int32_t best);
// The k largest of x[0..n) (1 <= k <= min(64, n)), largest first, ties to the lower index, into ids[0..k).
void top_k_row(const float* x, int32_t n, int32_t k, int32_t* ids);
// top_k_row of each of n_rows rows of n_vocab logits: ids (n_rows, k) (Runner::top_k on the host).
void host_top_k(const float* logits, int32_t n_rows, int32_t n_vocab, int32_t k, int32_t* ids);

}  // namespace apls
