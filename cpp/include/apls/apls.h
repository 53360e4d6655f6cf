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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* Where a model's weights live and its forward pass runs. */
typedef enum apls_device {
    APLS_DEVICE_AUTO = -1, /* CUDA when this build has it, a GPU is present and the CUDA backend
                              runs the model (see apls_model_params), else CPU (default). The
                              environment variable APLS_DEVICE=cpu|cuda names the device instead
                              (as if the caller had); unset, empty or "auto" keeps the choice */
    APLS_DEVICE_CPU = 0,
    APLS_DEVICE_CUDA = 1,
} apls_device;

typedef struct apls_model_params {
    bool use_mmap;      /* map the file (default true); false reads it into memory */
    apls_device device; /* default APLS_DEVICE_AUTO; CUDA without a usable GPU, or for a model the
                           CUDA backend does not run (head dim not a multiple of 8 up to 128,
                           or a weight type without CUDA kernels; today it has kernels for every
                           type the CPU runs) ->
                           APLS_STATUS_UNSUPPORTED naming the reason */
} apls_model_params;

APLS_API apls_model_params apls_model_default_params(void);
APLS_API apls_status apls_model_load(const char* path, apls_model_params params, apls_model** out_model);
APLS_API void apls_model_free(apls_model* model);

APLS_API apls_device apls_model_device(const apls_model* model); /* CPU or CUDA, never AUTO */
/* Why APLS_DEVICE_AUTO chose the CPU for this model (no usable GPU, a build without CUDA, or what
 * the CUDA backend does not run), or "named by APLS_DEVICE=..." when the environment chose; ""
 * when AUTO chose CUDA or the caller named the device. Owned by the model; "" for NULL. */
APLS_API const char* apls_model_device_note(const apls_model* model);
/* Number of usable CUDA devices (0 when the build has no CUDA backend, or no driver/GPU). */
APLS_API int32_t apls_cuda_device_count(void);
APLS_API int32_t apls_model_n_vocab(const apls_model* model);
APLS_API int32_t apls_model_n_layer(const apls_model* model);
APLS_API int32_t apls_model_n_embd(const apls_model* model);
APLS_API int32_t apls_model_n_ctx_train(const apls_model* model);
APLS_API uint64_t apls_model_n_params(const apls_model* model);
APLS_API uint64_t apls_model_size(const apls_model* model);  /* bytes of weights */
/* Metadata value as text ("" if absent); returns the full length like snprintf (-1, with an error, out of memory). */
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

/* A layer plan: for every layer, whether its attention and MLP sub-blocks run, and which
 * consecutive layers form a parallel group. Arrays have n_layer entries; NULL arrays mean "all
 * run" / "no groups". A NULL plan is the full model.
 *
 * Parallel group: consecutive layers with the same group id >= 0 all read the group's input h;
 * the group outputs h + sum_i (layer_i(h) - h). head_rows > 0 restricts the output head to
 * token ids [0, head_rows) (other logits are -inf): a cheaper head for drafts, since BPE
 * vocabularies put frequent tokens first. */
typedef struct apls_plan {
    int32_t n_layer;
    const uint8_t* attn;   /* 1 = run the attention sub-block of layer i */
    const uint8_t* mlp;    /* 1 = run the MLP sub-block of layer i */
    const int32_t* group;  /* parallel group id of layer i, -1 = none */
    int32_t head_rows;     /* 0 = full vocabulary */
} apls_plan;

/* ---- context ------------------------------------------------------------------------------ */

typedef struct apls_context_params {
    uint32_t n_ctx;          /* KV cache capacity in tokens, over all sequences (0 = model's training context) */
    uint32_t n_batch;        /* most tokens one apls_decode call may carry (default 512) */
    uint32_t n_seq_max;      /* most sequences (default 1) */
    uint32_t kv_block_size;  /* tokens per KV block (default 16) */
    apls_kv_type kv_type;    /* storage of K and V (default F16) */
    int32_t n_threads;       /* worker threads (default: physical cores of the CPUs this process may
                                use, capped by its cgroup CPU quota; <= 0 means default) */
} apls_context_params;

