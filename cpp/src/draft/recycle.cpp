// recycle.cpp — the successor table of token recycling; see recycle.h.
#include "draft/recycle.h"

#include <algorithm>

#include "common.h"
#include "runner.h"

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

void TokenRecycling::set(int32_t token, const int32_t* ids) {
    if (token < 0 || token >= n_vocab_)
        fail(APLS_STATUS_INVALID_ARGUMENT, "token recycling: token ", token, " is out of range [0, ", n_vocab_, ")");
    for (int32_t r = 0; r < k_; ++r)
        if (ids[r] < 0 || ids[r] >= n_vocab_)
            fail(APLS_STATUS_INVALID_ARGUMENT, "token recycling: successor ", ids[r], " is out of range [0, ", n_vocab_,
                 ")");
    std::copy(ids, ids + k_, &table_[static_cast<size_t>(token) * k_]);
}

}  // namespace apls::draft
