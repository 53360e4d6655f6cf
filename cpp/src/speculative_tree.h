// speculative_tree.h — one round of tree speculative decoding: candidates from several draft
// sources merged into one token tree, cut to the nodes worth their verify cost, verified by the
// full model in one batch, the longest path the verifier agrees with accepted.
//
// State between rounds (as spec_round): the sequence's cache holds every token before `last`,
// which is chosen but not decoded yet; the drafter's text ends with `last`. A round
//   1. collects candidates after `last`: the model-free sources (prompt lookup, suffix index,
//      token recycling; draft/drafter.h) and, when chosen, the layer-skip draft chain
//      (draft/layer_skip.h), merged into one trie with each node's estimated acceptance;
//   2. keeps the n likeliest nodes, n chosen to maximize expected tokens per verify cost
//      (draft::best_size over the measured cost of verifying n + 1 tokens; n = 0 is a plain step);
//   3. verifies [last, nodes...] in one batch, each node attending to the cache and its
//      ancestors at the position of its depth;
//   4. walks down from `last`: greedy takes the child holding the verifier's argmax; sampling
//      runs multi-candidate rejection sampling over the children (sampling_tree.h); the walk
//      ends with one token from the verifier;
//   5. keeps the accepted path's K/V at consecutive positions, drops every other node, and
//      feeds the outcome back (acceptance table, successor table, the drafter's text).
// Lossless for the same reasons as spec_round: each node's logits are bit-identical to decoding
// its path as a chain, greedy accepts only the verifier's argmax, and rejection sampling keeps the
// verifier's distribution exactly.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "context.h"
#include "draft/drafter.h"
#include "plan.h"
#include "sampling.h"

