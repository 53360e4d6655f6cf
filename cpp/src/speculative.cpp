// speculative.cpp — draft → verify → accept → roll back; see speculative.h.
#include "speculative.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "common.h"
#include "sampling_tree.h"

namespace apls {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

SpecResult spec_round(Context& ctx, int32_t last, const Plan& draft_plan, const KVView* draft_view,
                      const SpecParams& params, Sampler* sampler) {
    const HParams& hp = ctx.model().hparams();
    KVCache& kv = ctx.kv();
    const int32_t seq = params.seq, n_vocab = hp.n_vocab;
    if (!kv.valid_seq(seq)) fail(APLS_STATUS_INVALID_ARGUMENT, "unknown sequence ", seq);
    if (last < 0 || last >= n_vocab)
        fail(APLS_STATUS_INVALID_ARGUMENT, "token ", last, " is out of range [0, ", n_vocab, ")");
    if (params.n_draft_max < 0) fail(APLS_STATUS_INVALID_ARGUMENT, "n_draft_max ", params.n_draft_max, " is negative");
    // The raw argmax on the device, unless the sampler draws or its penalties change the logits:
    // then each draft and verify row goes through the sampler, its history extended by the
    // drafts before the row (taken back afterwards: the history gets the round's output).
    const bool greedy = sampler == nullptr || sampler->picks_argmax();
    const bool history = sampler && sampler->uses_history();
    draft_plan.validate(hp.n_layer, n_vocab);

    const int32_t n_past = kv.seq_len(seq);
    const int32_t pos0 = kv.seq_next_pos(seq);
    // The verify batch holds last + k drafts: bounded by the batch size whose logits are each
    // bit-identical to decoding alone (n_batch; 64 tokens on a GPU), and by the free KV room.
    const int32_t room = kv.room(seq);
    const int32_t k_max = std::max(0, std::min({params.n_draft_max, ctx.max_invariant_batch() - 1, room - 1}));
    if (room < 1) fail(APLS_STATUS_KV_FULL, "KV cache full: no room for the next token of sequence ", seq);

    SpecResult res;
    std::vector<int32_t> draft;
    std::vector<std::vector<float>> q;  // sampling: the draft distribution of each drafted token
    int32_t n_tried = 0;                // drafts now in the sampler's history, to be taken back

    // ---- draft: up to k tokens under the draft plan, one decode each --------------------------
    auto t0 = Clock::now();
    try {
        if (greedy) {
            GreedyDraft g = ctx.draft_greedy(last, pos0, seq, k_max, params.draft_p_min, draft_plan, draft_view);
            draft = std::move(g.ids);
            res.draft_conf = std::move(g.confs);
            res.n_draft_waits = g.n_waits;
        } else {
            int32_t tok = last;
            for (int32_t i = 0; i < k_max; ++i) {
                ctx.decode(Batch::single(tok, pos0 + i, seq), draft_plan, draft_view);
                q.push_back(sampler->probs(ctx.logits(), n_vocab));
                tok = draw_from(q.back(), sampler->uniform());
                const float conf = *std::max_element(q.back().begin(), q.back().end());
                draft.push_back(tok);
                if (history) sampler->accept(tok), ++n_tried;
                res.draft_conf.push_back(conf);
                ++res.n_draft_waits;
                if (ctx.ends_draft(tok, conf, params.draft_p_min)) break;
            }
        }
    } catch (...) {
        kv.truncate(seq, n_past);
        if (history) sampler->unaccept(n_tried);
        throw;
    }
    kv.truncate(seq, n_past);  // the draft's entries skipped layers: the verifier rewrites them
    if (history) sampler->unaccept(n_tried);
    res.t_draft_s = seconds_since(t0);
    const int32_t k = static_cast<int32_t>(draft.size());
    res.n_drafted = k;

    // ---- verify: [last, d1..dk] with the full model in one batch ------------------------------
    t0 = Clock::now();
    Batch vb;
    vb.token.push_back(last);
    vb.token.insert(vb.token.end(), draft.begin(), draft.end());
    for (int32_t i = 0; i <= k; ++i) {
        vb.pos.push_back(pos0 + i);
        vb.seq.push_back(seq);
        vb.out.push_back(1);
    }
    ctx.decode(vb, Plan{}, nullptr);  // on error: the cache as it was, the history untouched
    // Output row i predicts the token after vb.token[i].

    // ---- accept -------------------------------------------------------------------------------
    int32_t m = 0, next = -1;
    if (greedy) {
        for (; m < k; ++m) {
            const int32_t want = ctx.argmax(m);
            if (want != draft[m]) {
                next = want;
                break;
            }
        }
        if (next < 0) next = ctx.argmax(k);
    } else {
        const float* logits = ctx.logits();  // (k + 1, n_vocab)
        for (; m < k; ++m) {
            std::vector<float> p = sampler->probs(logits + static_cast<size_t>(m) * n_vocab, n_vocab);
            const int32_t d = draft[m];
            const double accept = q[m][d] > 0.0f ? std::min(1.0, static_cast<double>(p[d]) / q[m][d]) : 0.0;
            if (sampler->uniform() < accept) {
                if (history) sampler->accept(d);  // the next row's history
                continue;
            }
            // Rejected: sample from the residual norm(max(0, p - q)).
            double total = 0.0;
            for (int32_t i = 0; i < n_vocab; ++i) {
                p[i] = std::max(0.0f, p[i] - q[m][i]);
                total += p[i];
            }
            if (total <= 0.0) {  // p == q up to rounding: any draw from p is right
                p = sampler->probs(logits + static_cast<size_t>(m) * n_vocab, n_vocab);
                total = 1.0;
            }
            next = draw_from(p, sampler->uniform() * total);
            break;
        }
        if (next < 0) {
            std::vector<float> p = sampler->probs(logits + static_cast<size_t>(k) * n_vocab, n_vocab);
            next = draw_from(p, sampler->uniform());
        }
    }
    if (history) sampler->accept(next);  // the history now ends with the round's output
    kv.truncate(seq, n_past + 1 + m);  // keep last and the accepted drafts
    res.t_verify_s = seconds_since(t0);
    res.n_accepted = m;
    res.tokens.assign(draft.begin(), draft.begin() + m);
    res.tokens.push_back(next);
    return res;
}

}  // namespace apls
