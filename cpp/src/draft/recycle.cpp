// recycle.cpp — the successor table of token recycling; see recycle.h.
#include "draft/recycle.h"

#include <algorithm>
#include <limits>

#include "common.h"

namespace apls::draft {

TokenRecycling::TokenRecycling(int32_t n_vocab, int32_t k) : n_vocab_(n_vocab), k_(k) {
    if (n_vocab <= 0) fail(APLS_STATUS_INVALID_ARGUMENT, "token recycling: n_vocab ", n_vocab, " must be positive");
    if (k < 1 || k > 64 || k > n_vocab)
        fail(APLS_STATUS_INVALID_ARGUMENT, "token recycling: k ", k, " must be in [1, min(64, n_vocab)]");
    table_.assign(static_cast<size_t>(n_vocab) * k, -1);
}

void TokenRecycling::clear() { std::fill(table_.begin(), table_.end(), -1); }

void TokenRecycling::update(int32_t token, const float* logits) {
    if (token < 0 || token >= n_vocab_)
        fail(APLS_STATUS_INVALID_ARGUMENT, "token recycling: token ", token, " is out of range [0, ", n_vocab_, ")");
    top_k_row(logits, n_vocab_, k_, &table_[static_cast<size_t>(token) * k_]);
}

void top_k_row(const float* x, int32_t n, int32_t k, int32_t* ids) {
    if (k < 1 || k > 64 || k > n) fail(APLS_STATUS_INVALID_ARGUMENT, "top_k_row: k ", k, " must be in [1, min(64, n)]");
    // One pass with a sorted list of the best k so far: most values fail the first comparison
    // with the k-th best, so this costs about n comparisons (a full sort would cost n log n).
    // Once the list is full, a run of 16 values whose maximum does not beat the k-th best is
    // skipped whole (a vectorisable max instead of 16 branches).
    float val[64];  // k <= 64 (checked by the table)
    int32_t m = 0;  // entries held
    constexpr int32_t kRun = 16;
    for (int32_t i0 = 0; i0 < n; i0 += kRun) {
        const int32_t i1 = std::min(n, i0 + kRun);
        if (m == k && i1 - i0 == kRun) {
            float top = -std::numeric_limits<float>::infinity();
            for (int32_t i = i0; i < i1; ++i) top = x[i] > top ? x[i] : top;
            if (!(top > val[k - 1])) continue;
        }
        for (int32_t i = i0; i < i1; ++i) {
            const float v = x[i];
            if (m == k && !(v > val[k - 1])) continue;  // equal to the k-th: the lower id (held) wins
            int32_t j = m < k ? m++ : k - 1;
            for (; j > 0 && v > val[j - 1]; --j) {
                val[j] = val[j - 1];
                ids[j] = ids[j - 1];
            }
            val[j] = v;
            ids[j] = i;
        }
    }
}

}  // namespace apls::draft
