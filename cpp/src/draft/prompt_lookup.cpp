// prompt_lookup.cpp — n-gram index over the text; see prompt_lookup.h.
#include "draft/prompt_lookup.h"

#include <algorithm>

#include "common.h"

namespace apls::draft {

namespace {
int32_t bits_for(int32_t n_max) { return n_max <= 3 ? 21 : 16; }
}  // namespace

PromptLookup::PromptLookup(int32_t n_min, int32_t n_max) : n_min_(n_min), n_max_(n_max) {
    if (n_min < 1 || n_max < n_min || n_max > 4)
        fail(APLS_STATUS_INVALID_ARGUMENT, "prompt lookup n-grams must have 1 <= n_min <= n_max <= 4, got ", n_min,
             "..", n_max);
    index_.resize(n_max);
}

void PromptLookup::clear() {
    text_.clear();
    for (auto& m : index_) m.clear();
}

uint64_t PromptLookup::key(int32_t end, int32_t n) const {
    const int32_t bits = bits_for(n_max_);
    uint64_t k = 0;
    for (int32_t i = end - n + 1; i <= end; ++i) k = (k << bits) | static_cast<uint32_t>(text_[i]);
    return k;
}

void PromptLookup::append(const int32_t* tokens, int32_t n) {
    const int32_t limit = 1 << bits_for(n_max_);
    for (int32_t i = 0; i < n; ++i)
        if (tokens[i] < 0 || tokens[i] >= limit)
            fail(APLS_STATUS_INVALID_ARGUMENT, "prompt lookup: token ", tokens[i], " is out of range [0, ", limit, ")");
    for (int32_t i = 0; i < n; ++i) {
        text_.push_back(tokens[i]);
        const int32_t end = static_cast<int32_t>(text_.size()) - 1;
        for (int32_t len = 1; len <= n_max_ && len <= end + 1; ++len) index_[len - 1][key(end, len)].push_back(end);
    }
}

LookupMatch PromptLookup::find(int32_t max_occurrences, int32_t depth) const {
    LookupMatch m;
    const int32_t end = static_cast<int32_t>(text_.size()) - 1;
    if (max_occurrences <= 0 || depth <= 0) return m;
    for (int32_t n = std::min(n_max_, end + 1); n >= n_min_; --n) {
        auto it = index_[n - 1].find(key(end, n));
        if (it == index_[n - 1].end() || it->second.size() < 2) continue;  // only the text's own end
        const std::vector<int32_t>& ends = it->second;                     // ascending; ends.back() == end
        m.n = n;
        for (size_t j = ends.size() - 1; j-- > 0 && static_cast<int32_t>(m.continuations.size()) < max_occurrences;) {
            const int32_t from = ends[j] + 1, to = std::min(end, ends[j] + depth);  // inclusive
            m.continuations.emplace_back(text_.begin() + from, text_.begin() + to + 1);
        }
        return m;
    }
    return m;
}

}  // namespace apls::draft
