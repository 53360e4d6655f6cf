// layer_skip.h — the layer-skip draft as a tree source: a chain drafted by the model itself under
// a skip plan (and a KV view), with a branch to the draft's second choice where it is unsure.
//
// The chain is today's self-speculative draft: from the round's last token, one decode per token
// under the plan, each token the draft's choice, until n_max tokens, a token whose probability is
// below p_min, or an end-of-generation token. Greedy rounds may branch: where the draft's top
// probability is below branch_below, its second choice becomes a leaf beside the chain token
// (drafting on under both would cost a decode each, and the chain already is the likelier).
// Sampled rounds draw each chain token from the draft's distribution q, kept for the verifier's
// rejection step, and do not branch (a second token chosen after seeing the draw would not be
// an independent proposal). The draft's KV entries are dropped before returning: the verifier
// rewrites them with the full model.
#pragma once

#include <cstdint>
#include <vector>

#include "context.h"
#include "plan.h"
#include "sampling.h"

namespace apls::draft {

struct SkipParams {
    int32_t n_max = 4;          // most chain tokens
    float p_min = 0.0f;         // stop after a token whose draft probability is below this
    float branch_below = 0.0f;  // greedy: a second-choice leaf where the top probability is below this
};

struct SkipDraft {
    std::vector<int32_t> ids;         // (k) the chain
    std::vector<float> confs;         // (k) the draft's probability of each chain token
    std::vector<int32_t> second;      // (k) the draft's second choice at each step, -1: no branch
    std::vector<float> second_p;      // (k) its probability
    std::vector<std::vector<float>> q;  // sampling: (k, n_vocab) the distribution each token was drawn from
    int32_t n_waits = 0;              // times the host waited for a drafted token
};

// Draft after `last` (not yet in the cache) at the sequence's next position. sampler: nullptr =
// greedy (the argmax; on a GPU without branching the steps run as one device chain); otherwise
// each token is drawn from the sampler's distribution of the draft row, its history (penalties)
// extended by the chain so far and taken back afterwards. On error the cache and the sampler's
// history are as they were.
SkipDraft draft_layer_skip(Context& ctx, int32_t last, int32_t seq, const Plan& plan, const KVView* view,
                           const SkipParams& p, Sampler* sampler);

// The two largest of x[0..n) (ties: lower index) and their softmax probabilities.
struct Top2 {
    int32_t first = 0, second = -1;
    float p_first = 1.0f, p_second = 0.0f;
};
Top2 top2_row(const float* x, int32_t n);

}  // namespace apls::draft
