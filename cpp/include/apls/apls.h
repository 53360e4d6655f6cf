/* apls.h — the C API of the APLS inference engine.
 *
 * Conventions (as llama.h): opaque handles; settings as plain structs from *_default_params();
 * an init/free pair for every object; every call that can fail returns an apls_status, and on
 * failure apls_last_error() returns a message naming the problem (thread-local, valid until the
 * next failing call on the same thread). No C++ exception crosses this boundary.
 *
 * Ownership: the caller owns every handle it receives and frees it with the matching *_free.
 * A context borrows its model: free every context before its model.
 * Thread-safety: a model may be shared by contexts on several threads; a context is used by one
 * thread at a time.
 */
#ifndef APLS_H
#define APLS_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#if defined(APLS_BUILDING_LIBRARY)
#define APLS_API __attribute__((visibility("default")))
#else
#define APLS_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum apls_status {
    APLS_STATUS_OK = 0,
    APLS_STATUS_INVALID_ARGUMENT = 1, /* a wrong argument: null handle, bad size, token out of range */
    APLS_STATUS_IO = 2,               /* a file could not be opened or mapped */
    APLS_STATUS_FORMAT = 3,           /* a malformed GGUF file */
    APLS_STATUS_UNSUPPORTED = 4,      /* a valid file the engine cannot run (architecture, tensor type) */
    APLS_STATUS_OUT_OF_MEMORY = 5,
    APLS_STATUS_KV_FULL = 6,          /* the KV cache has no room for the batch; the context is unchanged */
    APLS_STATUS_INTERNAL = 7,
} apls_status;

typedef enum apls_kv_type {
    APLS_KV_TYPE_F32 = 0,
    APLS_KV_TYPE_F16 = 1,
} apls_kv_type;

struct apls_model;
struct apls_context;
typedef struct apls_model apls_model;
typedef struct apls_context apls_context;

/* ---- library ---------------------------------------------------------------------------- */

APLS_API const char* apls_version(void);      /* "0.1.0" */
APLS_API const char* apls_last_error(void);   /* "" when the last call on this thread succeeded */
APLS_API const char* apls_status_name(apls_status status);
APLS_API const char* apls_cpu_isa(void);      /* the SIMD kernels chosen at run time: "avx512", "avx2", "generic" */

/* ---- model ------------------------------------------------------------------------------ */

typedef struct apls_model_params {
    bool use_mmap;   /* map the file (default true); false reads it into memory */
} apls_model_params;

APLS_API apls_model_params apls_model_default_params(void);
APLS_API apls_status apls_model_load(const char* path, apls_model_params params, apls_model** out_model);
APLS_API void apls_model_free(apls_model* model);

APLS_API int32_t apls_model_n_vocab(const apls_model* model);
APLS_API int32_t apls_model_n_layer(const apls_model* model);
APLS_API int32_t apls_model_n_embd(const apls_model* model);
APLS_API int32_t apls_model_n_ctx_train(const apls_model* model);
APLS_API uint64_t apls_model_n_params(const apls_model* model);
APLS_API uint64_t apls_model_size(const apls_model* model);  /* bytes of weights */
/* Metadata value as text ("" if absent); returns the full length like snprintf. */
APLS_API int32_t apls_model_meta_val_str(const apls_model* model, const char* key, char* buf, size_t buf_size);

/* ---- tokenizer ---------------------------------------------------------------------------- */

/* Tokenize UTF-8 text (text_len bytes). add_special: add BOS (and EOS) as the model file says;
 * parse_special: recognise control-token text such as "<|im_start|>". Writes at most n_max ids;
 * returns APLS_STATUS_INVALID_ARGUMENT with *n_out set to the count needed when n_max is too small. */
APLS_API apls_status apls_tokenize(const apls_model* model, const char* text, size_t text_len, int32_t* tokens,
                                   int32_t n_max, bool add_special, bool parse_special, int32_t* n_out);
