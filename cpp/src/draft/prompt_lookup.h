// prompt_lookup.h — prompt lookup: what followed the last n-gram of the text where it occurred
// before, in the prompt or the output so far.
//
// The text grows token by token. find() takes the longest n-gram, n from n_max down to n_min,
// that ends the text and also ends somewhere earlier, and returns what followed its earlier
// occurrences, most recent first. Each n-gram length keeps a hash index (n-gram -> end
// positions), so appending is O(n_max) and finding is O(occurrences scanned * depth).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

namespace apls::draft {

struct LookupMatch {
    int32_t n = 0;  // length of the n-gram matched; 0: none
    // What followed each earlier occurrence scanned (most recent first; up to `depth` tokens,
    // fewer where the text ends), one entry per occurrence: equal continuations repeat, so the
    // caller can count how many occurrences support each.
    std::vector<std::vector<int32_t>> continuations;
};

class PromptLookup {
public:
    // n-grams of n_min..n_max tokens (1 <= n_min <= n_max <= 4); tokens must be in [0, 2^16)
    // for n_max = 4, else [0, 2^21) (the n-gram is packed into a 64-bit key).
    explicit PromptLookup(int32_t n_min = 1, int32_t n_max = 3);

    void clear();
    void append(const int32_t* tokens, int32_t n);  // INVALID_ARGUMENT for a token out of range
    // Continuations of up to max_occurrences earlier occurrences of the longest matching n-gram.
    LookupMatch find(int32_t max_occurrences, int32_t depth) const;
    const std::vector<int32_t>& text() const { return text_; }

private:
    uint64_t key(int32_t end, int32_t n) const;  // the n-gram text_[end - n + 1 .. end]

    int32_t n_min_, n_max_;
    std::vector<int32_t> text_;
    std::vector<std::unordered_map<uint64_t, std::vector<int32_t>>> index_;  // [n - 1]: n-gram -> end positions
};

}  // namespace apls::draft
