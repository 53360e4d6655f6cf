// suffix_index.h — a suffix automaton over the session's texts (earlier outputs and the current
// context), giving the continuations of the text's longest repeated suffix with their counts.
//
// A suffix automaton (Blumer et al.) has one state per class of substrings with the same set of
// end positions; following transition c from the state of u reaches the state of u·c, and each
// state counts its end positions (count(u·c) = occurrences of u·c in the indexed text). It grows
// online, amortized O(1) states per token (plus the count updates along suffix links).
//
// Texts are documents: end_document() appends a separator of its own (a negative token that
// occurs once), so no match crosses from one document into the next. The current document is
// the one being appended to; match() finds its longest suffix that occurred before with a token
// after it, and children() lists the tokens that followed, with counts: the continuations of
// SuffixDecoding / SAM-Decoding, ranked by frequency.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace apls::draft {

struct SuffixChild {
    int32_t token;  // >= 0; separators are left out
    int32_t count;  // occurrences of (the state's string)·token
    int32_t state;  // the state reached
};

class SuffixIndex {
public:
    SuffixIndex();

    void clear();
    void append(int32_t token);  // token >= 0, else INVALID_ARGUMENT
    void end_document();         // later tokens start a new document
    int64_t size() const { return n_tokens_; }  // tokens appended (separators included)

    // The state of the longest suffix of the current document that occurred earlier with a
    // token after it (its length: length()), or 0 (the empty string) when none did.
    int32_t match() const;
    int32_t length(int32_t state) const { return st_[state].len; }
    // Continuations of `state`, most frequent first (ties: lower token first), and the total
    // count of every continuation (separators included: the occurrences that ended a document).
    std::vector<SuffixChild> children(int32_t state, int32_t* total = nullptr) const;

private:
    struct State {
        int32_t len = 0;   // longest string of the class
        int32_t link = -1; // suffix link
        int32_t count = 0; // end positions
        std::vector<std::pair<int32_t, int32_t>> next;  // (token, state), sorted by token
    };
    int32_t next_of(int32_t s, int32_t token) const;  // -1 if none
    void set_next(int32_t s, int32_t token, int32_t to);
    void extend(int32_t token);

    std::vector<State> st_;
    int32_t last_ = 0;
    int32_t n_docs_ = 0;
    int64_t n_tokens_ = 0;
};

}  // namespace apls::draft