APLS_API apls_context_params apls_context_default_params(void);
APLS_API apls_status apls_context_init(apls_model* model, apls_context_params params, apls_context** out_ctx);
APLS_API void apls_context_free(apls_context* ctx);
APLS_API uint32_t apls_context_n_ctx(const apls_context* ctx);
APLS_API int32_t apls_context_n_threads(const apls_context* ctx);

/* ---- decode --------------------------------------------------------------------------------- */

/* A batch of tokens. pos NULL: each sequence continues from its current length. seq_id NULL:
 * sequence 0. logits NULL: logits for the last token only; else logits[i] != 0 marks rows to
 * output, in batch order.
 *
 * parent non-NULL: the batch is a token tree of one sequence (a verify pass over several drafted
 * continuations), at most 64 tokens. parent[i] is the batch index j < i of token i's parent, or
 * -1 for a root (a token right after the sequence's cached entries). A token sees the entries
 * held before the call (through the view, if any), its ancestors and itself, at position
 * pos[parent[i]] + 1 (roots: the sequence's next position); pos NULL fills these in, a given pos
 * must equal them. Each token's logits are bit-identical to those of its root-to-token path
 * decoded as a chain (within the device's invariant batch: n_batch on the CPU, 16 tokens on a
 * GPU). Every token's K/V is appended; keep the accepted path with apls_kv_seq_keep_path.
 * Errors name the problem (a parent out of range, a wrong position, several sequences) and
 * leave the context unchanged. Zero-initialise the struct ({0}) so that fields added later are
 * NULL. */
typedef struct apls_batch {
    int32_t n_tokens;
    const int32_t* token;
    const int32_t* pos;
    const int32_t* seq_id;
    const int8_t* logits;
    const int32_t* parent; /* NULL: a causal batch (every token sees its sequence's earlier positions) */
} apls_batch;

/* Run the forward pass of `batch` under `plan` (NULL = full model), append its K/V to the cache.
 * On error the context (KV cache included) is left as it was. */
APLS_API apls_status apls_decode(apls_context* ctx, const apls_batch* batch, const apls_plan* plan);
APLS_API int32_t apls_get_n_outputs(const apls_context* ctx);
/* Logits of the last decode: n_outputs rows of n_vocab floats, owned by the context. */
APLS_API const float* apls_get_logits(const apls_context* ctx);
/* Row i of the last decode's outputs, or NULL (and an error) if i is out of range. */
APLS_API const float* apls_get_logits_ith(apls_context* ctx, int32_t i);
/* The greedy choice for output row i of the last decode: the largest logit, ties to the lowest
 * id (what a greedy sampler without penalties picks). On a GPU it is chosen there and only the
 * token is copied back, not the logits. */
APLS_API apls_status apls_get_argmax_ith(apls_context* ctx, int32_t i, int32_t* out_token);
/* The k best ids of every output row of the last decode into out_tokens (n_outputs * k, row
 * by row): largest logit first, ties to the lowest id; 1 <= k <= min(64, n_vocab). On a GPU
 * they are picked there and only the ids are copied back. */
APLS_API apls_status apls_get_top_k(apls_context* ctx, int32_t k, int32_t* out_tokens);

/* Greedy generation with the full model, without a host wait per token: decodes last_token
 * (chosen, not yet in the cache of seq_id) and then each token the model chooses, up to n_max
 * steps (capped at the free KV room), ending after an end-of-generation token when
 * stop_at_eog. out_tokens (room for n_max) receives the *n_out chosen tokens, the same tokens
 * as decoding one at a time with apls_get_argmax_ith; the cache then holds everything before
 * the last of them, which is the next call's last_token. On a GPU the steps are queued as
 * chains of up to n_batch steps, each token taken from the previous step's choice on the
 * device, and the host waits once per chain. Afterwards no logits are held (n_outputs 0).
 * Errors: APLS_STATUS_KV_FULL when no entry fits; APLS_STATUS_INVALID_ARGUMENT for an unknown
 * sequence, a token out of range, n_max < 0; on error the cache is left as it was. */
