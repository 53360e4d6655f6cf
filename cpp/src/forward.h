// forward.h — one forward pass for every backend.
//
//   x = embed(tokens)                                   x: (t, d)
//   for each layer l (run_forward walks the plan, plan.h):
//     if plan runs attn(l): the architecture's attention sub-block, x += Wo · attn(...)
//     if plan runs mlp(l):  x += Wdown · (silu(Wgate·n(x)) * Wup·n(x))        n = RMSNorm
//   a parallel group of layers: every layer reads the group's input h; x = h + sum(layer(h) - h)
//   logits = Wout · n(x)  for the rows that asked for output (ids < plan.head_rows if set)
//
// An architecture (forward_<arch>.cpp) is a short composition of the steps below: its attention
// sub-block (attn_norm → qkv → [qkv_bias] → [qk_norm] → rope_store → attend); the MLP is SwiGLU
// for every architecture. A backend implements the steps (ForwardOps): the CPU's are
// cpu/forward_ops.cpp, the GPU's cuda/forward_ops.cpp (launches, which CUDA graphs capture
// whatever the walk enqueues). So an architecture is written once and runs on every backend.
//
// A step works on a stage's members: one layer, or the layers of a parallel group that a backend
// runs side by side (each member on its own lane of buffers, a matrix stage of all members one
// launch). Every step is row by row (matrix products element by element, see cpu/kernels.h and
// cuda/launch.h), so a token's logits are bit-identical whatever else shares its batch.
//
// Letters: t = tokens in the batch, d = n_embd, f = n_ff, q = q_dim, kv = kv_dim, hd = head_dim.
#pragma once

#include <cstdint>

#include "hparams.h"
#include "plan.h"

namespace apls {

// A layer of a stage and the buffers it works in: lane < 0 the pass's own, else lane `lane` of
// a parallel group run side by side.
struct Member {
    int32_t layer;
    int32_t lane;
};

constexpr int32_t kMaxGroupLanes = 32;  // a longer parallel group runs one layer after another

struct Members {
    const Member* first;
    int32_t count;
    const Member* begin() const { return first; }
    const Member* end() const { return first + count; }
};

// The steps of a forward pass on one backend, for one batch (the backend knows its tokens,
// positions, KV slots and visibility).
class ForwardOps {
public:
    virtual ~ForwardOps() = default;

    // ---- the sub-blocks' steps, for every member of a stage -----------------------------------
    virtual void attn_norm(Members m) = 0;   // h (t, d) = RMSNorm(x) * attn_norm
    virtual void qkv(Members m) = 0;         // q (t, q), k, v (t, kv) = h · W^T
    virtual void qkv_bias(Members m) = 0;    // q += bq, k += bk, v += bv (layers that have them)
    virtual void qk_norm(Members m) = 0;     // per-head RMSNorm of q and k (weights (hd))
    virtual void rope_store(Members m) = 0;  // RoPE (hp.rope_style) on q, k; K and V into the cache
    virtual void attend(Members m) = 0;      // x += Wo · softmax(q k^T / sqrt(hd)) v [+ bo]
    virtual void mlp_swiglu(Members m) = 0;  // x += Wdown · (silu(Wgate · n(x)) * Wup · n(x))

    // ---- the walk's frame -----------------------------------------------------------------------
    virtual void embed() = 0;                    // x (t, d) = token embeddings
    virtual void output(int32_t head_rows) = 0;  // logits of the rows that asked for them
    // Whether a parallel group of n layers runs side by side (lanes), else one layer after another.
    virtual bool side_by_side(int32_t n_layers) = 0;
    // A parallel group: x0 = x (and each lane's x = x0 when side by side); before each member
    // after the first, one after another: x = x0; after each member, in order: acc (+)= x - x0
    // (x of the member's lane); at the end x = x0 + acc.
    virtual void group_begin(int32_t n_layers, bool lanes) = 0;
    virtual void group_restore() = 0;
    virtual void group_add(int32_t lane) = 0;
    virtual void group_end() = 0;
};

// An architecture's attention sub-block over a stage's members.
using AttentionBlock = void (*)(ForwardOps& ops, Members m);

// The whole pass: embed, every layer under `plan` (skips, parallel groups), the output head.
void run_forward(ForwardOps& ops, const Plan& plan, int32_t n_layer, AttentionBlock attention);

// The architectures (forward_<arch>.cpp), and the one of hp.arch.
void forward_llama(ForwardOps& ops, const Plan& plan, int32_t n_layer);
void forward_qwen2(ForwardOps& ops, const Plan& plan, int32_t n_layer);
void forward_qwen3(ForwardOps& ops, const Plan& plan, int32_t n_layer);
void forward(ForwardOps& ops, const Plan& plan, const HParams& hp);

}  // namespace apls
