// cpu/forward_ops.h — the CPU backend's steps of the forward pass (forward.h ForwardOps):
// matrix products on the thread pool through the ISA's kernels (cpu/kernels.h), row operations
// (cpu/ops.h), attention over the host K/V rows (cpu/attention.h).
//
// Letters: t = n_batch, d = n_embd, f = n_ff, q = q_dim, kv = kv_dim, c = KV capacity.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <utility>
#include <vector>

#include "batch.h"
#include "cpu/attention.h"
#include "cpu/kernels.h"
#include "cpu/kv_store.h"
#include "cpu/ops.h"
#include "cpu/threadpool.h"
#include "forward.h"
#include "model.h"

namespace apls::cpu {

// Scratch memory for one forward pass, sized at context creation for n_batch tokens.
struct Scratch {
    std::vector<float> x;           // (t, d) residual stream
    std::vector<float> h;           // (t, max(d, q)) normed input / attention output
    std::vector<float> q;           // (t, q)
    std::vector<float> k, v;        // (t, kv)
    std::vector<float> gate, up;    // (t, f)
    std::vector<float> y;           // (t, d) sub-block output before the residual add
    std::vector<float> x0, acc;     // (t, d) a parallel group's input and summed layer deltas
    std::vector<BlockQ8A> xq;       // (t, max(d, f, q) / 32) quantized activations
    std::vector<float> rope;        // (t, n_rot) cos/sin per token
    std::vector<int32_t> out_rows;  // (<= t) batch rows that asked for logits
    std::vector<VisibleEntries> visible;  // (t) each token's visible entries, once per batch

    Scratch(const HParams& hp, size_t n_batch);
};

// One forward pass of `batch`: its K/V rows go to slots[i] of `store`; logits into `logits`
// (grown to (rows that asked, n_vocab)).
class CpuForward final : public ForwardOps {
public:
    CpuForward(const Model& model, Scratch& s, ThreadPool& pool, const KVCache& kv, HostKVStore& store,
               const Batch& batch, const Visibility& vis, const int64_t* slots, std::vector<float>& logits);

    int32_t n_outputs() const { return n_out_; }

    void attn_norm(Members m) override;
    void qkv(Members m) override;
    void qkv_bias(Members m) override;
    void qk_norm(Members m) override;
    void rope_store(Members m) override;
    void attend(Members m) override;
    void mlp_swiglu(Members m) override;
    void embed() override;
    void output(int32_t head_rows) override;
    bool side_by_side(int32_t) override { return false; }  // a group's layers one after another
    void group_begin(int32_t n_layers, bool lanes) override;
    void group_restore() override;
    void group_add(int32_t lane) override;
    void group_end() override;

private:
    const Layer& layer(int32_t l) const { return model_.layers()[l]; }
    void attend_layer(int32_t l);
    void attend_one(int32_t l);    // decode: (token, KV head, part of its group) tasks
    void attend_batch(int32_t l);  // batches: (KV head, token group) tasks, K/V tiles shared
    void mlp_layer(int32_t l);

    // fn(i) for every row i < n_rows, split over the pool when there is more than one row.
    template <typename F>
    void rows(int32_t n_rows, F&& fn) {
        if (n_rows == 1 || pool_.size() == 1) {
            for (int32_t i = 0; i < n_rows; ++i) fn(i);
            return;
        }
        pool_.run([&](int ith, int nth) {
            int64_t b, e;
            split_range(n_rows, ith, nth, 1, &b, &e);
            for (int64_t i = b; i < e; ++i) fn(static_cast<int32_t>(i));
        });
    }
    // outs[j].second (n_rows, w.rows) = x (n_rows, k) · outs[j].first^T, for weights sharing the
    // input x. ldy: row stride of the outputs (0 = w.rows).
    void matmul(const float* x, int32_t n_rows, int64_t k, std::initializer_list<std::pair<const Weight*, float*>> outs,
                int64_t ldy = 0);

    const Model& model_;
    const HParams& hp_;
    const KernelTable& kt_;
    Scratch& s_;
    ThreadPool& pool_;
    const KVCache& kv_;
    HostKVStore& store_;
    const Batch& batch_;
    const Visibility& vis_;
    const int64_t* slots_;
    std::vector<float>& logits_;
    int32_t n_;          // tokens in the batch
    int32_t n_out_ = 0;  // rows of logits written by output()
};

}  // namespace apls::cpu