APLS_API apls_status apls_generate_greedy(apls_context* ctx, int32_t seq_id, int32_t last_token, int32_t n_max,
                                          bool stop_at_eog, int32_t* out_tokens, int32_t* n_out);

/* ---- KV cache ------------------------------------------------------------------------------- */

APLS_API int32_t apls_kv_seq_len(const apls_context* ctx, int32_t seq_id);   /* entries held, -1 if unknown seq */
/* Keep the first n entries of a sequence (rollback). */
APLS_API apls_status apls_kv_seq_truncate(apls_context* ctx, int32_t seq_id, int32_t n);
APLS_API void apls_kv_clear(apls_context* ctx);

/* ---- KV cache: sequence operations, statistics, views --------------------------------------- */

/* The cache is a pool of fixed-size blocks (kv_block_size tokens) with reference counts; each
 * sequence has a block table. Entries of a sequence stay dense: a delete compacts at once by
 * moving later entries down (cost: one K and one V row copy per layer per moved entry).
 * A fork shares blocks copy-on-write. Every failing call below leaves the cache unchanged.
 * Errors: APLS_STATUS_INVALID_ARGUMENT (NULL ctx, unknown sequence, bad range),
 * APLS_STATUS_KV_FULL (no free block for a copy the operation needs). docs/KV_CACHE.md. */

/* Remove the entries of seq whose position is in [p0, p1); 0 <= p0 < p1 <= (max position + 1).
 * shift false: later entries keep their positions. shift true: entries at positions >= p1 move
 * to p - (p1 - p0) and their cached keys are re-rotated (RoPE) to match, so generation can go on
 * with positions below the model's context window (streaming). The sequence's next position
 * (where a batch without positions continues) becomes max position + 1. KV_FULL when the range
 * lies in blocks shared with a fork and no block is free for their copies. */
APLS_API apls_status apls_kv_seq_delete(apls_context* ctx, int32_t seq_id, int32_t p0, int32_t p1, bool shift);
/* dst becomes a copy of src sharing its blocks (copy-on-write); dst's previous entries are
 * dropped. src != dst. Needs one free block when src's last block is partially filled (the copy
 * the next append to either sequence makes), else KV_FULL. */
APLS_API apls_status apls_kv_seq_fork(apls_context* ctx, int32_t src_seq_id, int32_t dst_seq_id);
/* Drop every sequence but seq_id. */
APLS_API apls_status apls_kv_seq_keep(apls_context* ctx, int32_t seq_id);
/* After a tree batch (apls_batch.parent): keep the first n_keep entries of seq_id (those held
 * before the tree) and then entries[0..n_entries), the accepted path, as entries n_keep,
 * n_keep + 1, ...; drop every other entry. Entries are indices into the sequence's entries
 * (tree token b is entry n_keep + b), strictly increasing, >= n_keep, at consecutive positions
 * continuing the kept ones (a root-to-node path). The path's K/V then equal a decode of its
 * tokens as a chain. Cost: one K and one V row copy per layer for each path entry not already in
 * place (none when the path is the tree's first tokens). */
APLS_API apls_status apls_kv_seq_keep_path(apls_context* ctx, int32_t seq_id, int32_t n_keep, const int32_t* entries,
                                           int32_t n_entries);
