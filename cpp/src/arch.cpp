// arch.cpp — the name tables (llama.cpp's GGUF conventions).
#include "arch.h"

#include "common.h"

namespace apls {

Arch arch_from_name(const std::string& name) {
    if (name == "llama") return Arch::LLAMA;
    if (name == "qwen2") return Arch::QWEN2;
    if (name == "qwen3") return Arch::QWEN3;
    fail(APLS_STATUS_UNSUPPORTED, "unknown architecture '", name, "' (supported: llama, qwen2, qwen3)");
}

const char* arch_name(Arch arch) {
    switch (arch) {
        case Arch::LLAMA:
            return "llama";
        case Arch::QWEN2:
            return "qwen2";
        case Arch::QWEN3:
            return "qwen3";
    }
    return "?";
}

std::string key_name(Arch arch, Key key) {
    const char* suffix = "";
    switch (key) {
        case Key::CONTEXT_LENGTH:
            suffix = "context_length";
            break;
        case Key::EMBEDDING_LENGTH:
            suffix = "embedding_length";
            break;
        case Key::BLOCK_COUNT:
            suffix = "block_count";
            break;
        case Key::FEED_FORWARD_LENGTH:
            suffix = "feed_forward_length";
            break;
        case Key::HEAD_COUNT:
            suffix = "attention.head_count";
            break;
        case Key::HEAD_COUNT_KV:
            suffix = "attention.head_count_kv";
            break;
        case Key::KEY_LENGTH:
            suffix = "attention.key_length";
            break;
        case Key::VALUE_LENGTH:
            suffix = "attention.value_length";
            break;
        case Key::ROPE_FREQ_BASE:
            suffix = "rope.freq_base";
            break;
        case Key::ROPE_DIMENSION_COUNT:
            suffix = "rope.dimension_count";
            break;
        case Key::ROPE_SCALING_TYPE:
            suffix = "rope.scaling.type";
            break;
        case Key::ROPE_SCALING_FACTOR:
            suffix = "rope.scaling.factor";
            break;
        case Key::ROPE_SCALE_LINEAR:
            suffix = "rope.scale_linear";
            break;
        case Key::RMS_EPS:
            suffix = "attention.layer_norm_rms_epsilon";
            break;
        case Key::VOCAB_SIZE:
            suffix = "vocab_size";
            break;
    }
    return std::string(arch_name(arch)) + "." + suffix;
}

std::string tensor_name(TensorId id, int layer, const char* kind) {
    switch (id) {
        case TensorId::TOKEN_EMBD:
            return "token_embd.weight";
        case TensorId::OUTPUT_NORM:
            return "output_norm.weight";
        case TensorId::OUTPUT:
            return "output.weight";
        default:
            break;
    }
    const char* suffix = "";
    switch (id) {
        case TensorId::ATTN_NORM:
            suffix = "attn_norm";
            break;
        case TensorId::ATTN_Q:
            suffix = "attn_q";
            break;
        case TensorId::ATTN_K:
            suffix = "attn_k";
            break;
        case TensorId::ATTN_V:
            suffix = "attn_v";
            break;
        case TensorId::ATTN_OUT:
            suffix = "attn_output";
            break;
        case TensorId::FFN_NORM:
            suffix = "ffn_norm";
            break;
        case TensorId::FFN_GATE:
            suffix = "ffn_gate";
            break;
        case TensorId::FFN_UP:
            suffix = "ffn_up";
            break;
        case TensorId::FFN_DOWN:
            suffix = "ffn_down";
            break;
        case TensorId::ATTN_Q_NORM:
            suffix = "attn_q_norm";
            break;
        case TensorId::ATTN_K_NORM:
            suffix = "attn_k_norm";
            break;
        default:
            break;
    }
    return "blk." + std::to_string(layer) + "." + suffix + "." + kind;
}

}  // namespace apls
