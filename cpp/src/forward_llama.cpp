// forward_llama.cpp — llama (Llama 2/3, Mistral, SmolLM, TinyLlama): pre-norm attention with
// RoPE on adjacent pairs (converters permute q/k rows into that order), optional q/k/v biases
// and output bias (checkpoints with attention_bias), SwiGLU MLP.
#include "forward.h"

namespace apls {

void forward_llama(ForwardOps& ops, const Plan& plan, int32_t n_layer) {
    run_forward(ops, plan, n_layer, [](ForwardOps& f, Members m) {
        f.attn_norm(m);
        f.qkv(m);
        f.qkv_bias(m);  // only the layers that have biases
        f.rope_store(m);
        f.attend(m);
    });
}

}  // namespace apls