/* Drop one sequence (apls_kv_clear drops all). */
APLS_API apls_status apls_kv_seq_clear(apls_context* ctx, int32_t seq_id);
/* Smallest / largest position held by a sequence; -1 if it is empty or unknown. */
APLS_API int32_t apls_kv_seq_pos_min(const apls_context* ctx, int32_t seq_id);
APLS_API int32_t apls_kv_seq_pos_max(const apls_context* ctx, int32_t seq_id);

typedef struct apls_kv_stats {
    int32_t n_blocks;       /* blocks in the pool */
    int32_t block_size;     /* tokens per block */
    int32_t blocks_used;    /* blocks held by at least one sequence */
    int32_t blocks_free;
    int32_t blocks_shared;  /* blocks held by several sequences (forks) */
    int32_t n_seq_used;     /* non-empty sequences */
    int64_t tokens;         /* occupied slots (an entry shared by forks counts once) */
    int64_t entries;        /* sum of sequence lengths (shared entries count once per sequence) */
    int64_t holes;          /* empty slots inside used blocks: blocks_used * block_size - tokens */
    double fragmentation;   /* holes / (blocks_used * block_size); 0 when nothing is used */
} apls_kv_stats;

APLS_API apls_status apls_kv_stats_get(const apls_context* ctx, apls_kv_stats* out);
/* Check the cache's internal invariants (reference counts, free list, block tables); returns
 * APLS_STATUS_INTERNAL naming the first violation. For tests; O(cache size). */
APLS_API apls_status apls_kv_check(const apls_context* ctx);

/* A view restricts which cached entries attention sees, without copying. It applies to the
 * entries held before the decode call; the call's own tokens are seen causally as always (so a
 * view decode equals a decode in a cache holding only the view's entries), and they are appended
 * to the cache as usual. A query at position p sees:
 *   - n_positions > 0: exactly the listed positions <= p (strictly increasing, each held by
 *     every sequence of the batch, else APLS_STATUS_INVALID_ARGUMENT before anything runs);
 *   - else positions < n_sink, and positions in (p - n_window, p] (n_window < 0: no limit).
 * Cost: proportional to the entries seen, not to the cache's length. */
typedef struct apls_kv_view {
    int32_t n_sink;
    int32_t n_window;
    const int32_t* positions;
    int32_t n_positions;
} apls_kv_view;

/* apls_decode with attention restricted to `view` (NULL = apls_decode) for every sequence of the batch. */
APLS_API apls_status apls_decode_view(apls_context* ctx, const apls_batch* batch, const apls_plan* plan,
                                      const apls_kv_view* view);

/* ---- sampling ------------------------------------------------------------------------------ */

/* A sampler: a chain of stages over one logits row (n_vocab floats), each narrowing or reshaping
 * the candidate tokens, ending in a selector (greedy or dist) that picks the token. Semantics as
 * llama.cpp's samplers. The first row a sampler sees fixes its n_vocab; later rows must match.
 * After that first row, sampling does not allocate.
 * Ownership: the caller owns the sampler and frees it with apls_sampler_free.
 * Thread-safety: a sampler is used by one thread at a time; distinct samplers are independent. */
typedef struct apls_sampler apls_sampler;

typedef struct apls_sampler_params {
    float temperature;        /* logits / T before dist; <= 0 means greedy (default 0.8) */
    int32_t top_k;            /* keep the k most likely tokens; 0 = off (default 40) */
    float top_p;              /* nucleus in (0, 1]; 1 = off (default 0.95) */
    float min_p;              /* keep p >= min_p * p_max, in [0, 1]; 0 = off (default 0.05) */
    float repeat_penalty;     /* > 0; 1 = off (default 1.0) */
    float frequency_penalty;  /* subtract count * f (default 0) */
    float presence_penalty;   /* subtract p once a token occurred (default 0) */
    int32_t penalty_last_n;   /* window of accepted tokens the penalties see; 0 = off (default 64) */
    uint64_t seed;            /* seed of the dist selector's generator (default 0) */
} apls_sampler_params;

