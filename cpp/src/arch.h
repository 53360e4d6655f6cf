// arch.h — architectures, GGUF metadata keys and tensor names: every name in one table.
#pragma once

#include <string>

namespace apls {

enum class Arch { LLAMA, QWEN2, QWEN3 };

// "llama" -> Arch::LLAMA, "qwen2", "qwen3"; any other name throws APLS_STATUS_UNSUPPORTED naming it.
Arch arch_from_name(const std::string& name);
const char* arch_name(Arch arch);

// Per-architecture metadata keys ("{arch}.block_count", ...).
enum class Key {
    CONTEXT_LENGTH,
    EMBEDDING_LENGTH,
    BLOCK_COUNT,
    FEED_FORWARD_LENGTH,
    HEAD_COUNT,
    HEAD_COUNT_KV,
    KEY_LENGTH,
    VALUE_LENGTH,
    ROPE_FREQ_BASE,
    ROPE_DIMENSION_COUNT,
    ROPE_SCALING_TYPE,
    ROPE_SCALING_FACTOR,
    ROPE_SCALE_LINEAR,
    RMS_EPS,
    VOCAB_SIZE,
};
std::string key_name(Arch arch, Key key);

// Tensor names; per-layer ones take the layer index ("blk.{i}.attn_q.weight").
enum class TensorId {
    TOKEN_EMBD,
    OUTPUT_NORM,
    OUTPUT,
    ATTN_NORM,
    ATTN_Q,
    ATTN_K,
    ATTN_V,
    ATTN_OUT,
    FFN_NORM,
    FFN_GATE,
    FFN_UP,
    FFN_DOWN,
    ATTN_Q_NORM,
    ATTN_K_NORM,  // per-head RMSNorm weights (qwen3)
};
// kind: "weight" or "bias" ("blk.{i}.attn_q.bias").
std::string tensor_name(TensorId id, int layer = -1, const char* kind = "weight");

}  // namespace apls
