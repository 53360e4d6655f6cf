// capi.cpp — the C API: argument checks, exceptions turned into status codes.
#include <cstring>
#include <memory>

#include "apls/apls.h"
#include "capi_types.h"
#include "capi_util.h"
#include "context.h"
#include "cpu/kernels.h"
#include "device.h"
#include "model.h"

using apls::guard;
using apls::null_arg;

extern "C" {

const char* apls_version(void) { return APLS_VERSION_STRING; }
const char* apls_last_error(void) { return apls::g_last_error.c_str(); }

const char* apls_status_name(apls_status status) {
    switch (status) {
        case APLS_STATUS_OK:
            return "ok";
        case APLS_STATUS_INVALID_ARGUMENT:
            return "invalid argument";
        case APLS_STATUS_IO:
            return "i/o error";
        case APLS_STATUS_FORMAT:
            return "malformed file";
        case APLS_STATUS_UNSUPPORTED:
            return "unsupported";
        case APLS_STATUS_OUT_OF_MEMORY:
            return "out of memory";
        case APLS_STATUS_KV_FULL:
            return "KV cache full";
        case APLS_STATUS_INTERNAL:
            return "internal error";
    }
    return "unknown status";
}

const char* apls_cpu_isa(void) {
    const char* isa = "generic";
    guard([&] { isa = apls::cpu::kernels().isa; });
    return isa;
}

apls_model_params apls_model_default_params(void) {
    apls_model_params p;
    p.use_mmap = true;
    p.device = APLS_DEVICE_AUTO;
    return p;
}

apls_status apls_model_load(const char* path, apls_model_params params, apls_model** out_model) {
    if (!path) return null_arg("path");
    if (!out_model) return null_arg("out_model");
    *out_model = nullptr;
    return guard([&] {
        auto m = std::make_unique<apls_model>();
        // The field's bits as an int: a C caller may store any int in the enum, and loading an
        // out-of-range value as apls_device would be undefined behaviour in C++.
        static_assert(sizeof(params.device) == sizeof(int32_t), "apls_device is an int");
        int32_t device = 0;
        std::memcpy(&device, &params.device, sizeof device);
        m->impl = apls::Model::load(path, params.use_mmap, device);
        *out_model = m.release();
    });
}

void apls_model_free(apls_model* model) { delete model; }

apls_device apls_model_device(const apls_model* model) {
    return model ? static_cast<apls_device>(model->impl->device()) : APLS_DEVICE_CPU;
}

const char* apls_model_device_note(const apls_model* model) { return model ? model->impl->device_note().c_str() : ""; }

int32_t apls_cuda_device_count(void) { return apls::cuda::device_count(); }

int32_t apls_model_n_vocab(const apls_model* m) { return m ? m->impl->hparams().n_vocab : 0; }
int32_t apls_model_n_layer(const apls_model* m) { return m ? m->impl->hparams().n_layer : 0; }
int32_t apls_model_n_embd(const apls_model* m) { return m ? m->impl->hparams().n_embd : 0; }
int32_t apls_model_n_ctx_train(const apls_model* m) { return m ? m->impl->hparams().n_ctx_train : 0; }
uint64_t apls_model_n_params(const apls_model* m) { return m ? m->impl->n_params() : 0; }
uint64_t apls_model_size(const apls_model* m) { return m ? m->impl->n_bytes() : 0; }

int32_t apls_model_meta_val_str(const apls_model* m, const char* key, char* buf, size_t buf_size) {
    std::string text;
    // Building the text allocates: under guard, so that a bad_alloc becomes -1 and an error
    // instead of crossing the C boundary.
    const apls_status st = guard([&] {
        if (m && key) {
            if (const apls::gguf::Value* v = m->impl->file().find(key)) {
                switch (v->type) {
                    case apls::gguf::ValueType::STRING:
                        text = v->str;
                        break;
                    case apls::gguf::ValueType::BOOL:
                        text = v->scalar.b ? "true" : "false";
                        break;
                    case apls::gguf::ValueType::F32:
                    case apls::gguf::ValueType::F64:
                        text = std::to_string(v->scalar.f);
                        break;
                    case apls::gguf::ValueType::ARRAY:
                        text = "[array of " + std::to_string(v->arr.size()) + "]";
                        break;
                    default:
                        text = v->is_integer()
                                   ? (v->type == apls::gguf::ValueType::I8 || v->type == apls::gguf::ValueType::I16 ||
                                              v->type == apls::gguf::ValueType::I32 ||
                                              v->type == apls::gguf::ValueType::I64
                                          ? std::to_string(v->scalar.i)
                                          : std::to_string(v->scalar.u))
                                   : "";
                }
            }
        }
    });
    if (st != APLS_STATUS_OK) text.clear();
    if (buf && buf_size > 0) {
        const size_t n = text.size() < buf_size - 1 ? text.size() : buf_size - 1;
        std::memcpy(buf, text.data(), n);
        buf[n] = '\0';
    }
    return st == APLS_STATUS_OK ? static_cast<int32_t>(text.size()) : -1;
}

apls_context_params apls_context_default_params(void) {
    apls_context_params p;
    p.n_ctx = 0;
    p.n_batch = 512;
    p.n_seq_max = 1;
    p.kv_block_size = 16;
    p.kv_type = APLS_KV_TYPE_F16;
    p.n_threads = 0;
    return p;
}

apls_status apls_context_init(apls_model* model, apls_context_params params, apls_context** out_ctx) {
    if (!model) return null_arg("model");
    if (!out_ctx) return null_arg("out_ctx");
    *out_ctx = nullptr;
    return guard([&] {
        // A C caller may store any int in kv_type; in C++ loading a value outside the enum's
        // range is undefined (UBSan: -fsanitize=enum), so check the stored integer first.
        int32_t kv_type = 0;
        static_assert(sizeof(params.kv_type) == sizeof(kv_type), "apls_kv_type is int-sized");
        std::memcpy(&kv_type, &params.kv_type, sizeof(kv_type));
        if (kv_type != APLS_KV_TYPE_F32 && kv_type != APLS_KV_TYPE_F16)
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "unknown kv_type ", kv_type);
        auto c = std::make_unique<apls_context>();
        c->impl = std::make_unique<apls::Context>(*model->impl, params);
        *out_ctx = c.release();
    });
}

