// forward_qwen3.cpp — Qwen3: no biases; each head of q and k is RMS-normalised (weights of
// head_dim) before NEOX RoPE; head_dim may differ from n_embd / n_head.
#include "forward.h"

namespace apls {

void forward_qwen3(ForwardOps& ops, const Plan& plan, int32_t n_layer) {
    run_forward(ops, plan, n_layer, [](ForwardOps& f, Members m) {
        f.attn_norm(m);
        f.qkv(m);
        f.qk_norm(m);
        f.rope_store(m);
        f.attend(m);
    });
}

}  // namespace apls
