// forward_llama.cpp — llama (Llama 2/3, Mistral, SmolLM, TinyLlama): pre-norm attention with
// RoPE on adjacent pairs (converters permute q/k rows into that order), optional q/k/v biases
// (checkpoints with attention_bias), SwiGLU MLP.
#include "forward.h"

namespace apls {

void forward_llama(Context& ctx, const Batch& batch, const Plan& plan, const Visibility& vis) {
    Forward f(ctx, batch, vis);
    f.embed();
    f.run(plan, [&](int32_t l) {
        const Layer& L = f.layer(l);
        f.attn_norm(L);
        f.qkv(L);
        if (!L.bq.empty()) f.qkv_bias(L);
        f.rope_store(l);
        f.attend(l);
    });
}

}  // namespace apls
