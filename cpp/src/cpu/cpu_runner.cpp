// cpu/cpu_runner.cpp — the CPU backend of a context: its thread pool, scratch, host K/V rows and
// logits (runner.h); the forward pass is forward.h's walk over cpu/forward_ops.cpp's steps.
#include "cpu/cpu_runner.h"

#include <algorithm>

#include "common.h"
#include "context.h"
#include "cpu/forward_ops.h"
#include "cpu/kv_store.h"
#include "cpu/threadpool.h"
#include "forward.h"

namespace apls::cpu {

namespace {

RopeParams rope_of(const HParams& hp) {
    return {hp.n_rot, hp.head_dim, hp.n_head_kv, hp.rope_freq_base, hp.rope_freq_scale, hp.rope_style};
}

class CpuRunner final : public Runner {
public:
    explicit CpuRunner(Context& ctx)
        : ctx_(ctx),
          hp_(ctx.model().hparams()),
          pool_(ctx.params().n_threads),
          store_(hp_.n_layer, hp_.kv_dim(), ctx.kv().capacity(), ctx.params().kv_type == APLS_KV_TYPE_F16,
                 rope_of(hp_)),
          scratch_(hp_, ctx.params().n_batch) {}

    KVStore& kv_store() override { return store_; }

    int32_t forward(const Batch& batch, const Plan& plan, const Visibility& vis, const int64_t* slots,
                    int32_t chain_step) override {
        if (chain_step < 0) return run(batch, plan, vis, slots);
        if (batch.size() != 1) fail(APLS_STATUS_INVALID_ARGUMENT, "a chain step is one token, not ", batch.size());
        if (static_cast<size_t>(chain_step) >= chain_ids_.size()) {
            chain_ids_.resize(std::max<size_t>(chain_step + 1, ctx_.params().n_batch));
            chain_probs_.resize(chain_ids_.size());
        }
        Batch b = batch;
        if (chain_step > 0) b.token[0] = chain_ids_[chain_step - 1];  // the previous step's choice
        const int32_t m = run(b, plan, vis, slots);
        chain_ids_[chain_step] = argmax(0, &chain_probs_[chain_step]);
        return m;
    }

    bool chains() const override { return false; }  // each step runs at once
    void chain_results(int32_t n, int32_t* ids, float* probs) override {
        if (n < 0 || static_cast<size_t>(n) > chain_ids_.size())
            fail(APLS_STATUS_INVALID_ARGUMENT, "chain of ", n, " steps (", chain_ids_.size(), " made)");
        std::copy_n(chain_ids_.begin(), n, ids);
        std::copy_n(chain_probs_.begin(), n, probs);
    }
    void chain_fetch(int32_t) override {}  // made at once
    int32_t chain_entry(int32_t step) override {
        if (step < 0 || static_cast<size_t>(step) >= chain_ids_.size())
            fail(APLS_STATUS_INVALID_ARGUMENT, "chain entry ", step, " was not made");
        return chain_ids_[step];
    }
    const float* logits(int32_t) override { return logits_.data(); }
    int32_t argmax(int32_t i, float* top_p) override {
        const float* row = logits_.data() + static_cast<size_t>(i) * hp_.n_vocab;
        const int32_t best = argmax_row(row, hp_.n_vocab);
        if (top_p) *top_p = top_prob_row(row, hp_.n_vocab, best);
        return best;
    }
    void top_k(int32_t n_rows, int32_t k, int32_t* ids) override {
        host_top_k(logits_.data(), n_rows, hp_.n_vocab, k, ids);
    }
    int32_t max_invariant_batch() const override { return static_cast<int32_t>(ctx_.params().n_batch); }
    int32_t n_threads() const override { return pool_.size(); }

private:
    int32_t run(const Batch& batch, const Plan& plan, const Visibility& vis, const int64_t* slots) {
        CpuForward f(ctx_.model(), scratch_, pool_, ctx_.kv(), store_, batch, vis, slots, logits_);
        apls::forward(f, plan, hp_);
        return f.n_outputs();
    }

    Context& ctx_;
    const HParams& hp_;
    ThreadPool pool_;
    HostKVStore store_;
    Scratch scratch_;
    std::vector<float> logits_;  // (rows that asked, n_vocab) of the last forward
    std::vector<int32_t> chain_ids_;  // a chain's greedy choices and their probabilities
    std::vector<float> chain_probs_;
};

}  // namespace

std::unique_ptr<Runner> make_runner(Context& ctx) { return std::make_unique<CpuRunner>(ctx); }

}  // namespace apls::cpu
