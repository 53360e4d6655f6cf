// sampling_tree.h — speculative sampling over a token tree: which of a node's children, if any,
// the verifier accepts, so that the token after the node keeps the verifier's distribution p.
//
// Multi-candidate speculative sampling (recursive rejection sampling, as in SpecInfer and SpecTr):
// the children are tried in order; candidate x drawn from q is accepted with probability
// min(1, p(x) / q(x)), and when it is rejected p becomes the residual norm(max(0, p - q)) for
// the next candidate; when every candidate is rejected, the token is drawn from the last
// residual. A candidate proposed deterministically (a text continuation, the successor table) is
// the case q = one-hot(x): accepted with probability p(x), and the residual is p with x removed.
// Whatever the candidates, the token that comes out is distributed as p, provided each
// candidate's q was fixed before the verifier's random numbers were drawn.
#pragma once

#include <cstdint>
#include <vector>

#include "sampling.h"

namespace apls {

struct Proposed {
    int32_t token;
    const float* q;  // (n_vocab) the distribution the token was drawn from; nullptr: deterministic
};

// p: (n_vocab) the verifier's distribution, overwritten with the working residual. Random numbers
// come from sampler.uniform(). Returns the index of the accepted candidate, or -1 with *next
// drawn from the final residual.
int32_t accept_one_of(std::vector<float>& p, const std::vector<Proposed>& cands, Sampler& sampler, int32_t* next);

// A draw from p (sums to ~1; zeros never drawn) with a uniform u in [0, total of p).
int32_t draw_from(const std::vector<float>& p, double u);

}  // namespace apls