APLS_API apls_sampler_params apls_sampler_default_params(void);

/* The standard chain: penalties -> top-k -> top-p -> min-p -> temperature -> dist (greedy when
 * temperature <= 0). Bad parameters return APLS_STATUS_INVALID_ARGUMENT naming the parameter;
 * on any failure *out is NULL. */
APLS_API apls_status apls_sampler_init(const apls_sampler_params* params, apls_sampler** out);

/* An empty chain, to be built with apls_sampler_chain_add_*: stages in the order added, then
 * exactly one selector (greedy or dist) last. Adding anything after the selector fails. */
APLS_API apls_status apls_sampler_chain_init(apls_sampler** out);
/* Penalties over the last `last_n` accepted tokens (>= 0; 0 = off): a logit > 0 is divided by
 * `repeat` (> 0), one <= 0 multiplied by it; then count * frequency + presence is subtracted. */
APLS_API apls_status apls_sampler_chain_add_penalties(apls_sampler* smpl, int32_t last_n, float repeat, float frequency,
                                                      float presence);
APLS_API apls_status apls_sampler_chain_add_top_k(apls_sampler* smpl, int32_t k);  /* k >= 0; 0 = off */
/* Smallest set of most likely tokens with cumulative probability >= p (p in (0, 1]), at least
 * min_keep (>= 1) tokens. */
APLS_API apls_status apls_sampler_chain_add_top_p(apls_sampler* smpl, float p, int32_t min_keep);
/* Tokens with probability >= p * (the highest probability), p in [0, 1]; at least min_keep (>= 1). */
APLS_API apls_status apls_sampler_chain_add_min_p(apls_sampler* smpl, float p, int32_t min_keep);
/* Logits / t; t <= 0 keeps only the most likely token. t must be finite. */
APLS_API apls_status apls_sampler_chain_add_temperature(apls_sampler* smpl, float t);
/* Selector: the most likely token (ties: the lowest id). */
APLS_API apls_status apls_sampler_chain_add_greedy(apls_sampler* smpl);
/* Selector: a draw from the softmax of the remaining candidates, using a std::mt19937_64 seeded
 * with `seed` (a uniform double from its top 53 bits): the same sequence on every platform. */
APLS_API apls_status apls_sampler_chain_add_dist(apls_sampler* smpl, uint64_t seed);

/* Sample a token from logits[0..n_vocab). NaN or +inf logits, n_vocab <= 0 or different from the
 * sampler's, or a chain without selector return APLS_STATUS_INVALID_ARGUMENT (*out_token = -1).
 * Does not record the token: call apls_sampler_accept with the token actually used. */
APLS_API apls_status apls_sampler_sample(apls_sampler* smpl, const float* logits, int32_t n_vocab, int32_t* out_token);
/* The distribution the selector draws from, over the full vocabulary: out_probs[0..n_vocab),
 * zeros for removed tokens (one-hot for greedy). Does not advance the generator. */
APLS_API apls_status apls_sampler_probs(apls_sampler* smpl, const float* logits, int32_t n_vocab, float* out_probs);
/* Record a generated token for the penalties. token must be in [0, n_vocab). */
APLS_API apls_status apls_sampler_accept(apls_sampler* smpl, int32_t token);
/* Clear the token history and reseed the generator (n_vocab stays). NULL is a no-op. */
APLS_API void apls_sampler_reset(apls_sampler* smpl);
APLS_API void apls_sampler_free(apls_sampler* smpl);  /* NULL is a no-op */

/* ---- speculative decoding ------------------------------------------------------------------ */

