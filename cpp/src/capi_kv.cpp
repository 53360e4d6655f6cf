// capi_kv.cpp — the C API of the KV cache: sequence operations, statistics, view decode.
#include "apls/apls.h"
#include "capi_types.h"
#include "capi_util.h"
#include "context.h"

using apls::guard;
using apls::null_arg;

namespace {

apls::KVCache& cache(apls_context* ctx) { return ctx->impl->kv(); }

}  // namespace

extern "C" {

apls_status apls_kv_seq_delete(apls_context* ctx, int32_t seq_id, int32_t p0, int32_t p1, bool shift) {
    if (!ctx) return null_arg("ctx");
    return guard([&] { cache(ctx).seq_delete(seq_id, p0, p1, shift); });
}

apls_status apls_kv_seq_fork(apls_context* ctx, int32_t src_seq_id, int32_t dst_seq_id) {
    if (!ctx) return null_arg("ctx");
    return guard([&] { cache(ctx).fork(src_seq_id, dst_seq_id); });
}

apls_status apls_kv_seq_keep(apls_context* ctx, int32_t seq_id) {
    if (!ctx) return null_arg("ctx");
    return guard([&] { cache(ctx).keep(seq_id); });
}

apls_status apls_kv_seq_keep_path(apls_context* ctx, int32_t seq_id, int32_t n_keep, const int32_t* entries,
                                  int32_t n_entries) {
    if (!ctx) return null_arg("ctx");
    if (n_entries > 0 && !entries) return null_arg("entries");
    return guard([&] { cache(ctx).keep_path(seq_id, n_keep, entries, n_entries); });
}

apls_status apls_kv_seq_clear(apls_context* ctx, int32_t seq_id) {
    if (!ctx) return null_arg("ctx");
    return guard([&] { cache(ctx).clear_seq(seq_id); });
}

int32_t apls_kv_seq_pos_min(const apls_context* ctx, int32_t seq_id) {
    if (!ctx || !ctx->impl->kv().valid_seq(seq_id)) return -1;
    return ctx->impl->kv().seq_pos_min(seq_id);
}

int32_t apls_kv_seq_pos_max(const apls_context* ctx, int32_t seq_id) {
    if (!ctx || !ctx->impl->kv().valid_seq(seq_id)) return -1;
    return ctx->impl->kv().seq_pos_max(seq_id);
}

apls_status apls_kv_stats_get(const apls_context* ctx, apls_kv_stats* out) {
    if (!ctx) return null_arg("ctx");
    if (!out) return null_arg("out");
    return guard([&] {
        const apls::KVStats s = ctx->impl->kv().stats();
        *out = apls_kv_stats{s.n_blocks,   s.block_size, s.blocks_used, s.blocks_free, s.blocks_shared,
                             s.n_seq_used, s.tokens,     s.entries,     s.holes,       s.fragmentation};
    });
}

apls_status apls_kv_check(const apls_context* ctx) {
    if (!ctx) return null_arg("ctx");
    return guard([&] { ctx->impl->kv().check_invariants(); });
}

apls_status apls_decode_view(apls_context* ctx, const apls_batch* batch, const apls_plan* plan,
                             const apls_kv_view* view) {
    if (!ctx) return null_arg("ctx");
    if (!batch) return null_arg("batch");
    if (view && view->n_positions > 0 && !view->positions) return null_arg("view->positions");
    return guard([&] {
        apls::Batch b = ctx->impl->make_batch(*batch);
        const apls::HParams& hp = ctx->impl->model().hparams();
        apls::Plan p = apls::Plan::from_c(plan, hp.n_layer, hp.n_vocab);
        if (!view) return ctx->impl->decode(b, p);
        apls::KVView v;
        v.n_sink = view->n_sink;
        v.n_window = view->n_window;
        if (view->n_positions > 0) v.positions.assign(view->positions, view->positions + view->n_positions);
        ctx->impl->decode(b, p, &v);
    });
}

}  // extern "C"
