// capi_spec.cpp — speculative rounds in the C API: the chain round and the token-tree round with its drafter.
#include <algorithm>
#include <cstring>

#include "capi_types.h"
#include "capi_util.h"
#include "speculative.h"
#include "speculative_tree.h"

using apls::guard;
using apls::null_arg;

namespace {

apls::KVView view_from_c(const apls_kv_view& v) {
    apls::KVView view;
    view.n_sink = v.n_sink;
    view.n_window = v.n_window;
    if (v.n_positions > 0) {
        if (!v.positions) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "view.positions is NULL");
        view.positions.assign(v.positions, v.positions + v.n_positions);
    }
    return view;
}

apls::TreeParams tree_params_from_c(const apls_tree_params& c) {
    apls::TreeParams p;
    p.seq = c.seq_id;
    p.sources = c.sources;
    p.n_nodes_max = c.n_nodes_max;
    if (c.n_verify_cost < 0)
        apls::fail(APLS_STATUS_INVALID_ARGUMENT, "n_verify_cost ", c.n_verify_cost, " is negative");
    if (c.n_verify_cost > 0) {
        if (!c.verify_cost) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "verify_cost is NULL");
        p.verify_cost.assign(c.verify_cost, c.verify_cost + c.n_verify_cost);
    }
    p.skip = {c.skip_n_max, c.skip_p_min, c.skip_branch_below};
    p.max_plain_steps = c.max_plain_steps;
    p.text = {c.lookup_occurrences, c.lookup_depth,  c.suffix_branches, c.suffix_depth,
              c.recycle_branches,   c.recycle_depth, c.max_candidates};
    return p;
}

void tree_stats_to_c(const apls::TreeResult& r, apls_tree_stats* s) {
    s->n_plain_steps = r.n_plain_steps;
    s->n_candidates = r.n_candidates;
    s->n_drafted = r.n_drafted;
    s->n_accepted = r.n_accepted;
    s->n_skip_drafted = r.n_skip_drafted;
    s->n_draft_waits = r.n_draft_waits;
    for (int i = 0; i < apls::draft::kNumSources; ++i) {
        s->drafted_by[i] = r.drafted_by[i];
        s->accepted_by[i] = r.accepted_by[i];
    }
    s->t_draft_s = r.t_draft_s;
    s->t_verify_s = r.t_verify_s;
    s->t_plain_s = r.t_plain_s;
    s->t_host_s = r.t_host_s;
}

}  // namespace

extern "C" {

apls_spec_params apls_spec_default_params(void) {
    apls_spec_params p;
    p.seq_id = 0;
    p.n_draft_max = 8;
    p.draft_p_min = 0.0f;
    return p;
}

apls_status apls_spec_round(apls_context* ctx, int32_t last_token, const apls_plan* draft_plan,
                            const apls_kv_view* draft_view, const apls_spec_params* params, apls_sampler* sampler,
                            int32_t* out_tokens, int32_t max_out, int32_t* n_out, apls_spec_stats* stats) {
    if (!ctx) return null_arg("ctx");
    if (!out_tokens) return null_arg("out_tokens");
    if (!n_out) return null_arg("n_out");
    return guard([&] {
        const apls::HParams& hp = ctx->impl->model().hparams();
        apls::SpecParams sp;
        if (params) {
            sp.seq = params->seq_id;
            sp.n_draft_max = params->n_draft_max;
            sp.draft_p_min = params->draft_p_min;
        }
        // In 64 bits: n_draft_max = INT32_MAX must be refused, not overflow.
        const int64_t need = static_cast<int64_t>(sp.n_draft_max) + 1;
        if (max_out < need)
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "max_out ", max_out, " < n_draft_max + 1 = ", need);
        const apls::Plan plan = apls::Plan::from_c(draft_plan, hp.n_layer, hp.n_vocab);
        const apls::KVView view = draft_view ? view_from_c(*draft_view) : apls::KVView{};
        apls::SpecResult r = apls::spec_round(*ctx->impl, last_token, plan, draft_view ? &view : nullptr, sp,
                                              sampler ? &sampler->impl : nullptr);
        std::memcpy(out_tokens, r.tokens.data(), r.tokens.size() * sizeof(int32_t));
        *n_out = static_cast<int32_t>(r.tokens.size());
        if (stats) {
            stats->n_drafted = r.n_drafted;
            stats->n_accepted = r.n_accepted;
            stats->t_draft_s = r.t_draft_s;
            stats->t_verify_s = r.t_verify_s;
            stats->n_draft_waits = r.n_draft_waits;
        }
    });
}

apls_status apls_drafter_init(const apls_model* model, apls_drafter** out) {
    if (!out) return null_arg("out");
    *out = nullptr;
    if (!model) return null_arg("model");
    return guard([&] { *out = new apls_drafter(model->impl->hparams().n_vocab); });
}

void apls_drafter_free(apls_drafter* drafter) { delete drafter; }

apls_status apls_drafter_start(apls_drafter* drafter, const int32_t* tokens, int32_t n) {
    if (!drafter) return null_arg("drafter");
    if (!tokens && n > 0) return null_arg("tokens");
    return guard([&] {
        if (n < 0) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "n ", n, " is negative");
        drafter->impl.start(tokens, n);
    });
}

apls_status apls_drafter_append(apls_drafter* drafter, const int32_t* tokens, int32_t n) {
    if (!drafter) return null_arg("drafter");
    if (!tokens && n > 0) return null_arg("tokens");
    return guard([&] {
        if (n < 0) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "n ", n, " is negative");
        drafter->impl.append(tokens, n);
    });
}

