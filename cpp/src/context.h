// context.h — a decoding context: KV cache, thread pool, scratch buffers, last logits.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "apls/apls.h"
#include "batch.h"
#include "cpu/kernels.h"
#include "cpu/threadpool.h"
#include "device.h"
#include "kv_cache.h"
#include "model.h"
#include "plan.h"

namespace apls {

// A greedy draft: the chosen tokens, the probability of each, and how many times the host
// waited for the device to learn a drafted token (one per token, or one per chain).
struct GreedyDraft {
    std::vector<int32_t> ids;
    std::vector<float> confs;
    int32_t n_waits = 0;
};

// Scratch memory for one forward pass, sized at context creation for n_batch tokens.
// Letters: t = n_batch, d = n_embd, f = n_ff, q = q_dim, kv = kv_dim, c = KV capacity.
struct Scratch {
    std::vector<float> x;        // (t, d) residual stream
    std::vector<float> h;        // (t, max(d, q)) normed input / attention output
    std::vector<float> q;        // (t, q)
    std::vector<float> k, v;     // (t, kv)
    std::vector<float> gate, up; // (t, f)
    std::vector<float> y;        // (t, d) sub-block output before the residual add
    std::vector<float> x0, acc;  // (t, d) a parallel group's input and summed layer deltas
    std::vector<cpu::BlockQ8A> xq;  // (t, max(d, f, q) / 32) quantized activations
    std::vector<float> rope;     // (t, n_rot) cos/sin per token
    std::vector<float> scores;   // (n_threads, c) attention scores
    std::vector<int64_t> slots;  // (t) KV slots of the batch's tokens
    std::vector<int32_t> out_rows;  // (<= t) batch rows that asked for logits
};

class Context {
public:
    Context(const Model& model, const apls_context_params& params);
    ~Context();

    const Model& model() const { return model_; }
    const apls_context_params& params() const { return params_; }
    KVCache& kv() { return kv_; }
    const KVCache& kv() const { return kv_; }
    cpu::ThreadPool& pool() { return pool_; }
    Scratch& scratch() { return scratch_; }

    // Validate the C batch (tokens in range, sequences known, positions given or continued; a
    // tree's parents and positions, which default to its depths after the sequence).
    Batch make_batch(const apls_batch& b) const;
    // Forward pass under `plan`, attention restricted to `view` when given (every sequence of
    // the batch); appends K/V; on error the cache is restored. A tree batch (batch.h) is checked
    // here (INVALID_ARGUMENT naming the problem); its nodes' entries all stay in the cache until
    // the caller keeps the accepted path (KVCache::keep_path) or truncates.
    void decode(const Batch& batch, const Plan& plan, const KVView* view = nullptr);
    // Greedy draft: up to k tokens after `first` at positions pos0, pos0 + 1, ... of seq, one
    // decode each under plan/view; their entries stay in the cache. The draft ends after a token
    // for which ends_draft holds. Without a confidence stop (p_min <= 0) every step runs, so on a
    // GPU the steps are queued as a chain (each token taken from the previous step's choice on
    // the device) and the host waits once, not once per token (APLS_DRAFT_CHAIN=0: per token);
    // the same tokens either way.
    GreedyDraft draft_greedy(int32_t first, int32_t pos0, int32_t seq, int32_t k, float p_min, const Plan& plan,
                             const KVView* view);
    // A draft ends after a token whose probability is below p_min or that ends generation.
    bool ends_draft(int32_t id, float conf, float p_min) const;
    // Greedy generation with the full model: decode `last` (chosen, not yet in the cache of
    // seq) and then each token it chooses, up to n_max steps (at most the free KV room; KV_FULL
    // when there is none), ending after an end-of-generation token when stop_at_eog. Returns
    // the chosen tokens; the cache then holds everything before the last of them, as after
    // decoding token by token (the same tokens). On a GPU the steps run as chains of up to
    // n_batch steps and the host waits once per chain; entries a chain ran past an end token
    // are dropped. No logits are kept (n_outputs() is 0). On error the cache is as it was.
    std::vector<int32_t> generate_greedy(int32_t seq, int32_t last, int32_t n_max, bool stop_at_eog);

    int32_t n_outputs() const { return n_outputs_; }
    // (n_outputs, n_vocab). On a device, copied to the host on first use after each decode.
    const float* logits() const;
    // Greedy choice for output row i (largest logit, ties to the lowest id); on a device it is
    // computed there, so the logits need not be copied.
    // top_p (optional) receives its softmax probability.
    int32_t argmax(int32_t i, float* top_p = nullptr) const;
    std::vector<float>& logits_buffer(int32_t n_rows);
    Device device() const { return model_.device(); }
    // The most tokens of a batch whose logits are each bit-identical to decoding the token
    // alone: n_batch on the CPU, the device's limit there (DeviceRunner::max_invariant_batch).
    int32_t max_invariant_batch() const;

private:
    void decode_step(const Batch& batch, const Plan& plan, const KVView* view, int32_t chain_step);
    // k greedy steps from `first` at pos0, pos0 + 1, ... of seq under plan/view, cut after the
    // first token for which ends(id, conf) holds. chain: on a GPU queue them as one chain (the
    // device supplies each step's token; every step runs, the result is cut afterwards).
    template <typename Ends>
    GreedyDraft greedy_steps(int32_t first, int32_t pos0, int32_t seq, int32_t k, const Plan& plan, const KVView* view,
                             bool chain, Ends ends);

    const Model& model_;
    apls_context_params params_;
    KVCache kv_;
    cpu::ThreadPool pool_;
    Scratch scratch_;
    mutable std::vector<float> logits_;
    int32_t n_outputs_ = 0;
    std::unique_ptr<DeviceRunner> runner_;  // the device backend, or nullptr on the CPU
    mutable bool logits_stale_ = false;     // device logits not yet copied to logits_
};

// Index of the largest of x[0..n); ties go to the lowest index (as the greedy sampler does).
int32_t argmax_row(const float* x, int32_t n);
// Softmax probability of x[best]: 1 / sum exp(x - x[best]).
float top_prob_row(const float* x, int32_t n, int32_t best);

// The CPU forward pass of the model's architecture (forward.cpp picks forward_<arch>.cpp).
void forward_cpu(Context& ctx, const Batch& batch, const Plan& plan, const Visibility& vis);

}  // namespace apls
