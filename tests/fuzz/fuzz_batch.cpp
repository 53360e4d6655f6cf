// fuzz_batch.cpp — the C API's batch entry points on a tiny model, driven by arbitrary bytes.
//
// The input is a program: a context configuration, then operations until the bytes run out —
// apls_decode / apls_decode_view with arbitrary token ids, positions, sequence ids, output flags,
// layer plans and views; the KV-cache sequence operations; logits rows; sampling; speculative
// rounds. Arrays are sometimes NULL with a positive count.
//
// Invariants: no call returns APLS_STATUS_INTERNAL; a failing call sets a message; after every
// call the cache passes apls_kv_check; logits rows that the API hands out are readable
// (ASan checks the last float of each).
#include <cmath>
#include <memory>
#include <vector>

#include "apls/apls.h"
#include "fuzz_util.h"

#ifndef APLS_FUZZ_DATA_DIR
#define APLS_FUZZ_DATA_DIR "tests/fuzz/data"
#endif

namespace {

using apls_fuzz::Bytes;

apls_model* g_model = nullptr;
int32_t g_vocab = 0, g_layers = 0;

void check_status(apls_status st, const char* call) {
    FUZZ_CHECK(st != APLS_STATUS_INTERNAL, std::string(call) + ": " + apls_last_error());
    if (st != APLS_STATUS_OK) FUZZ_CHECK(apls_last_error()[0] != 0, std::string(call) + " failed without a message");
}

void check_cache(apls_context* ctx, const char* after) {
    apls_status st = apls_kv_check(ctx);
    FUZZ_CHECK(st == APLS_STATUS_OK, std::string("cache invariant broken after ") + after + ": " + apls_last_error());
}

int32_t token(Bytes& in) { return in.byte() < 240 ? static_cast<int32_t>(in.below(g_vocab)) : in.get<int32_t>(); }
int32_t seq(Bytes& in) { return in.byte() < 240 ? static_cast<int32_t>(in.below(5)) : in.get<int32_t>(); }

// A layer plan: storage lives in `keep`. NULL (the full model) half the time.
const apls_plan* plan(Bytes& in, apls_plan& p, std::vector<uint8_t>& attn, std::vector<uint8_t>& mlp,
                      std::vector<int32_t>& group) {
    uint8_t mode = in.byte();
    if (mode < 128) return nullptr;
    p.n_layer = (mode & 1) ? in.small_or_any(4) : g_layers;
    attn.resize(g_layers + 8);
    mlp.resize(g_layers + 8);
    group.resize(g_layers + 8);
    for (auto& a : attn) a = in.byte() % 3 == 0 ? 0 : 1;
    for (auto& m : mlp) m = in.byte() % 3 == 0 ? 0 : 1;
    for (auto& g : group) g = in.small_or_any(2);
    p.attn = (mode & 2) ? attn.data() : nullptr;
    p.mlp = (mode & 4) ? mlp.data() : nullptr;
    p.group = (mode & 8) ? group.data() : nullptr;
    p.head_rows = (mode & 16) ? in.small_or_any(g_vocab + 2) : 0;
    return &p;
}

const apls_kv_view* view(Bytes& in, apls_kv_view& v, std::vector<int32_t>& pos) {
    uint8_t mode = in.byte();
    if (mode < 64) return nullptr;
    v.n_sink = in.small_or_any(8);
    v.n_window = in.small_or_any(16);
    v.n_positions = (mode & 1) ? static_cast<int32_t>(in.byte() % 17) - 8 : 0;  // the array holds 8
    pos.clear();
    for (int32_t i = 0; i < 8; ++i) pos.push_back((mode & 2) ? in.small_or_any(40) : i * 2);
    v.positions = (mode & 4) ? nullptr : pos.data();
    return &v;
}

void decode(Bytes& in, apls_context* ctx, bool with_view) {
    const uint8_t shape = in.byte();
    int32_t n = 1 + shape % 12;
    if (shape >= 250) n = in.small_or_any(40);
    // Arrays hold at least n entries whenever n fits n_batch (16); larger n must be refused
    // before the arrays are read.
    std::vector<int32_t> tok(std::min(std::max(n, 0), 40) + 1), pos(tok.size()), sq(tok.size());
    std::vector<int8_t> out(tok.size());
    for (auto& t : tok) t = token(in);
    for (size_t i = 0; i < pos.size(); ++i) pos[i] = (shape & 64) ? in.small_or_any(40) : static_cast<int32_t>(i);
    for (auto& s : sq) s = (shape & 128) ? seq(in) : 0;
    for (auto& o : out) o = static_cast<int8_t>(in.byte() % 3 == 0);
    const uint8_t arrays = in.byte();
    // A token tree (no bytes of its own, so that the corpus keeps its meaning): parents from the
    // tokens, some out of range.
    std::vector<int32_t> parent(tok.size());
    for (size_t i = 0; i < parent.size(); ++i) parent[i] = tok[i] % static_cast<int32_t>(i + 2) - 1;
    apls_batch b = {n,
                    (arrays & 1) ? nullptr : tok.data(),
                    (arrays & 2) ? pos.data() : nullptr,
                    (arrays & 4) ? sq.data() : nullptr,
                    (arrays & 8) ? out.data() : nullptr,
                    (arrays & 16) ? parent.data() : nullptr};
    apls_plan p{};
    std::vector<uint8_t> attn, mlp;
    std::vector<int32_t> group, vpos;
    const apls_plan* pp = plan(in, p, attn, mlp, group);
    apls_kv_view v{};
    const apls_kv_view* vp = with_view ? view(in, v, vpos) : nullptr;
    const apls_status st = with_view ? apls_decode_view(ctx, &b, pp, vp) : apls_decode(ctx, &b, pp);
    check_status(st, with_view ? "apls_decode_view" : "apls_decode");
    if (st == APLS_STATUS_OK) {
        const int32_t n_out = apls_get_n_outputs(ctx);
        FUZZ_CHECK(n_out >= 0 && n_out <= n, "more outputs than tokens");
        const float* all = apls_get_logits(ctx);
        if (n_out > 0) {
            volatile float last = all[static_cast<size_t>(n_out) * g_vocab - 1];
            (void)last;
        }
    }
    check_cache(ctx, "decode");
}

void sample(Bytes& in, apls_context* ctx) {
    const float* row = apls_get_logits_ith(ctx, in.small_or_any(3));
    if (!row) {
        check_status(APLS_STATUS_INVALID_ARGUMENT, "apls_get_logits_ith");
        return;
    }
    apls_sampler_params sp = apls_sampler_default_params();
    sp.temperature = static_cast<float>(in.small_or_any(4)) / 2;
    sp.top_k = in.small_or_any(g_vocab + 4);
    sp.top_p = static_cast<float>(in.byte()) / 200;
    sp.min_p = static_cast<float>(in.byte()) / 200;
    sp.penalty_last_n = in.small_or_any(8);
    sp.repeat_penalty = 1.0f + static_cast<float>(in.small_or_any(4)) / 4;
    sp.seed = in.get<uint64_t>();
    apls_sampler* s = nullptr;
    apls_status st = apls_sampler_init(&sp, &s);
    check_status(st, "apls_sampler_init");
    if (st != APLS_STATUS_OK) return;
    int32_t tok = -1;
    std::vector<float> probs(g_vocab);
    for (int k = 0; k < 2; ++k) {
        st = apls_sampler_sample(s, row, g_vocab, &tok);
        check_status(st, "apls_sampler_sample");
        if (st == APLS_STATUS_OK) FUZZ_CHECK(tok >= 0 && tok < g_vocab, "sampled token out of range");
        check_status(apls_sampler_probs(s, row, g_vocab, probs.data()), "apls_sampler_probs");
        check_status(apls_sampler_accept(s, in.byte() < 200 ? tok : token(in)), "apls_sampler_accept");
    }
    apls_sampler_free(s);
}

void spec_round(Bytes& in, apls_context* ctx) {
    apls_plan p{};
    std::vector<uint8_t> attn, mlp;
    std::vector<int32_t> group, vpos;
    const int32_t last = token(in);
    const apls_plan* pp = plan(in, p, attn, mlp, group);
    apls_kv_view v{};
    const apls_kv_view* vp = view(in, v, vpos);
    apls_spec_params sp = apls_spec_default_params();
    sp.seq_id = seq(in);
    sp.n_draft_max = in.small_or_any(6);
    sp.draft_p_min = static_cast<float>(in.byte()) / 255;
    std::vector<int32_t> out(16);
    const int32_t max_out = in.small_or_any(10);
    apls_sampler* s = nullptr;
    if (in.flag()) {
        apls_sampler_params sprm = apls_sampler_default_params();
        sprm.seed = in.byte();
        sprm.repeat_penalty = in.flag() ? 1.0f : 1.1f;
        check_status(apls_sampler_init(&sprm, &s), "apls_sampler_init");
    }
    int32_t n_out = -1;
    apls_spec_stats stats{};
    const apls_status st =
        apls_spec_round(ctx, last, pp, vp, &sp, s, out.data(), std::min(max_out, 16), &n_out, &stats);
    check_status(st, "apls_spec_round");
    if (st == APLS_STATUS_OK) {
        FUZZ_CHECK(n_out >= 1 && n_out <= std::min(max_out, 16), "spec round wrote past max_out");
        for (int32_t i = 0; i < n_out; ++i)
            FUZZ_CHECK(out[i] >= 0 && out[i] < g_vocab, "spec round token out of range");
    }
    apls_sampler_free(s);
    check_cache(ctx, "spec round");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* dir = std::getenv("APLS_FUZZ_DATA");
    const std::string path = std::string(dir ? dir : APLS_FUZZ_DATA_DIR) + "/tiny_llama.gguf";
    if (apls_model_load(path.c_str(), apls_model_default_params(), &g_model) != APLS_STATUS_OK) {
        std::fprintf(stderr, "fuzz_batch: cannot load %s: %s (set APLS_FUZZ_DATA)\n", path.c_str(), apls_last_error());
        std::exit(2);
    }
    g_vocab = apls_model_n_vocab(g_model);
    g_layers = apls_model_n_layer(g_model);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (!g_model) LLVMFuzzerInitialize(nullptr, nullptr);
    Bytes in(data, size);
    apls_context_params cp = apls_context_default_params();
    const uint8_t cfg = in.byte();
    cp.n_ctx = 8u << (cfg % 4);           // 8..64 slots: full caches are common
    cp.n_seq_max = 1 + (cfg >> 2) % 4;
    cp.kv_block_size = 1u << ((cfg >> 4) % 4);
    cp.kv_type = (cfg & 64) ? APLS_KV_TYPE_F32 : APLS_KV_TYPE_F16;
    cp.n_batch = 16;
    cp.n_threads = 1;
    apls_context* ctx = nullptr;
    apls_status st = apls_context_init(g_model, cp, &ctx);
    FUZZ_CHECK(st == APLS_STATUS_OK, std::string("context init: ") + apls_last_error());

    for (int op = 0; op < 24 && in.left() > 0; ++op) {
        const uint8_t code = in.byte() % 12;
        switch (code) {
            case 0:
            case 1:
                decode(in, ctx, false);
                break;
            case 2:
                decode(in, ctx, true);
                break;
            case 3:
                check_status(apls_kv_seq_truncate(ctx, seq(in), in.small_or_any(20)), "truncate");
                break;
            case 4: {
                const int32_t s = seq(in), p0 = in.small_or_any(20), p1 = in.small_or_any(24);
                check_status(apls_kv_seq_delete(ctx, s, p0, p1, in.flag()), "delete");
                break;
            }
            case 5:
                check_status(apls_kv_seq_fork(ctx, seq(in), seq(in)), "fork");
                break;
            case 6:
                check_status(apls_kv_seq_keep(ctx, seq(in)), "keep");
                break;
            case 7:
                check_status(apls_kv_seq_clear(ctx, seq(in)), "seq clear");
                break;
            case 8:
                apls_kv_clear(ctx);
                break;
            case 9:
                sample(in, ctx);
                break;
            case 10:
                spec_round(in, ctx);
                break;
            case 11: {
                const int32_t s = seq(in);
                (void)apls_kv_seq_len(ctx, s);
                (void)apls_kv_seq_pos_min(ctx, s);
                (void)apls_kv_seq_pos_max(ctx, s);
                apls_kv_stats stats;
                check_status(apls_kv_stats_get(ctx, &stats), "stats");
                // keep_path on what the sequence holds (no bytes of its own): the last entry
                // after the first half, valid or not depending on its position.
                const int32_t n = apls_kv_seq_len(ctx, s), last = n - 1;
                check_status(apls_kv_seq_keep_path(ctx, s, n / 2, &last, n > 0 ? 1 : 0), "keep_path");
                break;
            }
        }
        check_cache(ctx, "an operation");
    }
    apls_context_free(ctx);
    return 0;
}