void apls_context_free(apls_context* ctx) { delete ctx; }
uint32_t apls_context_n_ctx(const apls_context* ctx) { return ctx ? ctx->impl->params().n_ctx : 0; }
int32_t apls_context_n_threads(const apls_context* ctx) { return ctx ? ctx->impl->n_threads() : 0; }

apls_status apls_decode(apls_context* ctx, const apls_batch* batch, const apls_plan* plan) {
    if (!ctx) return null_arg("ctx");
    if (!batch) return null_arg("batch");
    return guard([&] {
        apls::Batch b = ctx->impl->make_batch(*batch);
        const apls::HParams& hp = ctx->impl->model().hparams();
        apls::Plan p = apls::Plan::from_c(plan, hp.n_layer, hp.n_vocab);
        ctx->impl->decode(b, p);
    });
}

int32_t apls_get_n_outputs(const apls_context* ctx) { return ctx ? ctx->impl->n_outputs() : 0; }
const float* apls_get_logits(const apls_context* ctx) { return ctx ? ctx->impl->logits() : nullptr; }

const float* apls_get_logits_ith(apls_context* ctx, int32_t i) {
    const float* row = nullptr;
    if (!ctx) {
        null_arg("ctx");
        return nullptr;
    }
    guard([&] {
        if (i < 0 || i >= ctx->impl->n_outputs())
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "output row ", i, " is out of range [0, ", ctx->impl->n_outputs(),
                       ")");
        row = ctx->impl->logits() + static_cast<size_t>(i) * ctx->impl->model().hparams().n_vocab;
    });
    return row;
}

apls_status apls_get_argmax_ith(apls_context* ctx, int32_t i, int32_t* out_token) {
    if (!out_token) return null_arg("out_token");
    *out_token = -1;
    if (!ctx) return null_arg("ctx");
    return guard([&] { *out_token = ctx->impl->argmax(i); });
}

apls_status apls_get_top_k(apls_context* ctx, int32_t k, int32_t* out_tokens) {
    if (!ctx) return null_arg("ctx");
    if (!out_tokens) return null_arg("out_tokens");
    return guard([&] { ctx->impl->top_k(k, out_tokens); });
}

apls_status apls_generate_greedy(apls_context* ctx, int32_t seq_id, int32_t last_token, int32_t n_max, bool stop_at_eog,
                                 int32_t* out_tokens, int32_t* n_out) {
    if (!n_out) return null_arg("n_out");
    *n_out = 0;
    if (!ctx) return null_arg("ctx");
    if (!out_tokens) return null_arg("out_tokens");
    return guard([&] {
        const std::vector<int32_t> ids = ctx->impl->generate_greedy(seq_id, last_token, n_max, stop_at_eog);
        if (!ids.empty()) std::memcpy(out_tokens, ids.data(), ids.size() * sizeof(int32_t));
        *n_out = static_cast<int32_t>(ids.size());
    });
}

int32_t apls_kv_seq_len(const apls_context* ctx, int32_t seq_id) {
    if (!ctx || !ctx->impl->kv().valid_seq(seq_id)) return -1;
    return ctx->impl->kv().seq_len(seq_id);
}

apls_status apls_kv_seq_truncate(apls_context* ctx, int32_t seq_id, int32_t n) {
    if (!ctx) return null_arg("ctx");
    return guard([&] {
        if (!ctx->impl->kv().valid_seq(seq_id)) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "unknown sequence ", seq_id);
        ctx->impl->kv().truncate(seq_id, n);
    });
}

void apls_kv_clear(apls_context* ctx) {
    if (ctx) guard([&] { ctx->impl->kv().clear(); });  // no status to return; guard keeps exceptions in
}

}  // extern "C"
