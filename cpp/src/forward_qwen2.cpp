// forward_qwen2.cpp — Qwen2: as llama, with q/k/v biases always and NEOX RoPE
// (pairs (x[i], x[i + n_rot/2]), weights stored as Hugging Face has them).
#include "forward.h"

namespace apls {

void forward_qwen2(Context& ctx, const Batch& batch, const Plan& plan, const Visibility& vis) {
    Forward f(ctx, batch, vis);
    f.embed();
    f.run(plan, [&](int32_t l) {
        const Layer& L = f.layer(l);
        f.attn_norm(L);
        f.qkv(L);
        f.qkv_bias(L);
        f.rope_store(l);
        f.attend(l);
    });
}

}  // namespace apls
