// forward_qwen3.cpp — Qwen3: no biases; each head of q and k is RMS-normalised (weights of
// head_dim) before NEOX RoPE; head_dim may differ from n_embd / n_head.
#include "forward.h"

namespace apls {

void forward_qwen3(Context& ctx, const Batch& batch, const Plan& plan, const Visibility& vis) {
    Forward f(ctx, batch, vis);
    f.embed();
    f.run(plan, [&](int32_t l) {
        const Layer& L = f.layer(l);
        f.attn_norm(L);
        f.qkv(L);
        f.qk_norm(L);
        f.rope_store(l);
        f.attend(l);
    });
}

}  // namespace apls