namespace apls {

struct TreeParams {
    int32_t seq = 0;
    uint32_t sources = draft::kAllSources;  // bits of draft::Source
    int32_t n_nodes_max = 8;                // most drafted nodes verified (capped by n_batch - 1 and the KV room)
    // verify_cost[n]: the cost of a verify batch of n + 1 tokens relative to one plain step
    // (verify_cost[0] = 1); nodes beyond its end are never verified. Empty: verify the
    // n_nodes_max likeliest candidates.
    std::vector<float> verify_cost;
    bool branching = true;   // verify a tree; false: only its likeliest path, as a chain
    // Greedy without the skip draft: while a step drafts nothing (a plain step), the round goes
    // on with another, up to this many plain steps, ending after an end-of-generation token; so
    // a stretch where nothing is worth drafting costs one call, not one per token. Without
    // token recycling (which learns from each step's logits) the steps run as
    // Context::greedy_while's: on a GPU one step is queued ahead of the host, so the device never
    // waits between them, and the step running when a draft becomes worth verifying completes
    // first (the verify then starts one token later).
    int32_t max_plain_steps = 0;
    draft::SkipParams skip;  // the layer-skip draft, when draft::Source::SKIP is chosen
    draft::TextParams text;  // the model-free sources
};

// One round's verify as a cost model and per-round statistics see it (TreeResult::steps).
struct TreeStep {
    int32_t n_plain_steps = 0;  // plain steps before it
    int32_t n_drafted = 0;      // nodes verified
    int32_t n_accepted = 0;
    double t_verify_s = 0.0;
    double t_plain_s = 0.0;  // the plain steps' forward passes
};

// Counts and timings of the round's last step, which is its only one unless it ran plain steps
// first (n_plain_steps; their tokens come first in `tokens`, their time is t_plain_s). Of several
// rounds run back to back (spec_tree_rounds): the sums of theirs, every token in order, and one
// entry of `steps` per round.
struct TreeResult {
    std::vector<int32_t> tokens;  // the plain steps' tokens, the accepted nodes, then the verifier's token
    int32_t n_plain_steps = 0;    // steps that drafted nothing before the last one
    int32_t n_candidates = 0;     // nodes the sources proposed
    int32_t n_drafted = 0;        // nodes verified (the verify batch held n_drafted + 1 tokens)
    int32_t n_accepted = 0;       // nodes accepted
    int32_t n_skip_drafted = 0;   // tokens the layer-skip draft decoded
    std::array<int32_t, draft::kNumSources> drafted_by{};   // verified nodes each source proposed
    std::array<int32_t, draft::kNumSources> accepted_by{};  // accepted nodes each source proposed
    std::vector<float> draft_conf;  // the layer-skip draft's probability of each of its tokens
    int32_t n_draft_waits = 0;      // times the host waited for a drafted token
    double t_draft_s = 0.0;         // the layer-skip draft's decodes
    double t_verify_s = 0.0;        // the verify forward pass
    double t_plain_s = 0.0;         // the plain steps' forward passes
    double t_host_s = 0.0;          // the rest: sources, the cut, acceptance, learning
    std::vector<TreeStep> steps;    // each round's verify
};

// Steps 1 and 2 without the model: the model-free candidates (and the layer-skip chain `skip`, if
// given; q_base as Drafter::add_skip) merged into one tree and cut to at most n_max nodes by the
// cost model. n_candidates (optional) receives the number of candidates before the cut. Also
// what a simulation of rounds over known text runs. A sampled skip chain (q_base >= 0) is never
// cut: the model-free nodes are cut to n_max - params.skip.n_max first and the chain joins them
// whole (even when params.branching is false), so which nodes are verified never depends on the
// values drawn, as rejection sampling requires.
draft::TokenTree draft_tree(const draft::Drafter& drafter, const TreeParams& params, int32_t n_max,
                            const draft::SkipDraft* skip, int32_t q_base, int32_t* n_candidates = nullptr);

// The time of a verify batch of n_tokens after what sequence `seq` holds, as a round runs it (every
// row's logits, the greedy choice of the first row), best of `reps`; the cache is left as it was.
// What a policy's verify cost model is calibrated with. One token is a plain step (a causal
// batch); n_tokens >= 2 a chain-shaped token tree, the batch form of every verify round, so the
// same kernels run — and on a GPU their graphs are captured here, at calibration, not inside the
// first rounds of a generation (the same tokens as a causal batch too, untimed: a round sends a
// tree that is a chain that way). With a plan (a layer-skip draft's), the same batch under that
// plan: what a draft token costs.
double time_verify(Context& ctx, int32_t seq, int32_t n_tokens, int32_t reps, const Plan* plan = nullptr);

// Run one round. skip_plan / skip_view: the layer-skip draft's plan and KV view (used when the
// SKIP source is chosen). sampler: nullptr or a greedy chain without penalties → greedy;
// otherwise its distribution and seeded generator, penalties seeing each row's path (as
// spec_round). Throws apls::Error (INVALID_ARGUMENT, KV_FULL) leaving the cache, the sampler's
// history and the drafter as they were.
TreeResult spec_tree_round(Context& ctx, draft::Drafter& drafter, int32_t last, const Plan& skip_plan,
                           const KVView* skip_view, const TreeParams& params, Sampler* sampler);

// Rounds back to back, each as spec_tree_round after the last one's verifier token, in one call
// (a GPU round takes ~1 ms, and a host language's loop around each one ~0.1 ms of it): up to
// max_rounds rounds while fewer than max_tokens tokens came out (max_tokens <= 0: no limit),
// ending after a round that produced an end-of-generation token when stop_at_eog, or before a
// round the cache has no room for. The first round's errors are thrown as spec_tree_round's; a
// later round's end the call with the rounds before it (the next call meets the error again).
TreeResult spec_tree_rounds(Context& ctx, draft::Drafter& drafter, int32_t last, const Plan& skip_plan,
                            const KVView* skip_view, const TreeParams& params, Sampler* sampler, int32_t max_rounds,
                            int32_t max_tokens, bool stop_at_eog);

}  // namespace apls
