// sampling_tree.cpp — recursive rejection sampling over a node's candidates; see sampling_tree.h.
#include "sampling_tree.h"

#include <algorithm>

namespace apls {

int32_t draw_from(const std::vector<float>& p, double u) {
    double c = 0.0;
    int32_t last_nonzero = 0;
    for (int32_t i = 0; i < static_cast<int32_t>(p.size()); ++i) {
        if (p[i] <= 0.0f) continue;
        c += p[i];
        last_nonzero = i;
        if (u < c) return i;
    }
    return last_nonzero;  // rounding left u just above the total
}

int32_t accept_one_of(std::vector<float>& p, const std::vector<Proposed>& cands, Sampler& sampler, int32_t* next) {
    const size_t n = p.size();
    double total = 1.0;  // p is kept unnormalized: the working residual is p / total
    for (size_t c = 0; c < cands.size(); ++c) {
        const int32_t x = cands[c].token;
        const float* q = cands[c].q;
        const double px = p[x] / total;
        const double accept = q ? (q[x] > 0.0f ? std::min(1.0, px / q[x]) : 0.0) : std::min(1.0, px);
        if (sampler.uniform() < accept) return static_cast<int32_t>(c);
        if (!q) {  // rejected one-hot: x leaves the residual
            total -= p[x];
            p[x] = 0.0f;
            continue;
        }
        // Rejected draw from q: the residual norm(max(0, p - q)).
        double left = 0.0;
        for (size_t i = 0; i < n; ++i) left += std::max(0.0, p[i] / total - q[i]);
        if (left <= 0.0) break;  // p == q up to rounding: x was accepted but for rounding; draw from p
        for (size_t i = 0; i < n; ++i) p[i] = static_cast<float>(std::max(0.0, p[i] / total - q[i]));
        total = left;
    }
    *next = draw_from(p, sampler.uniform() * total);
    return -1;
}

}  // namespace apls
