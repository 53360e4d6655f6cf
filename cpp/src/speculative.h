// speculative.h — one round of self-speculative decoding: draft with a layer plan, verify with
// the full model in one batch, accept, roll the KV cache back.
//
// State between rounds: the sequence's KV cache holds every token before `last`, and `last`
// (the newest token, already chosen) is not decoded yet. A round drafts d1..dk from `last`
// under the draft plan, verifies [last, d1..dk] with the full model in one batch, accepts the
// longest valid prefix d1..dm plus one token from the verifier, and leaves the cache holding
// everything up to dm. The verifier's token is the next round's `last`.
//
// Lossless: greedy acceptance compares with the verifier's argmax, and the verify batch gives
// bit-identical logits to decoding the same tokens one by one (batch invariance), so greedy
// output equals plain greedy decoding token for token. Sampling uses the rejection rule
// (accept d with probability min(1, p(d)/q(d)), else sample from norm(max(0, p - q))), which
// keeps the verifier's distribution exactly.
#pragma once

#include <cstdint>
#include <vector>

#include "context.h"
#include "plan.h"
#include "sampling.h"

namespace apls {

struct SpecParams {
    int32_t seq = 0;            // the sequence to extend
    int32_t n_draft_max = 8;    // most tokens drafted in the round
    float draft_p_min = 0.0f;   // stop drafting once the draft's top probability falls below this
};

struct SpecResult {
    std::vector<int32_t> tokens;   // d1..dm then the verifier's token: m + 1 tokens
    int32_t n_drafted = 0;         // k
    int32_t n_accepted = 0;        // m
    std::vector<float> draft_conf; // (k) the draft's top probability for each drafted token
    int32_t n_draft_waits = 0;     // times the host waited for a drafted token (1 for a GPU chain)
    double t_draft_s = 0.0;
    double t_verify_s = 0.0;
};

// Run one round. sampler: nullptr or a greedy chain → greedy; otherwise its distribution
// (temperature, top-k, top-p, min-p; history-dependent penalties are refused) and its seeded
// generator. Throws apls::Error (INVALID_ARGUMENT, KV_FULL) leaving the cache as it was.
SpecResult spec_round(Context& ctx, int32_t last, const Plan& draft_plan, const KVView* draft_view,
                      const SpecParams& params, Sampler* sampler);

}  // namespace apls
