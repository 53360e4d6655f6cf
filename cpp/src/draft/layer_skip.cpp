// layer_skip.cpp — the layer-skip draft chain with second-choice branches; see layer_skip.h.
#include "draft/layer_skip.h"

#include <algorithm>
#include <cmath>

#include "common.h"
#include "sampling_tree.h"

namespace apls::draft {

namespace {

// Greedy steps reading each row's top two (the branch needs the second choice).
void greedy_with_branches(Context& ctx, int32_t last, int32_t pos0, int32_t seq, int32_t k, const Plan& plan,
                          const KVView* view, const SkipParams& p, SkipDraft& d) {
    const int32_t n_vocab = ctx.model().hparams().n_vocab;
    int32_t tok = last;
    for (int32_t i = 0; i < k; ++i) {
        ctx.decode(Batch::single(tok, pos0 + i, seq), plan, view);
        const Top2 t = top2_row(ctx.logits(), n_vocab);
        ++d.n_waits;
        tok = t.first;
        const bool branch = t.p_first < p.branch_below && t.second >= 0;
        d.ids.push_back(tok);
        d.confs.push_back(t.p_first);
        d.second.push_back(branch ? t.second : -1);
        d.second_p.push_back(branch ? t.p_second : 0.0f);
        if (ctx.ends_draft(tok, t.p_first, p.p_min)) break;
    }
}

// Sampled steps: each token drawn from the sampler's distribution of the draft row.
void sampled(Context& ctx, int32_t last, int32_t pos0, int32_t seq, int32_t k, const Plan& plan, const KVView* view,
             const SkipParams& p, Sampler& sampler, SkipDraft& d, int32_t& n_tried) {
    const int32_t n_vocab = ctx.model().hparams().n_vocab;
    const bool history = sampler.uses_history();
    int32_t tok = last;
    for (int32_t i = 0; i < k; ++i) {
        ctx.decode(Batch::single(tok, pos0 + i, seq), plan, view);
        d.q.push_back(sampler.probs(ctx.logits(), n_vocab));
        tok = draw_from(d.q.back(), sampler.uniform());
        const float conf = *std::max_element(d.q.back().begin(), d.q.back().end());
        ++d.n_waits;
        d.ids.push_back(tok);
        d.confs.push_back(conf);
        d.second.push_back(-1);
        d.second_p.push_back(0.0f);
        if (history) sampler.accept(tok), ++n_tried;
        if (ctx.ends_draft(tok, conf, p.p_min)) break;
    }
}

}  // namespace

Top2 top2_row(const float* x, int32_t n) {
    Top2 t;
    for (int32_t i = 1; i < n; ++i) {
        if (x[i] > x[t.first]) {
            t.second = t.first;
            t.first = i;
        } else if (t.second < 0 || x[i] > x[t.second]) {
            t.second = i;
        }
    }
    const float m = x[t.first];
    double sum = 0.0;
    for (int32_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i] - m));
    t.p_first = static_cast<float>(1.0 / sum);
    if (t.second >= 0) t.p_second = static_cast<float>(std::exp(static_cast<double>(x[t.second] - m)) / sum);
    return t;
}

SkipDraft draft_layer_skip(Context& ctx, int32_t last, int32_t seq, const Plan& plan, const KVView* view,
                           const SkipParams& p, Sampler* sampler) {
    KVCache& kv = ctx.kv();
    const int32_t n_past = kv.seq_len(seq), pos0 = kv.seq_next_pos(seq);
    // Room for the draft's entries (dropped afterwards) and, later, the verify batch.
    const int32_t k = std::max(0, std::min({p.n_max, ctx.max_invariant_batch() - 1, kv.room(seq) - 1}));
    SkipDraft d;
    int32_t n_tried = 0;  // drafts now in the sampler's history, to be taken back
    try {
        if (sampler) {
            sampled(ctx, last, pos0, seq, k, plan, view, p, *sampler, d, n_tried);
        } else if (p.branch_below > 0.0f) {
            greedy_with_branches(ctx, last, pos0, seq, k, plan, view, p, d);
        } else {
            GreedyDraft g = ctx.draft_greedy(last, pos0, seq, k, p.p_min, plan, view);
            d.ids = std::move(g.ids);
            d.confs = std::move(g.confs);
            d.second.assign(d.ids.size(), -1);
            d.second_p.assign(d.ids.size(), 0.0f);
            d.n_waits = g.n_waits;
        }
    } catch (...) {
        kv.truncate(seq, n_past);
        if (sampler && n_tried) sampler->unaccept(n_tried);
        throw;
    }
    kv.truncate(seq, n_past);  // the draft's entries skipped layers: the verifier rewrites them
    if (sampler && n_tried) sampler->unaccept(n_tried);
    return d;
}

}  // namespace apls::draft
