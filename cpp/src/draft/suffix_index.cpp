// suffix_index.cpp — online suffix automaton with end-position counts; see suffix_index.h.
#include "draft/suffix_index.h"

#include <algorithm>

#include "common.h"

namespace apls::draft {

SuffixIndex::SuffixIndex() { clear(); }

void SuffixIndex::clear() {
    st_.assign(1, State{});  // state 0: the empty string
    last_ = 0;
    n_docs_ = 0;
    n_tokens_ = 0;
}

int32_t SuffixIndex::next_of(int32_t s, int32_t token) const {
    const auto& nx = st_[s].next;
    auto it = std::lower_bound(nx.begin(), nx.end(), std::make_pair(token, INT32_MIN));
    return it != nx.end() && it->first == token ? it->second : -1;
}

void SuffixIndex::set_next(int32_t s, int32_t token, int32_t to) {
    auto& nx = st_[s].next;
    auto it = std::lower_bound(nx.begin(), nx.end(), std::make_pair(token, INT32_MIN));
    if (it != nx.end() && it->first == token) it->second = to;
    else nx.insert(it, {token, to});
}

void SuffixIndex::append(int32_t token) {
    if (token < 0) fail(APLS_STATUS_INVALID_ARGUMENT, "suffix index: token ", token, " is negative");
    extend(token);
}

void SuffixIndex::end_document() {
    ++n_docs_;
    extend(-n_docs_);  // a token that occurs nowhere else
}

void SuffixIndex::extend(int32_t c) {
    const int32_t cur = static_cast<int32_t>(st_.size());
    st_.push_back(State{st_[last_].len + 1, -1, 0, {}});
    int32_t p = last_;
    while (p != -1 && next_of(p, c) < 0) {
        set_next(p, c, cur);
        p = st_[p].link;
    }
    if (p == -1) {
        st_[cur].link = 0;
    } else {
        const int32_t q = next_of(p, c);
        if (st_[p].len + 1 == st_[q].len) {
            st_[cur].link = q;
        } else {
            // Split q: the clone takes the shorter strings, which now also end at the new position.
            const int32_t clone = static_cast<int32_t>(st_.size());
            State cl = st_[q];
            cl.len = st_[p].len + 1;
            st_.push_back(std::move(cl));  // count: q's end positions (the new one is added below)
            while (p != -1 && next_of(p, c) == q) {
                set_next(p, c, clone);
                p = st_[p].link;
            }
            st_[q].link = st_[cur].link = clone;
        }
    }
    // The new end position belongs to every suffix of the text: the states on cur's link path.
    for (int32_t v = cur; v != -1; v = st_[v].link) ++st_[v].count;
    last_ = cur;
    ++n_tokens_;
}

int32_t SuffixIndex::match() const {
    // States on the link path of `last_` hold exactly the suffixes of the text, longest first;
    // the first with a transition occurred earlier with something after it. A string holding a
    // separator occurs once, so it cannot be that state: matches stay inside the document.
    for (int32_t v = st_[last_].link; v > 0; v = st_[v].link)
        if (!st_[v].next.empty()) return v;
    return 0;
}

std::vector<SuffixChild> SuffixIndex::children(int32_t state, int32_t* total) const {
    std::vector<SuffixChild> out;
    int32_t sum = 0;
    for (const auto& [tok, to] : st_[state].next) {
        sum += st_[to].count;
        if (tok >= 0) out.push_back({tok, st_[to].count, to});
    }
    std::sort(out.begin(), out.end(), [](const SuffixChild& a, const SuffixChild& b) {
        return a.count != b.count ? a.count > b.count : a.token < b.token;
    });
    if (total) *total = sum;
    return out;
}

}  // namespace apls::draft
