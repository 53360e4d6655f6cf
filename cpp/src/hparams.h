// hparams.h — the model's hyperparameters, filled from GGUF keys (one trivially copyable struct).
#pragma once

#include <cstdint>

#include "arch.h"
#include "rope.h"

namespace apls {

namespace gguf {
class File;
}

struct HParams {
    Arch arch = Arch::LLAMA;
    int32_t n_vocab = 0;
    int32_t n_ctx_train = 0;
    int32_t n_embd = 0;      // d
    int32_t n_layer = 0;
    int32_t n_ff = 0;        // MLP hidden size
    int32_t n_head = 0;
    int32_t n_head_kv = 0;
    int32_t head_dim = 0;    // per-head size of q, k, v
    int32_t n_rot = 0;       // rotated dimensions per head (<= head_dim)
    float rope_freq_base = 10000.0f;
    float rope_freq_scale = 1.0f;  // linear scaling: position multiplier (1 / factor)
    RopeStyle rope_style = RopeStyle::NORM;  // by architecture: llama NORM, qwen2/qwen3 NEOX
    float rms_eps = 1e-5f;

    int32_t q_dim() const { return n_head * head_dim; }
    int32_t kv_dim() const { return n_head_kv * head_dim; }

    // Read and validate; throws APLS_STATUS_FORMAT / _UNSUPPORTED naming the key.
    static HParams from_gguf(const gguf::File& f);
};

}  // namespace apls
