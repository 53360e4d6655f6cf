// forward.h — the shared pieces of the CPU forward pass; each architecture's forward
// (forward_<arch>.cpp) is a short composition of them.
//
//   x = embed(tokens)                                   x: (t, d)
//   for each layer l (Forward::run):
//     if plan runs attn(l): the architecture's attention sub-block, x += Wo · attn(...)
//     if plan runs mlp(l):  x += Wdown · (silu(Wgate·n(x)) * Wup·n(x))        n = RMSNorm
//   a parallel group of layers: every layer reads the group's input h; x = h + sum(layer(h) - h)
//   logits = Wout · n(x)  for the rows that asked for output (ids < plan.head_rows if set)
//
// An attention sub-block is: attn_norm → qkv → [qkv_bias] → [qk_norm] → rope_store → attend.
// Every step works row by row (or element by element for matrix products, see kernels.h), so a
// token's logits are bit-identical whatever else shares its batch.
//
// Letters: t = tokens in the batch, d = n_embd, f = n_ff, q = q_dim, kv = kv_dim, hd = head_dim.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <utility>

#include "context.h"
#include "cpu/ops.h"

namespace apls {

struct Forward {
    Forward(Context& ctx, const Batch& batch, const Visibility& vis);

    Context& ctx;
    const HParams& hp;
    const cpu::KernelTable& kt;
    Scratch& s;
    cpu::ThreadPool& pool;
    const Batch& batch;
    int32_t n;           // tokens in the batch
    const Visibility& vis;  // what each token's attention sees (views, trees)

    const Layer& layer(int32_t l) const { return ctx.model().layers()[l]; }

    // ---- pieces ------------------------------------------------------------------------------
    void embed();                        // s.x (t, d) = token embeddings
    void attn_norm(const Layer& L);      // s.h (t, d) = RMSNorm(x) * attn_norm
    void qkv(const Layer& L);            // s.q (t, q), s.k, s.v (t, kv) = s.h · W^T
    void qkv_bias(const Layer& L);       // s.q += bq, s.k += bk, s.v += bv
    void qk_norm(const Layer& L);        // per-head RMSNorm of s.q and s.k (weights (hd))
    void rope_store(int32_t l);          // RoPE (hp.rope_style) on q, k; K and V into the cache
    void attend(int32_t l);              // x += Wo · softmax(q k^T / sqrt(hd)) v  [+ bo when the layer has it]
    void mlp_swiglu(int32_t l);          // x += Wdown · (silu(Wgate · n(x)) * Wup · n(x))
    void output(int32_t head_rows);      // logits of the rows that asked for them

    // Every layer in order under `plan` (skips, parallel groups), then the output head.
    // attn(l) is the architecture's attention sub-block; the MLP is SwiGLU for every one.
    template <typename Attn>
    void run(const Plan& plan, Attn&& attn) {
        auto one = [&](int32_t l) {
            if (plan.runs_attn(l)) attn(l);
            if (plan.runs_mlp(l)) mlp_swiglu(l);
        };
        for (int32_t l = 0; l < hp.n_layer;) {
            int32_t end = l + 1;
            const int32_t g = plan.group_of(l);
            while (g >= 0 && end < hp.n_layer && plan.group_of(end) == g) ++end;
            if (end - l > 1) parallel_group(l, end, one);
            else one(l);
            l = end;
        }
        output(plan.head_rows);
    }

    // ---- helpers -----------------------------------------------------------------------------
    // fn(i) for every row i < n_rows, split over the pool when there is more than one row.
    template <typename F>
    void rows(int32_t n_rows, F&& fn) {
        if (n_rows == 1 || pool.size() == 1) {
            for (int32_t i = 0; i < n_rows; ++i) fn(i);
            return;
        }
        pool.run([&](int ith, int nth) {
            int64_t b, e;
            cpu::split_range(n_rows, ith, nth, 1, &b, &e);
            for (int64_t i = b; i < e; ++i) fn(static_cast<int32_t>(i));
        });
    }

    // outs[j].second (n_rows, w.rows) = x (n_rows, k) · outs[j].first^T, for weights sharing the
    // input x. ldy: row stride of the outputs (0 = w.rows).
    void matmul(const float* x, int32_t n_rows, int64_t k, std::initializer_list<std::pair<const Weight*, float*>> outs,
                int64_t ldy = 0);

    // Layers [l0, l1) as one parallel group: each reads h = x; x = h + sum_i (layer_i(h) - h).
    template <typename One>
    void parallel_group(int32_t l0, int32_t l1, One& one) {
        const size_t m = static_cast<size_t>(n) * hp.n_embd;
        std::copy(s.x.begin(), s.x.begin() + m, s.x0.begin());
        std::fill(s.acc.begin(), s.acc.begin() + m, 0.0f);
        for (int32_t l = l0; l < l1; ++l) {
            if (l > l0) std::copy(s.x0.begin(), s.x0.begin() + m, s.x.begin());
            one(l);
            for (size_t i = 0; i < m; ++i) s.acc[i] += s.x[i] - s.x0[i];
        }
        for (size_t i = 0; i < m; ++i) s.x[i] = s.x0[i] + s.acc[i];
    }
};

// The architectures' forward passes (forward_<arch>.cpp), and the one Context::decode calls.
void forward_llama(Context& ctx, const Batch& batch, const Plan& plan, const Visibility& vis);
void forward_qwen2(Context& ctx, const Batch& batch, const Plan& plan, const Visibility& vis);
void forward_qwen3(Context& ctx, const Batch& batch, const Plan& plan, const Visibility& vis);
void forward_cpu(Context& ctx, const Batch& batch, const Plan& plan, const Visibility& vis);

}  // namespace apls
