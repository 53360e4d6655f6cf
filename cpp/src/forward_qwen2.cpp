// forward_qwen2.cpp — Qwen2: llama's layer with q/k/v biases (always present: the model loader
// requires them) and NEOX RoPE (pairs (x[i], x[i + n_rot/2]), weights stored as Hugging Face has
// them; hp.rope_style, which the backends' RoPE step reads).
#include "forward.h"

namespace apls {

void forward_qwen2(ForwardOps& ops, const Plan& plan, int32_t n_layer) { forward_llama(ops, plan, n_layer); }

}  // namespace apls