/* One round of self-speculative decoding on one sequence. State between rounds: the sequence's
 * cache holds every token before `last_token`, which is chosen but not decoded yet. The round
 * drafts up to n_draft_max tokens from last_token under `draft_plan` (and `draft_view`, NULL =
 * whole cache), stopping early when the draft's top probability falls below draft_p_min or it
 * drafts an end-of-generation token; verifies [last_token, drafts...] with the full model in one
 * batch; accepts the longest valid prefix plus one token from the verifier; and truncates the
 * cache to hold everything up to the last accepted draft. The verifier's token (the last one
 * written to out_tokens) is the next round's last_token.
 *
 * sampler NULL (or a greedy chain): greedy — output identical to plain greedy decoding. Else the
 * sampler's distribution with rejection sampling, which keeps the full model's distribution
 * exactly; its seeded generator draws every random number. A chain with penalties (repeat,
 * frequency, presence) sees, for each draft and verify row, its history extended by the drafts
 * before that row, so greedy output stays identical to plain decoding with the same chain; the
 * round then records its output tokens in the history (as apls_sampler_accept), so the caller
 * accepts only the first token it sampled itself.
 * out_tokens receives n_accepted + 1 tokens (max_out must be >= n_draft_max + 1).
 * On error the cache is left as it was. */
typedef struct apls_spec_params {
    int32_t seq_id;       /* default 0 */
    int32_t n_draft_max;  /* default 8; capped so the verify batch (drafts + 1) stays within n_batch and,
                           * on a GPU, 16 tokens (the batch whose logits match one-token decoding) */
    float draft_p_min;    /* default 0 (never stop early) */
} apls_spec_params;

typedef struct apls_spec_stats {
    int32_t n_drafted;    /* k */
    int32_t n_accepted;   /* drafts accepted (out_tokens has n_accepted + 1 tokens) */
    double t_draft_s;     /* wall time drafting */
    double t_verify_s;    /* wall time verifying and accepting */
    int32_t n_draft_waits; /* times the host waited for a drafted token (1 when a GPU drafts a chain) */
} apls_spec_stats;

APLS_API apls_spec_params apls_spec_default_params(void);
APLS_API apls_status apls_spec_round(apls_context* ctx, int32_t last_token, const apls_plan* draft_plan,
                                     const apls_kv_view* draft_view, const apls_spec_params* params,
                                     apls_sampler* sampler, int32_t* out_tokens, int32_t max_out, int32_t* n_out,
                                     apls_spec_stats* stats);

/* ---- token-tree speculative decoding ------------------------------------------------------- */

/* A drafter holds the draft sources of one generation session: the current text (prompt, then
 * every token generated; apls_spec_tree_round appends its output), the n-gram index of prompt
 * lookup over that text, a suffix automaton over that text and the session's earlier ones, the
 * successor table of token recycling (filled from verify logits), and the measured acceptance of
 * each source that the rounds use to choose their trees. One drafter per sequence generated. */
typedef struct apls_drafter apls_drafter;

/* Draft sources, as bits of apls_tree_params.sources. */
enum {
    APLS_DRAFT_SKIP = 1,     /* the model with layers skipped (a plan), as a chain */
    APLS_DRAFT_LOOKUP = 2,   /* prompt lookup: what followed the last 3/2/1-gram earlier in the text */
    APLS_DRAFT_SUFFIX = 4,   /* suffix index: continuations of the longest repeated suffix, by frequency */
    APLS_DRAFT_RECYCLE = 8,  /* token recycling: the verifier's earlier top-k after each token */
    APLS_DRAFT_ALL = 15
};

APLS_API apls_status apls_drafter_init(const apls_model* model, apls_drafter** out);
APLS_API void apls_drafter_free(apls_drafter* drafter); /* NULL is a no-op */
/* A new text: the prompt (n >= 0 tokens in [0, n_vocab)). The suffix index keeps the session's
 * earlier texts; the successor and acceptance tables carry over. */
APLS_API apls_status apls_drafter_start(apls_drafter* drafter, const int32_t* tokens, int32_t n);
/* Tokens generated outside apls_spec_tree_round (e.g. the first one, sampled from the prompt's
 * logits) join the text. */
