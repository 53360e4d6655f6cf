// speculative_tree.cpp — collect → cut → verify → walk → keep the path → learn; see speculative_tree.h.
#include "speculative_tree.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "common.h"
#include "sampling_tree.h"

namespace apls {

namespace {

using Clock = std::chrono::steady_clock;
using draft::Source;
using draft::TokenTree;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

constexpr uint32_t bit(Source s) { return 1u << static_cast<int>(s); }

void check_params(const TreeParams& p) {
    if (p.n_nodes_max < 0) fail(APLS_STATUS_INVALID_ARGUMENT, "n_nodes_max ", p.n_nodes_max, " is negative");
    if (p.max_plain_steps < 0)
        fail(APLS_STATUS_INVALID_ARGUMENT, "max_plain_steps ", p.max_plain_steps, " is negative");
    if (p.sources & ~draft::kAllSources)
        fail(APLS_STATUS_INVALID_ARGUMENT, "sources ", p.sources, " has bits beyond the ", draft::kNumSources,
             " draft sources");
    for (size_t i = 0; i < p.verify_cost.size(); ++i)
        if (!(p.verify_cost[i] > 0.0f) || !std::isfinite(p.verify_cost[i]))
            fail(APLS_STATUS_INVALID_ARGUMENT, "verify_cost[", i, "] must be a finite value > 0");
    const draft::TextParams& t = p.text;
    if (p.skip.n_max < 0 || t.lookup_occurrences < 0 || t.lookup_depth < 0 || t.suffix_branches < 0 ||
        t.suffix_depth < 0 || t.recycle_branches < 0 || t.recycle_depth < 0 || t.max_candidates < 0)
        fail(APLS_STATUS_INVALID_ARGUMENT, "draft source limits must be >= 0");
}

// The nodes to verify: the n likeliest (n by the cost model), or the likeliest path cut the
// same way.
TokenTree cut(const TokenTree& cand, int32_t n_max, const std::vector<float>& cost, bool branching) {
    if (!branching) {
        std::vector<int32_t> path = cand.best_path();
        std::vector<float> p;
        for (int32_t i : path) p.push_back(cand.node(i).p_path);
        path.resize(std::min<size_t>(path.size(), n_max));
        p.resize(path.size());
        path.resize(draft::best_size(p, cost));
        return cand.subtree(path);
    }
    std::vector<float> sorted = cand.sorted_p_path();
    sorted.resize(std::min<size_t>(sorted.size(), n_max));
    return cand.subtree(cand.best(draft::best_size(sorted, cost)));
}

// Row r of the verify batch: 0 is `last`, node i is row i + 1 (the tree's depth-first order).
// A tree that branches goes as a tree batch (each node sees the cache and its ancestors); a chain
// as a plain causal batch, which is the same attention.
Batch verify_batch(int32_t last, int32_t pos0, int32_t seq, const TokenTree& tree) {
    Batch b;
    b.token.push_back(last);
    b.pos.push_back(pos0);
    for (int32_t i = 0; i < tree.size(); ++i) {
        b.token.push_back(tree.node(i).token);
        b.pos.push_back(pos0 + tree.node(i).depth);
    }
    b.seq.assign(b.token.size(), seq);
    b.out.assign(b.token.size(), 1);
    if (!tree.is_chain()) {
        b.parent.push_back(-1);
        for (int32_t i = 0; i < tree.size(); ++i) b.parent.push_back(tree.node(i).parent + 1);  // kRoot + 1 = row 0
    }
    return b;
}

int32_t row_of(int32_t node) { return node == TokenTree::kRoot ? 0 : node + 1; }

// Greedy: follow the child holding the verifier's argmax. Returns the verifier's token after
// the accepted path.
int32_t walk_greedy(const Context& ctx, const TokenTree& tree, std::vector<int32_t>& path) {
    for (int32_t at = TokenTree::kRoot;;) {
        const int32_t want = ctx.argmax(row_of(at));
        const int32_t c = tree.child(at, want);
        if (c < 0) return want;
        path.push_back(c);
        at = c;
    }
}

// Sampling: at each accepted node, multi-candidate rejection sampling over its children,
// deterministic proposals first (likeliest first), then the tokens drawn from a draft
// distribution. The history (penalties) grows with each accepted node.
int32_t walk_sampled(Context& ctx, const TokenTree& tree, const std::vector<std::vector<float>>& q, Sampler& sampler,
                     std::vector<int32_t>& path) {
    const int32_t n_vocab = ctx.model().hparams().n_vocab;
    const float* logits = ctx.logits();
    const bool history = sampler.uses_history();
    std::vector<Proposed> cands;
    std::vector<int32_t> node_of;  // candidate -> node
    for (int32_t at = TokenTree::kRoot;;) {
        std::vector<float> p = sampler.probs(logits + static_cast<size_t>(row_of(at)) * n_vocab, n_vocab);
        cands.clear();
        node_of.clear();
        for (int pass = 0; pass < 2; ++pass)
            for (int32_t c : tree.children(at))
                for (const draft::Proposal& pr : tree.node(c).proposals) {
                    if ((pr.q >= 0) != (pass == 1)) continue;
                    cands.push_back(Proposed{tree.node(c).token, pr.q >= 0 ? q[pr.q].data() : nullptr});
                    node_of.push_back(c);
                    if (pass == 0) break;  // one deterministic try per node: a second would be refused
                }
        int32_t next = -1;
        const int32_t k = accept_one_of(p, cands, sampler, &next);
        if (k < 0) return next;
        at = node_of[k];
        path.push_back(at);
        if (history) sampler.accept(tree.node(at).token);  // the next row's history
    }
}

// Keep last and the accepted nodes at consecutive positions after the first n_past entries;
// the other nodes' entries go (a path that is the batch's first rows is a truncate).
void keep_path(KVCache& kv, int32_t seq, int32_t n_past, const std::vector<int32_t>& path) {
    std::vector<int32_t> entries = {n_past};  // `last`: batch row 0
    for (int32_t node : path) entries.push_back(n_past + node + 1);
    kv.keep_path(seq, n_past, entries.data(), static_cast<int32_t>(entries.size()));
}

// Sampling with the layer-skip draft: a token drawn from q is a valid candidate only if whether
// it (and every other candidate) is verified does not depend on the value drawn. So the
// model-free candidates are cut first, leaving room for the longest chain the draft may make,
// and the chain joins the cut tree whole (measured: cutting after the chain joined biased the
// chi-square test of test_speculative_tree.py).
TokenTree with_sampled_skip(const draft::Drafter& drafter, const TreeParams& params, int32_t n_max, TokenTree& cand,
                            const draft::SkipDraft& skip, int32_t q_base, int32_t* n_candidates) {
    const int32_t reserve = std::min(params.skip.n_max, n_max);  // the draft's chain never exceeds it
    drafter.calibrate(cand);
    cand.finish();
    if (n_candidates) *n_candidates = cand.size() + static_cast<int32_t>(skip.ids.size());
    TokenTree tree = cut(cand, n_max - reserve, params.verify_cost, params.branching);
    drafter.add_skip(tree, skip, q_base);
    drafter.calibrate(tree);
    tree.finish();
    std::vector<int32_t> all(tree.size());
    for (int32_t i = 0; i < tree.size(); ++i) all[i] = i;
    return tree.subtree(all);  // depth first, likeliest children first
}

void count_sources(const TokenTree& tree, const std::vector<int32_t>& path, TreeResult& r) {
    std::vector<uint8_t> on_path(tree.size(), 0);
    for (int32_t i : path) on_path[i] = 1;
    for (int32_t i = 0; i < tree.size(); ++i) {
        uint32_t seen = 0;
        for (const draft::Proposal& pr : tree.node(i).proposals) seen |= bit(pr.source);
        for (int s = 0; s < draft::kNumSources; ++s)
            if (seen & (1u << s)) {
                ++r.drafted_by[s];
                r.accepted_by[s] += on_path[i];
            }
    }
}

}  // namespace

TokenTree draft_tree(const draft::Drafter& drafter, const TreeParams& params, int32_t n_max,
                     const draft::SkipDraft* skip, int32_t q_base, int32_t* n_candidates) {
    check_params(params);
    TokenTree cand;
    drafter.propose(cand, params.sources & ~bit(Source::SKIP), params.text);
    if (skip && q_base >= 0) return with_sampled_skip(drafter, params, n_max, cand, *skip, q_base, n_candidates);
    if (skip) drafter.add_skip(cand, *skip, q_base);
    drafter.calibrate(cand);
    cand.finish();
    if (n_candidates) *n_candidates = cand.size();
    return cut(cand, n_max, params.verify_cost, params.branching);
}

double time_verify(Context& ctx, int32_t seq, int32_t n_tokens, int32_t reps, const Plan* plan) {
    KVCache& kv = ctx.kv();
    if (!kv.valid_seq(seq)) fail(APLS_STATUS_INVALID_ARGUMENT, "unknown sequence ", seq);
    if (n_tokens < 1 || n_tokens > ctx.max_invariant_batch())
        fail(APLS_STATUS_INVALID_ARGUMENT, "n_tokens ", n_tokens, " is out of range [1, ", ctx.max_invariant_batch(),
             "]");
    if (reps < 1) fail(APLS_STATUS_INVALID_ARGUMENT, "reps ", reps, " must be >= 1");
    const int32_t n_past = kv.seq_len(seq), pos0 = kv.seq_next_pos(seq);
    Batch b;
    for (int32_t i = 0; i < n_tokens; ++i) {
        b.token.push_back(i % ctx.model().hparams().n_vocab);
        b.pos.push_back(pos0 + i);
    }
    b.seq.assign(n_tokens, seq);
    b.out.assign(n_tokens, 1);
    if (n_tokens > 1 && ctx.device() != Device::CPU) {
        // A round whose tree is a chain verifies it as a causal batch, another graph on a GPU:
        // captured here too (untimed), not inside a round, where its ~1.3 ms would be charged to
        // the model-free arm of the adaptive policy in its first bursts of a session.
        ctx.decode(b, plan ? *plan : Plan{}, nullptr);
        (void)ctx.argmax(0);
        kv.truncate(seq, n_past);
    }
    if (n_tokens > 1)  // a chain-shaped tree: node i's parent is i - 1, as tree_step verifies
        for (int32_t i = 0; i < n_tokens; ++i) b.parent.push_back(i - 1);
    double best = 0.0;
    for (int32_t r = 0; r < reps; ++r) {
        const auto t0 = Clock::now();
        ctx.decode(b, plan ? *plan : Plan{}, nullptr);
        (void)ctx.argmax(0);  // waits for the device, as the walk does
        const double t = seconds_since(t0);
        kv.truncate(seq, n_past);
        best = r == 0 ? t : std::min(best, t);
    }
    return best;
}

namespace {

// The most nodes a verify batch may hold now: within the batch whose logits are each
// bit-identical to decoding alone (n_batch; on a GPU the device's limit), a tree batch's limit,
// the KV room (KV_FULL when there is none).
int32_t max_nodes(const Context& ctx, const TreeParams& params) {
    const int32_t room = ctx.kv().room(params.seq);
    if (room < 1) fail(APLS_STATUS_KV_FULL, "KV cache full: no room for the next token of sequence ", params.seq);
    return std::max(0, std::min({params.n_nodes_max, ctx.max_invariant_batch() - 1, kMaxTreeNodes - 1, room - 1}));
}

// A step's draft: the layer-skip chain (when used), the tree cut from every chosen source.
struct Drafted {
    draft::SkipDraft skip;
    TokenTree tree;
};

// Steps 1 and 2 of a step: candidates, the cut. Sets res's draft fields (n_candidates,
// n_drafted, the skip draft's counts and time).
Drafted draft_step(Context& ctx, const draft::Drafter& drafter, int32_t last, const Plan& skip_plan,
                   const KVView* skip_view, const TreeParams& params, Sampler* sampler, bool use_skip,
                   TreeResult& res) {
    const bool greedy = sampler == nullptr || sampler->picks_argmax();
    const int32_t n_max = max_nodes(ctx, params);
    Drafted d;
    if (use_skip && n_max > 0) {
        const auto t0 = Clock::now();
        draft::SkipParams sp = params.skip;
        sp.n_max = std::min(sp.n_max, n_max);
        d.skip = draft::draft_layer_skip(ctx, last, params.seq, skip_plan, skip_view, sp, greedy ? nullptr : sampler);
        res.t_draft_s += seconds_since(t0);
        res.n_skip_drafted = static_cast<int32_t>(d.skip.ids.size());
        res.draft_conf = d.skip.confs;
        res.n_draft_waits = d.skip.n_waits;
    }
    d.tree = draft_tree(drafter, params, n_max, use_skip ? &d.skip : nullptr, greedy ? -1 : 0, &res.n_candidates);
    res.n_drafted = d.tree.size();
    return d;
}

// Steps 3 to 5 of a step: verify [last, nodes...], walk, keep the path, learn. Appends the
// step's tokens to res and sets n_accepted, drafted_by/accepted_by and t_verify_s (this step's).
void verify_step(Context& ctx, draft::Drafter& drafter, int32_t last, const Drafted& d, const TreeParams& params,
                 Sampler* sampler, TreeResult& res) {
    KVCache& kv = ctx.kv();
    const int32_t seq = params.seq;
    const bool greedy = sampler == nullptr || sampler->picks_argmax();
    const bool history = sampler && sampler->uses_history();
    const int32_t n_past = kv.seq_len(seq), pos0 = kv.seq_next_pos(seq);
    const TokenTree& tree = d.tree;

    // ---- 3. verify -----------------------------------------------------------------------------
    const Batch vb = verify_batch(last, pos0, seq, tree);
    const auto t_verify = Clock::now();
    ctx.decode(vb, Plan{}, nullptr);  // on error: the cache as it was, nothing else touched
    // Token recycling: every row's top k (on a GPU picked there, in the same wait as the choices).
    std::vector<int32_t> top;
    if (params.sources & bit(Source::RECYCLE)) {
        top.resize(static_cast<size_t>(vb.size()) * drafter.recycle_k());
        ctx.top_k(drafter.recycle_k(), top.data());
    }
    (void)ctx.argmax(0);  // a device returns at once: wait for it here, so t_verify_s is the verify's
    res.t_verify_s = seconds_since(t_verify);

    // ---- 4. walk; 5. keep the path, learn -----------------------------------------------------
    std::vector<int32_t> path;
    int32_t next = -1;
    try {
        next = greedy ? walk_greedy(ctx, tree, path) : walk_sampled(ctx, tree, d.skip.q, *sampler, path);
        keep_path(kv, seq, n_past, path);
    } catch (...) {
        kv.truncate(seq, n_past);
        if (history) sampler->unaccept(static_cast<int32_t>(path.size()));
        throw;
    }
    const size_t first = res.tokens.size();
    for (int32_t i : path) res.tokens.push_back(tree.node(i).token);
    res.tokens.push_back(next);
    res.n_accepted = static_cast<int32_t>(path.size());
    if (history) sampler->accept(next);  // the history now ends with the round's output

    drafter.learn(tree, path);
    if (!top.empty())
        for (int32_t r = 0; r < vb.size(); ++r)
            drafter.recycle_top(vb.token[r], top.data() + static_cast<size_t>(r) * drafter.recycle_k());
    drafter.append(res.tokens.data() + first, static_cast<int32_t>(res.tokens.size() - first));
    res.drafted_by = {};
    res.accepted_by = {};
    count_sources(tree, path, res);
}

// One verify of a round: draft_step, then verify_step.
void tree_step(Context& ctx, draft::Drafter& drafter, int32_t last, const Plan& skip_plan, const KVView* skip_view,
               const TreeParams& params, Sampler* sampler, bool use_skip, TreeResult& res) {
    const Drafted d = draft_step(ctx, drafter, last, skip_plan, skip_view, params, sampler, use_skip, res);
    verify_step(ctx, drafter, last, d, params, sampler, res);
}

// Plain steps from `last` while the model-free sources draft nothing worth verifying after the
// newest token (Context::greedy_while; the drafter sees each token as it comes), up to n_max.
// Appends their tokens to res (n_plain_steps, t_plain_s) and the drafter's text; throws as the
// first step does.
void plain_steps(Context& ctx, draft::Drafter& drafter, int32_t last, const TreeParams& params, int32_t n_max,
                 TreeResult& res) {
    const auto t0 = Clock::now();
    int32_t seen = 0;
    const auto nothing_to_verify = [&](int32_t tok) {
        drafter.append(&tok, 1);
        ++seen;
        if (ctx.kv().room(params.seq) < 1) return false;  // no step can follow (the round ends on it)
        return draft_tree(drafter, params, max_nodes(ctx, params), nullptr, -1).size() == 0;
    };
    const std::vector<int32_t> toks = ctx.greedy_while(params.seq, last, n_max, true, nothing_to_verify);
    drafter.append(toks.data() + seen, static_cast<int32_t>(toks.size()) - seen);  // the step queued ahead, an end
    res.tokens.insert(res.tokens.end(), toks.begin(), toks.end());
    res.n_plain_steps += static_cast<int32_t>(toks.size());
    res.t_plain_s += seconds_since(t0);
}

// A round that ends on a plain step (an end of generation, a full cache): that step is the
// round's own (n_drafted 0), as when its verify drafted nothing.
void end_on_plain_step(TreeResult& res) {
    const double t = res.t_plain_s / res.n_plain_steps;
    --res.n_plain_steps;
    res.t_plain_s -= t;
    res.t_verify_s = t;
    res.n_drafted = res.n_accepted = 0;
    res.drafted_by = {};
    res.accepted_by = {};
}

// A greedy round without the skip draft whose first step drafts nothing: plain steps (up to
// params.max_plain_steps) until a step drafts what pays, which it verifies, in res.
void plain_then_verify(Context& ctx, draft::Drafter& drafter, int32_t last, const TreeParams& params, TreeResult& res) {
    const Vocab* vocab = ctx.model().vocab();
    plain_steps(ctx, drafter, last, params, params.max_plain_steps, res);
    for (;;) {
        const int32_t tok = res.tokens.back();
        if ((vocab && vocab->is_eog(tok)) || ctx.kv().room(params.seq) < 1) return end_on_plain_step(res);
        try {
            const Drafted d = draft_step(ctx, drafter, tok, Plan{}, nullptr, params, nullptr, false, res);
            const int32_t left = params.max_plain_steps - res.n_plain_steps;
            // The step queued ahead of a draft that paid may find none: plain steps go on.
            if (d.tree.size() == 0 && left > 0) {
                plain_steps(ctx, drafter, tok, params, left, res);
                continue;
            }
            return verify_step(ctx, drafter, tok, d, params, nullptr, res);
        } catch (const Error&) {
            return end_on_plain_step(res);  // the next round meets the failure again
        }
    }
}

// The round's host time (what its steps' timings leave out) and its one entry of steps.
TreeResult finish_round(TreeResult& res, Clock::time_point t_start) {
    res.t_host_s = seconds_since(t_start) - res.t_draft_s - res.t_verify_s - res.t_plain_s;
    res.steps = {TreeStep{res.n_plain_steps, res.n_drafted, res.n_accepted, res.t_verify_s, res.t_plain_s}};
    return std::move(res);
}

}  // namespace

TreeResult spec_tree_round(Context& ctx, draft::Drafter& drafter, int32_t last, const Plan& skip_plan,
                           const KVView* skip_view, const TreeParams& params, Sampler* sampler) {
    const auto t_start = Clock::now();
    const HParams& hp = ctx.model().hparams();
    const int32_t seq = params.seq, n_vocab = hp.n_vocab;
    if (!ctx.kv().valid_seq(seq)) fail(APLS_STATUS_INVALID_ARGUMENT, "unknown sequence ", seq);
    if (last < 0 || last >= n_vocab)
        fail(APLS_STATUS_INVALID_ARGUMENT, "token ", last, " is out of range [0, ", n_vocab, ")");
    if (drafter.n_vocab() != n_vocab)
        fail(APLS_STATUS_INVALID_ARGUMENT, "the drafter's n_vocab ", drafter.n_vocab(), " is not the model's ",
             n_vocab);
    if (drafter.text().empty() || drafter.text().back() != last)
        fail(APLS_STATUS_INVALID_ARGUMENT, "the drafter's text must end with the round's last token ", last);
    check_params(params);
    const bool use_skip = (params.sources & bit(Source::SKIP)) && params.skip.n_max > 0;
    if (use_skip) skip_plan.validate(hp.n_layer, n_vocab);
    // Plain steps (nothing worth drafting) run on inside the round, up to max_plain_steps: greedy
    // only, and not with the skip draft (whose decodes are spent before the cut).
    const bool plain_ok = (sampler == nullptr || sampler->picks_argmax()) && !use_skip;
    const Vocab* vocab = ctx.model().vocab();

    TreeResult res;
    const Drafted d = draft_step(ctx, drafter, last, skip_plan, skip_view, params, sampler, use_skip, res);
    if (plain_ok && d.tree.size() == 0 && params.max_plain_steps > 0 && !(params.sources & bit(Source::RECYCLE))) {
        plain_then_verify(ctx, drafter, last, params, res);
        return finish_round(res, t_start);
    }
    verify_step(ctx, drafter, last, d, params, sampler, res);
    while (plain_ok && res.n_drafted == 0 && res.n_plain_steps < params.max_plain_steps &&
           !(vocab && vocab->is_eog(res.tokens.back()))) {
        // The step before drafted nothing: a plain step (here with token recycling, whose
        // drafter learns from each step's logits). A failure now (the cache full, say) ends the
        // round with what it has; the next round meets it again and reports it.
        const double t_plain = res.t_verify_s;
        try {
            tree_step(ctx, drafter, res.tokens.back(), skip_plan, skip_view, params, sampler, use_skip, res);
        } catch (const Error&) {
            break;
        }
        ++res.n_plain_steps;
        res.t_plain_s += t_plain;
    }
    return finish_round(res, t_start);
}

namespace {

// Round r's result folded into the sums of the rounds before it.
void add_round(TreeResult& sum, TreeResult&& r) {
    sum.tokens.insert(sum.tokens.end(), r.tokens.begin(), r.tokens.end());
    sum.n_plain_steps += r.n_plain_steps;
    sum.n_candidates += r.n_candidates;
    sum.n_drafted += r.n_drafted;
    sum.n_accepted += r.n_accepted;
    sum.n_skip_drafted += r.n_skip_drafted;
    for (int s = 0; s < draft::kNumSources; ++s) {
        sum.drafted_by[s] += r.drafted_by[s];
        sum.accepted_by[s] += r.accepted_by[s];
    }
    sum.draft_conf.insert(sum.draft_conf.end(), r.draft_conf.begin(), r.draft_conf.end());
    sum.n_draft_waits += r.n_draft_waits;
    sum.t_draft_s += r.t_draft_s;
    sum.t_verify_s += r.t_verify_s;
    sum.t_plain_s += r.t_plain_s;
    sum.t_host_s += r.t_host_s;
    sum.steps.insert(sum.steps.end(), r.steps.begin(), r.steps.end());
}

bool ends_generation(const Vocab* vocab, const std::vector<int32_t>& tokens, int32_t from) {
    if (!vocab) return false;
    for (size_t i = from; i < tokens.size(); ++i)
        if (vocab->is_eog(tokens[i])) return true;
    return false;
}

}  // namespace

TreeResult spec_tree_rounds(Context& ctx, draft::Drafter& drafter, int32_t last, const Plan& skip_plan,
                            const KVView* skip_view, const TreeParams& params, Sampler* sampler, int32_t max_rounds,
                            int32_t max_tokens, bool stop_at_eog) {
    if (max_rounds < 1) fail(APLS_STATUS_INVALID_ARGUMENT, "max_rounds ", max_rounds, " must be >= 1");
    const Vocab* vocab = stop_at_eog ? ctx.model().vocab() : nullptr;
    TreeResult sum = spec_tree_round(ctx, drafter, last, skip_plan, skip_view, params, sampler);
    for (int32_t r = 1, seen = 0; r < max_rounds; ++r) {
        if (ends_generation(vocab, sum.tokens, seen)) break;
        seen = static_cast<int32_t>(sum.tokens.size());
        if (max_tokens > 0 && seen >= max_tokens) break;
        if (ctx.kv().room(params.seq) < 1) break;
        try {
            add_round(sum, spec_tree_round(ctx, drafter, sum.tokens.back(), skip_plan, skip_view, params, sampler));
        } catch (const Error&) {
            break;  // the state as after the rounds before: the next call meets the error again
        }
    }
    return sum;
}

}  // namespace apls
