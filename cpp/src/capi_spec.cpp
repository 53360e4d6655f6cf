// capi_spec.cpp — one speculative round in the C API.
#include <cstring>

#include "capi_types.h"
#include "capi_util.h"
#include "speculative.h"

using apls::guard;
using apls::null_arg;

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
        apls::KVView view;
        if (draft_view) {
            view.n_sink = draft_view->n_sink;
            view.n_window = draft_view->n_window;
            if (draft_view->n_positions > 0) {
                if (!draft_view->positions) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "view.positions is NULL");
                view.positions.assign(draft_view->positions, draft_view->positions + draft_view->n_positions);
            }
        }
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

}  // extern "C"