APLS_API apls_status apls_drafter_append(apls_drafter* drafter, const int32_t* tokens, int32_t n);
/* Nodes of `source` (one APLS_DRAFT_* bit) judged by the verifier (their parent accepted) and
 * accepted, at depths 1..n_depth (the last entry counts every deeper node too) since init. */
APLS_API apls_status apls_drafter_acceptance(const apls_drafter* drafter, int32_t source, int64_t* tried,
                                             int64_t* accepted, int32_t n_depth);

typedef struct apls_tree_params {
    int32_t seq_id;              /* default 0 */
    uint32_t sources;            /* APLS_DRAFT_* bits (default: LOOKUP | SUFFIX | RECYCLE) */
    int32_t n_nodes_max;         /* most drafted nodes verified (default 8); capped so the verify
                                  * batch stays within n_batch and the device's invariant batch */
    /* verify_cost[n]: the time of a verify batch of n + 1 tokens relative to one plain decode step
     * (verify_cost[0] = 1), n < n_verify_cost. The round verifies the n likeliest nodes that
     * maximize expected tokens per cost (possibly none: a plain step). NULL: the n_nodes_max
     * likeliest (default). */
    const float* verify_cost;
    int32_t n_verify_cost;
    int32_t skip_n_max;          /* layer-skip chain length (default 4) */
    float skip_p_min;            /* stop the chain after a token below this probability (default 0) */
    float skip_branch_below;     /* greedy: a leaf for the draft's second choice where its top
                                  * probability is below this (default 0: none) */
    int32_t lookup_occurrences;  /* earlier n-gram occurrences followed (default 8) */
    int32_t lookup_depth;        /* tokens after each (default 24) */
    int32_t suffix_branches;     /* continuations per node (default 4) */
    int32_t suffix_depth;        /* (default 24) */
    int32_t recycle_branches;    /* successors per node (default 4) */
    int32_t recycle_depth;       /* (default 6) */
    int32_t max_candidates;      /* most nodes each model-free source proposes (default 48) */
    int32_t max_plain_steps;     /* greedy without APLS_DRAFT_SKIP: while a step drafts nothing (a plain
                                  * step), the round goes on, up to this many plain steps, ending after an
                                  * end-of-generation token (default 0); max_out must hold them too */
} apls_tree_params;

/* Counts and timings of the round's last step (its only one unless it ran plain steps first). */
typedef struct apls_tree_stats {
    int32_t n_plain_steps;   /* plain steps before the last step (their tokens come first) */
    int32_t n_candidates;    /* nodes the sources proposed */
    int32_t n_drafted;       /* nodes verified (the verify batch held n_drafted + 1 tokens) */
    int32_t n_accepted;      /* nodes accepted (out_tokens has n_accepted + 1 tokens) */
    int32_t n_skip_drafted;  /* tokens the layer-skip draft decoded */
    int32_t n_draft_waits;   /* times the host waited for a drafted token */
    int32_t drafted_by[4];   /* verified nodes proposed by each source (skip, lookup, suffix, recycle) */
    int32_t accepted_by[4];  /* accepted nodes proposed by each source */
    double t_draft_s;        /* the layer-skip draft's decodes */
    double t_verify_s;       /* the verify forward pass */
    double t_plain_s;        /* the plain steps' forward passes */
    double t_host_s;         /* the rest: sources, the tree, acceptance, learning */
} apls_tree_stats;