/* Bytes of the text of tokens[0..n) (special tokens rendered only when `special`). Writes at most
 * buf_size bytes (no terminator) and sets *len_out to the full length; a short buffer returns
 * APLS_STATUS_INVALID_ARGUMENT. Pieces may end inside a UTF-8 character. */
APLS_API apls_status apls_detokenize(const apls_model* model, const int32_t* tokens, int32_t n, char* buf,
                                     size_t buf_size, bool special, size_t* len_out);
APLS_API int32_t apls_token_bos(const apls_model* model);  /* -1 if none */
APLS_API int32_t apls_token_eos(const apls_model* model);
APLS_API int32_t apls_token_eot(const apls_model* model);
APLS_API bool apls_token_is_eog(const apls_model* model, int32_t token);  /* end of generation */

/* ---- sampling: see the section at the end of this file ---------------------------------- */

/* ---- layer plan --------------------------------------------------------------------------- */

/* A layer plan: for every layer, whether its attention and MLP sub-blocks run. Arrays have
 * n_layer entries; NULL arrays mean "all run". A NULL plan is the full model. */
typedef struct apls_plan {
    int32_t n_layer;
    const uint8_t* attn;  /* 1 = run the attention sub-block of layer i */
    const uint8_t* mlp;   /* 1 = run the MLP sub-block of layer i */
} apls_plan;

/* ---- context ------------------------------------------------------------------------------ */

typedef struct apls_context_params {
    uint32_t n_ctx;          /* KV cache capacity in tokens, over all sequences (0 = model's training context) */
    uint32_t n_batch;        /* most tokens one apls_decode call may carry (default 512) */
    uint32_t n_seq_max;      /* most sequences (default 1) */
    uint32_t kv_block_size;  /* tokens per KV block (default 16) */
    apls_kv_type kv_type;    /* storage of K and V (default F16) */
    int32_t n_threads;       /* worker threads (default: physical cores; <= 0 means default) */
} apls_context_params;

APLS_API apls_context_params apls_context_default_params(void);
APLS_API apls_status apls_context_init(apls_model* model, apls_context_params params, apls_context** out_ctx);
APLS_API void apls_context_free(apls_context* ctx);
APLS_API uint32_t apls_context_n_ctx(const apls_context* ctx);
APLS_API int32_t apls_context_n_threads(const apls_context* ctx);

/* ---- decode --------------------------------------------------------------------------------- */

/* A batch of tokens. pos NULL: each sequence continues from its current length. seq_id NULL:
 * sequence 0. logits NULL: logits for the last token only; else logits[i] != 0 marks rows to
 * output, in batch order. */
typedef struct apls_batch {
    int32_t n_tokens;
    const int32_t* token;
    const int32_t* pos;
    const int32_t* seq_id;
    const int8_t* logits;
} apls_batch;

/* Run the forward pass of `batch` under `plan` (NULL = full model), append its K/V to the cache.
 * On error the context (KV cache included) is left as it was. */
APLS_API apls_status apls_decode(apls_context* ctx, const apls_batch* batch, const apls_plan* plan);
APLS_API int32_t apls_get_n_outputs(const apls_context* ctx);
/* Logits of the last decode: n_outputs rows of n_vocab floats, owned by the context. */
APLS_API const float* apls_get_logits(const apls_context* ctx);
/* Row i of the last decode's outputs, or NULL (and an error) if i is out of range. */
APLS_API const float* apls_get_logits_ith(apls_context* ctx, int32_t i);

/* ---- KV cache ------------------------------------------------------------------------------- */

APLS_API int32_t apls_kv_seq_len(const apls_context* ctx, int32_t seq_id);   /* entries held, -1 if unknown seq */
/* Keep the first n entries of a sequence (rollback). */
APLS_API apls_status apls_kv_seq_truncate(apls_context* ctx, int32_t seq_id, int32_t n);
APLS_API void apls_kv_clear(apls_context* ctx);

/* ---- sampling ------------------------------------------------------------------------------ */
/* (declarations added with the sampler) */

#ifdef __cplusplus
}
#endif

#endif /* APLS_H */
