// context.h — a decoding context: the KV cache's bookkeeping and the backend's runner (runner.h),
// batch checks, decode with rollback, greedy loops. Nothing here depends on the device.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "apls/apls.h"
#include "batch.h"
#include "device.h"
#include "kv_cache.h"
#include "model.h"
#include "plan.h"
#include "runner.h"

namespace apls {

// A greedy draft: the chosen tokens, the probability of each, and how many times the host
// waited for the device to learn a drafted token (one per token, or one per chain).
struct GreedyDraft {
    std::vector<int32_t> ids;
    std::vector<float> confs;
    int32_t n_waits = 0;
};

class Context {
public:
    Context(const Model& model, const apls_context_params& params);
    ~Context();

    const Model& model() const { return model_; }
    const apls_context_params& params() const { return params_; }
    KVCache& kv() { return kv_; }
    const KVCache& kv() const { return kv_; }
    int32_t n_threads() const { return runner_->n_threads(); }

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
    // The same steps for a caller that looks at each token as it comes: go_on(token) false
    // queues no further step. Where plain_ahead() holds, each step is queued before the host
    // sees the token of the step before it (the device never waits for the host), so the step
    // queued when go_on refused runs too: its token is returned as well, unseen by go_on. The
    // cache then holds everything before the last token returned. A failure of the first step
    // throws with the cache as it was; a later one ends the steps with the tokens made so far
    // (a next call meets it again).
    std::vector<int32_t> greedy_while(int32_t seq, int32_t last, int32_t n_max, bool stop_at_eog,
                                      const std::function<bool(int32_t)>& go_on);
    // Whether greedy_while queues a step ahead of the host: where the backend queues work
    // (Runner::chains); APLS_PLAIN_AHEAD=0 turns it off, =1 on for any backend (tests).
    bool plain_ahead() const;

    int32_t n_outputs() const { return n_outputs_; }
    // (n_outputs, n_vocab). On a device, copied to the host on first use after each decode.
    const float* logits() const { return runner_->logits(n_outputs_); }
    // Greedy choice for output row i (largest logit, ties to the lowest id); on a device it is
    // computed there, so the logits need not be copied.
    // top_p (optional) receives its softmax probability.
    int32_t argmax(int32_t i, float* top_p = nullptr) const;
    // The k best ids of every output row of the last decode, (n_outputs, k) into ids: largest
    // logit first, ties to the lowest id (1 <= k <= min(64, n_vocab)). On a GPU picked there: the
    // ids are copied back, not the logits (token recycling's successors of a verify batch).
    void top_k(int32_t k, int32_t* ids) const;
    Device device() const { return model_.device(); }
    // The most tokens of a batch whose logits are each bit-identical to decoding the token
    // alone: n_batch on the CPU, the device's limit there (Runner::max_invariant_batch).
    int32_t max_invariant_batch() const;

private:
    void decode_step(const Batch& batch, const Plan& plan, const KVView* view, int32_t chain_step);
    // generate_greedy's and greedy_while's checks; returns the steps the KV room allows (KV_FULL: none).
    int32_t greedy_steps_allowed(int32_t seq, int32_t last, int32_t n_max) const;
    // k greedy steps from `first` at pos0, pos0 + 1, ... of seq under plan/view, cut after the
    // first token for which ends(id, conf) holds. chain: on a GPU queue them as one chain (the
    // device supplies each step's token; every step runs, the result is cut afterwards).
    template <typename Ends>
    GreedyDraft greedy_steps(int32_t first, int32_t pos0, int32_t seq, int32_t k, const Plan& plan, const KVView* view,
                             bool chain, Ends ends);

    const Model& model_;
    apls_context_params params_;
    KVCache kv_;
    std::unique_ptr<Runner> runner_;  // the model's backend: K/V rows, scratch, forward
    std::vector<int64_t> slots_;      // (n_batch) KV slots of a batch's tokens
    int32_t n_outputs_ = 0;
};

}  // namespace apls