apls_status apls_drafter_acceptance(const apls_drafter* drafter, int32_t source, int64_t* tried, int64_t* accepted,
                                    int32_t n_depth) {
    if (!drafter) return null_arg("drafter");
    if (!tried) return null_arg("tried");
    if (!accepted) return null_arg("accepted");
    return guard([&] {
        int s = 0;
        while (s < apls::draft::kNumSources && source != (1 << s)) ++s;
        if (s == apls::draft::kNumSources)
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "source ", source, " is not one APLS_DRAFT_* bit");
        if (n_depth < 1) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "n_depth ", n_depth, " must be >= 1");
        const apls::draft::DepthStats& d = drafter->impl.acceptance().by_depth(static_cast<apls::draft::Source>(s));
        for (int32_t i = 0; i < n_depth; ++i) tried[i] = accepted[i] = 0;
        for (int32_t i = 0; i < apls::draft::DepthStats::kMaxDepth; ++i) {
            const int32_t j = std::min(i, n_depth - 1);
            tried[j] += d.tried[i];
            accepted[j] += d.accepted[i];
        }
    });
}

apls_tree_params apls_tree_default_params(void) {
    const apls::TreeParams d;
    apls_tree_params p;
    p.seq_id = d.seq;
    p.sources = APLS_DRAFT_LOOKUP | APLS_DRAFT_SUFFIX | APLS_DRAFT_RECYCLE;
    p.n_nodes_max = d.n_nodes_max;
    p.verify_cost = nullptr;
    p.n_verify_cost = 0;
    p.skip_n_max = d.skip.n_max;
    p.skip_p_min = d.skip.p_min;
    p.skip_branch_below = d.skip.branch_below;
    p.lookup_occurrences = d.text.lookup_occurrences;
    p.lookup_depth = d.text.lookup_depth;
    p.suffix_branches = d.text.suffix_branches;
    p.suffix_depth = d.text.suffix_depth;
    p.recycle_branches = d.text.recycle_branches;
    p.recycle_depth = d.text.recycle_depth;
    p.max_candidates = d.text.max_candidates;
    p.max_plain_steps = d.max_plain_steps;
    return p;
}

apls_status apls_spec_tree_round(apls_context* ctx, apls_drafter* drafter, int32_t last_token,
                                 const apls_plan* skip_plan, const apls_kv_view* skip_view,
                                 const apls_tree_params* params, apls_sampler* sampler, int32_t* out_tokens,
                                 int32_t max_out, int32_t* n_out, apls_tree_stats* stats) {
    return apls_spec_tree_rounds(ctx, drafter, last_token, skip_plan, skip_view, params, sampler, 1, 0, false,
                                 out_tokens, max_out, n_out, nullptr, stats);
}

apls_status apls_spec_tree_rounds(apls_context* ctx, apls_drafter* drafter, int32_t last_token,
                                  const apls_plan* skip_plan, const apls_kv_view* skip_view,
                                  const apls_tree_params* params, apls_sampler* sampler, int32_t max_rounds,
                                  int32_t max_tokens, bool stop_at_eog, int32_t* out_tokens, int32_t max_out,
                                  int32_t* n_out, int32_t* n_rounds, apls_tree_stats* stats) {
    if (!ctx) return null_arg("ctx");
    if (!drafter) return null_arg("drafter");
    if (!out_tokens) return null_arg("out_tokens");
    if (!n_out) return null_arg("n_out");
    return guard([&] {
        const apls::HParams& hp = ctx->impl->model().hparams();
        const apls::TreeParams tp = tree_params_from_c(params ? *params : apls_tree_default_params());
        if (max_rounds < 1) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "max_rounds ", max_rounds, " must be >= 1");
        // In 64 bits: INT32_MAX must be refused, not overflow.
        const int64_t round = static_cast<int64_t>(tp.n_nodes_max) + 1 + std::max(0, tp.max_plain_steps);
        int64_t need = round * max_rounds;
        if (max_tokens > 0) need = std::min(need, max_tokens - 1 + round);
        if (max_out < need)
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "max_out ", max_out, " < ", need,
                       max_rounds == 1 ? " = n_nodes_max + 1 + max_plain_steps"
                                       : ": (n_nodes_max + 1 + max_plain_steps) for each round the call may run");
        if ((tp.sources & APLS_DRAFT_SKIP) && !skip_plan)
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "the layer-skip source (APLS_DRAFT_SKIP) needs skip_plan");
        const apls::Plan plan = apls::Plan::from_c(skip_plan, hp.n_layer, hp.n_vocab);
        const apls::KVView view = skip_view ? view_from_c(*skip_view) : apls::KVView{};
        const apls::TreeResult r =
            apls::spec_tree_rounds(*ctx->impl, drafter->impl, last_token, plan, skip_view ? &view : nullptr, tp,
                                   sampler ? &sampler->impl : nullptr, max_rounds, max_tokens, stop_at_eog);
        std::memcpy(out_tokens, r.tokens.data(), r.tokens.size() * sizeof(int32_t));
        *n_out = static_cast<int32_t>(r.tokens.size());
        if (n_rounds) *n_rounds = static_cast<int32_t>(r.steps.size());
        if (stats) tree_stats_to_c(r, stats);
    });
}

}  // extern "C"
