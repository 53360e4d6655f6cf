// hparams.cpp — fill HParams from GGUF metadata and check it is self-consistent.
#include "hparams.h"

#include <string>

#include "common.h"
#include "gguf.h"

namespace apls {

namespace {
int32_t get_i32(const gguf::File& f, const std::string& key, int64_t lo, int64_t hi) {
    const uint64_t v = f.get_u64(key);
    if (static_cast<int64_t>(v) < lo || static_cast<int64_t>(v) > hi || v > (1ull << 62))
        fail(APLS_STATUS_FORMAT, "metadata ", key, " = ", v, " is out of range [", lo, ", ", hi, "]");
    return static_cast<int32_t>(v);
}
}  // namespace

HParams HParams::from_gguf(const gguf::File& f) {
    HParams hp;
    const std::string arch = f.get_string("general.architecture");
    hp.arch = arch_from_name(arch);
    auto key = [&](Key k) { return key_name(hp.arch, k); };

    hp.n_embd = get_i32(f, key(Key::EMBEDDING_LENGTH), 1, 1 << 20);
    hp.n_layer = get_i32(f, key(Key::BLOCK_COUNT), 1, 4096);
    hp.n_ff = get_i32(f, key(Key::FEED_FORWARD_LENGTH), 1, 1 << 22);
    hp.n_head = get_i32(f, key(Key::HEAD_COUNT), 1, 4096);
    hp.n_head_kv = f.find(key(Key::HEAD_COUNT_KV)) ? get_i32(f, key(Key::HEAD_COUNT_KV), 1, 4096) : hp.n_head;
    hp.n_ctx_train = f.find(key(Key::CONTEXT_LENGTH)) ? get_i32(f, key(Key::CONTEXT_LENGTH), 1, 1 << 24) : 2048;
    // The head size is n_embd / n_head unless the file says otherwise (qwen3, some mistral).
    if (f.find(key(Key::KEY_LENGTH))) {
        hp.head_dim = get_i32(f, key(Key::KEY_LENGTH), 1, 1 << 16);
    } else {
        if (hp.n_embd % hp.n_head != 0)
            fail(APLS_STATUS_FORMAT, key(Key::EMBEDDING_LENGTH), " = ", hp.n_embd, " is not a multiple of ",
                 key(Key::HEAD_COUNT), " = ", hp.n_head);
        hp.head_dim = hp.n_embd / hp.n_head;
    }
    if (f.find(key(Key::VALUE_LENGTH)) && get_i32(f, key(Key::VALUE_LENGTH), 1, 1 << 16) != hp.head_dim)
        fail(APLS_STATUS_UNSUPPORTED, key(Key::VALUE_LENGTH), " differs from ", key(Key::KEY_LENGTH));
    if (hp.n_head % hp.n_head_kv != 0)
        fail(APLS_STATUS_FORMAT, key(Key::HEAD_COUNT), " = ", hp.n_head, " is not a multiple of ",
             key(Key::HEAD_COUNT_KV), " = ", hp.n_head_kv);
    hp.n_rot = f.find(key(Key::ROPE_DIMENSION_COUNT)) ? get_i32(f, key(Key::ROPE_DIMENSION_COUNT), 2, hp.head_dim)
                                                      : hp.head_dim;
    if (hp.n_rot % 2 != 0) fail(APLS_STATUS_FORMAT, key(Key::ROPE_DIMENSION_COUNT), " = ", hp.n_rot, " is odd");
    hp.rope_style = hp.arch == Arch::LLAMA ? RopeStyle::NORM : RopeStyle::NEOX;
    hp.rope_freq_base = static_cast<float>(f.get_f64_or(key(Key::ROPE_FREQ_BASE), 10000.0));
    if (!(hp.rope_freq_base > 0.0f)) fail(APLS_STATUS_FORMAT, key(Key::ROPE_FREQ_BASE), " must be positive");

    // RoPE scaling: "linear" divides positions by the factor; other types are refused by name.
    const std::string scaling = f.get_string_or(key(Key::ROPE_SCALING_TYPE), "none");
    double factor = f.get_f64_or(key(Key::ROPE_SCALING_FACTOR), 0.0);
    if (factor == 0.0) factor = f.get_f64_or(key(Key::ROPE_SCALE_LINEAR), 0.0);  // older files
    if (scaling == "linear" || (scaling == "none" && factor > 0.0 && f.find(key(Key::ROPE_SCALE_LINEAR)))) {
        if (!(factor > 0.0)) fail(APLS_STATUS_FORMAT, key(Key::ROPE_SCALING_FACTOR), " must be positive");
        hp.rope_freq_scale = static_cast<float>(1.0 / factor);
    } else if (scaling != "none") {
        fail(APLS_STATUS_UNSUPPORTED, "RoPE scaling type '", scaling, "' (supported: none, linear)");
    }
    hp.rms_eps = static_cast<float>(f.get_f64_or(key(Key::RMS_EPS), 1e-5));
    if (!(hp.rms_eps > 0.0f)) fail(APLS_STATUS_FORMAT, key(Key::RMS_EPS), " must be positive");
    // n_vocab comes from the embedding tensor (model.cpp); the key is optional.
    return hp;
}

}  // namespace apls