APLS_API apls_tree_params apls_tree_default_params(void);
/* One round of token-tree speculative decoding (the state between rounds as apls_spec_round's,
 * and the drafter's text ends with last_token): candidates from the chosen sources merged into
 * one token tree, the likeliest nodes verified by the full model in one batch (each attending to
 * the cache and its ancestors), the longest path the verifier agrees with accepted — greedy: its
 * argmax; sampling: multi-candidate rejection sampling over siblings, which keeps the full
 * model's distribution — and the accepted path's K/V kept at consecutive positions, every other
 * node dropped. skip_plan / skip_view: the layer-skip source's plan (required with
 * APLS_DRAFT_SKIP) and KV view (NULL: the whole cache). sampler: as in apls_spec_round.
 * out_tokens (max_out >= n_nodes_max + 1 + max_plain_steps) receives the plain steps' tokens, the
 * accepted nodes, then the verifier's token,
 * which is the next round's last_token; the drafter's text and tables take the round's outcome.
 * On error the cache, the sampler's history and the drafter are left as they were. */
APLS_API apls_status apls_spec_tree_round(apls_context* ctx, apls_drafter* drafter, int32_t last_token,
                                          const apls_plan* skip_plan, const apls_kv_view* skip_view,
                                          const apls_tree_params* params, apls_sampler* sampler, int32_t* out_tokens,
                                          int32_t max_out, int32_t* n_out, apls_tree_stats* stats);
/* Rounds back to back, each as apls_spec_tree_round after the last one's verifier token, in one
 * call (a GPU round takes about a millisecond): up to max_rounds (>= 1) rounds while fewer than
 * max_tokens tokens came out (max_tokens <= 0: no limit), ending after a round that produced an
 * end-of-generation token when stop_at_eog, or before a round the cache has no room for.
 * out_tokens receives every round's tokens in order; max_out must hold the most the rounds can
 * make: (n_nodes_max + 1 + max_plain_steps) per round, for max_rounds rounds or, with max_tokens,
 * up to max_tokens - 1 tokens and one more round. n_rounds (optional) receives the rounds run;
 * stats (optional) their sums (n_plain_steps, n_drafted, n_accepted: over every round; the
 * tokens are n_plain_steps + n_accepted + n_rounds). The first round's errors are returned as
 * apls_spec_tree_round's, with everything as it was; a later round's end the call with the
 * rounds before it (the next call meets the error again). */
APLS_API apls_status apls_spec_tree_rounds(apls_context* ctx, apls_drafter* drafter, int32_t last_token,
                                           const apls_plan* skip_plan, const apls_kv_view* skip_view,
                                           const apls_tree_params* params, apls_sampler* sampler, int32_t max_rounds,
                                           int32_t max_tokens, bool stop_at_eog, int32_t* out_tokens, int32_t max_out,
                                           int32_t* n_out, int32_t* n_rounds, apls_tree_stats* stats);

/* ---- quantization -------------------------------------------------------------------------- */

/* Tensor types are GGUF's numbers (ggml_type: 2 = Q4_0, 3 = Q4_1, 6 = Q5_0, 7 = Q5_1, 8 = Q8_0,
 * 12 = Q4_K, 13 = Q5_K, 14 = Q6_K). Whole-file quantization (which tensor gets which type, the
 * GGUF writing) is the Python package's `apls.quantize`; these are its numerical core. */

/* The ggml type number of a type name ("Q4_K"); APLS_STATUS_INVALID_ARGUMENT for an unknown name. */
APLS_API apls_status apls_type_from_name(const char* name, uint32_t* out_type);
/* Bytes of one row of n_per_row elements in `type`; 0 when the type is unknown or n_per_row is
 * not a multiple of its block size. */
APLS_API size_t apls_type_row_size(uint32_t type, int64_t n_per_row);
/* Quantize n_rows rows of n_per_row floats (row-major) to `type`, rows split over n_threads
 * threads (<= 0: 1; the bytes do not depend on it). dst holds dst_size bytes, at least
 * n_rows * apls_type_row_size(type, n_per_row). Errors name the type or the size at fault. */
APLS_API apls_status apls_quantize_rows(uint32_t type, const float* src, int64_t n_rows, int64_t n_per_row, void* dst,
                                        size_t dst_size, int32_t n_threads);

#ifdef __cplusplus
}
#endif

#endif /* APLS_H */
