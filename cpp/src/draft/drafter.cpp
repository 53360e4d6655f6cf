// drafter.cpp — the model-free sources' candidates, best-first; learning from outcomes; see drafter.h.
#include "draft/drafter.h"

#include <algorithm>
#include <queue>

#include "common.h"

namespace apls::draft {

namespace {

// The suffix index keeps the session's texts up to this many tokens (about 100 bytes per token);
// past it, it starts again from the current text.
constexpr int64_t kMaxSuffixTokens = 1 << 18;
// Candidates less likely than this to be accepted are not expanded.
constexpr float kMinPath = 1e-3f;

// A candidate waiting in a source's best-first expansion. `at` is what the source expands it
// from (a node of the lookup trie, a suffix-automaton state, the token itself for recycling).
struct Pending {
    float p_path;
    int32_t depth;
    int32_t parent;  // tree node (TokenTree::kRoot for the root)
    int32_t token;
    int32_t cell;
    float p_accept;
    int32_t at;
    bool operator<(const Pending& o) const {  // priority_queue: the top is the largest p_path, then shallowest
        return p_path != o.p_path ? p_path < o.p_path : depth > o.depth;
    }
};

// Best-first: pop the likeliest candidate, add it to the tree, push what expand() derives from it
// (expand(node, pending, push)), until `budget` nodes were added.
template <typename Expand>
void best_first(TokenTree& tree, Source src, std::priority_queue<Pending>& q, int32_t budget, Expand expand) {
    for (int32_t added = 0; added < budget && !q.empty();) {
        const Pending c = q.top();
        q.pop();
        if (c.p_path < kMinPath) break;
        const int32_t node = tree.add(c.parent, c.token, c.p_accept, Proposal{src, c.cell});
        ++added;
        expand(node, c, [&](Pending n) { q.push(n); });
    }
}

}  // namespace

Drafter::Drafter(int32_t n_vocab, int32_t recycle_k) : n_vocab_(n_vocab), recycling_(n_vocab, recycle_k) {}

void Drafter::reset() {
    lookup_.clear();
    suffix_.clear();
    recycling_.clear();
    acceptance_.clear();
}

void Drafter::start(const int32_t* tokens, int32_t n) {
    for (int32_t i = 0; i < n; ++i)
        if (tokens[i] < 0 || tokens[i] >= n_vocab_)
            fail(APLS_STATUS_INVALID_ARGUMENT, "drafter: token ", tokens[i], " is out of range [0, ", n_vocab_, ")");
    lookup_.clear();
    if (suffix_.size() > 0) suffix_.end_document();
    if (suffix_.size() + n > kMaxSuffixTokens) suffix_.clear();
    append(tokens, n);
}

void Drafter::append(const int32_t* tokens, int32_t n) {
    for (int32_t i = 0; i < n; ++i)
        if (tokens[i] < 0 || tokens[i] >= n_vocab_)
            fail(APLS_STATUS_INVALID_ARGUMENT, "drafter: token ", tokens[i], " is out of range [0, ", n_vocab_, ")");
    lookup_.append(tokens, n);
    if (suffix_.size() + n > kMaxSuffixTokens) {  // start again from this text alone
        suffix_.clear();
        for (int32_t t : text()) suffix_.append(t);
        return;
    }
    for (int32_t i = 0; i < n; ++i) suffix_.append(tokens[i]);
}

void Drafter::propose(TokenTree& tree, uint32_t sources, const TextParams& p) const {
    if (text().empty()) return;
    if (sources & (1u << static_cast<int>(Source::LOOKUP))) propose_lookup(tree, p);
    if (sources & (1u << static_cast<int>(Source::SUFFIX))) propose_suffix(tree, p);
    if (sources & (1u << static_cast<int>(Source::RECYCLE))) propose_recycle(tree, p);
}

void Drafter::propose_lookup(TokenTree& tree, const TextParams& p) const {
    const LookupMatch m = lookup_.find(p.lookup_occurrences, p.lookup_depth);
    if (m.n == 0) return;
    // The continuations as a trie counting the occurrences behind each node.
    struct TrieNode {
        int32_t parent, token, count;
    };
    std::vector<TrieNode> trie;
    for (const auto& cont : m.continuations) {
        int32_t at = -1;
        for (int32_t tok : cont) {
            int32_t next = -1;
            for (int32_t i = 0; i < static_cast<int32_t>(trie.size()) && next < 0; ++i)
                if (trie[i].parent == at && trie[i].token == tok) next = i;
            if (next < 0) {
                next = static_cast<int32_t>(trie.size());
                trie.push_back({at, tok, 0});
            }
            ++trie[next].count;
            at = next;
        }
    }
    auto push_children = [&](int32_t at, int32_t node, float p_path, int32_t depth, auto&& push) {
        int32_t total = 0;
        for (const TrieNode& t : trie) total += t.parent == at ? t.count : 0;
        for (int32_t i = 0; i < static_cast<int32_t>(trie.size()); ++i) {
            if (trie[i].parent != at) continue;
            const int32_t cell = AcceptanceTable::text_cell(m.n, trie[i].count, total, depth + 1);
            const float pa = acceptance_.estimate(Source::LOOKUP, cell);
            push(Pending{p_path * pa, depth + 1, node, trie[i].token, cell, pa, i});
        }
    };
    std::priority_queue<Pending> q;
    push_children(-1, TokenTree::kRoot, 1.0f, 0, [&](Pending n) { q.push(n); });
    best_first(tree, Source::LOOKUP, q, p.max_candidates, [&](int32_t node, const Pending& c, auto&& push) {
        push_children(c.at, node, c.p_path, c.depth, push);
    });
}

void Drafter::propose_suffix(TokenTree& tree, const TextParams& p) const {
    const int32_t s0 = suffix_.match();
    if (s0 == 0) return;
    const int32_t len = suffix_.length(s0);
    auto push_children = [&](int32_t state, int32_t node, float p_path, int32_t depth, auto&& push) {
        if (depth >= p.suffix_depth) return;
        int32_t total = 0;
        const std::vector<SuffixChild> ch = suffix_.children(state, &total);
        for (size_t i = 0; i < ch.size() && static_cast<int32_t>(i) < p.suffix_branches; ++i) {
            const int32_t cell = AcceptanceTable::text_cell(len, ch[i].count, total, depth + 1);
            const float pa = acceptance_.estimate(Source::SUFFIX, cell);
            push(Pending{p_path * pa, depth + 1, node, ch[i].token, cell, pa, ch[i].state});
        }
    };
    std::priority_queue<Pending> q;
    push_children(s0, TokenTree::kRoot, 1.0f, 0, [&](Pending n) { q.push(n); });
    best_first(tree, Source::SUFFIX, q, p.max_candidates, [&](int32_t node, const Pending& c, auto&& push) {
        push_children(c.at, node, c.p_path, c.depth, push);
    });
}

void Drafter::propose_recycle(TokenTree& tree, const TextParams& p) const {
    auto push_children = [&](int32_t token, int32_t node, float p_path, int32_t depth, auto&& push) {
        if (depth >= p.recycle_depth) return;
        const int32_t* succ = recycling_.successors(token);
        for (int32_t r = 0; r < recycling_.k() && r < p.recycle_branches && succ[r] >= 0; ++r) {
            const int32_t cell = AcceptanceTable::recycle_cell(r, depth + 1);
            const float pa = acceptance_.estimate(Source::RECYCLE, cell);
            push(Pending{p_path * pa, depth + 1, node, succ[r], cell, pa, succ[r]});
        }
    };
    std::priority_queue<Pending> q;
    push_children(text().back(), TokenTree::kRoot, 1.0f, 0, [&](Pending n) { q.push(n); });
    best_first(tree, Source::RECYCLE, q, p.max_candidates, [&](int32_t node, const Pending& c, auto&& push) {
        push_children(c.at, node, c.p_path, c.depth, push);
    });
}

void Drafter::add_skip(TokenTree& tree, const SkipDraft& d, int32_t q_base) const {
    int32_t parent = TokenTree::kRoot;
    for (size_t i = 0; i < d.ids.size(); ++i) {
        if (d.second[i] >= 0) {
            const int32_t cell = AcceptanceTable::skip_cell(d.second_p[i], true);
            tree.add(parent, d.second[i], acceptance_.estimate(Source::SKIP, cell), Proposal{Source::SKIP, cell});
        }
        const int32_t cell = AcceptanceTable::skip_cell(d.confs[i], false);
        const int32_t q = q_base >= 0 ? q_base + static_cast<int32_t>(i) : -1;
        parent = tree.add(parent, d.ids[i], acceptance_.estimate(Source::SKIP, cell), Proposal{Source::SKIP, cell, q});
    }
}

void Drafter::calibrate(TokenTree& tree) const {
    for (int32_t i = 0; i < tree.size(); ++i)
        tree.set_p_accept(i, acceptance_.calibrated(tree.node(i).p_raw, tree.n_sources(i), tree.top_source(i)));
    // Siblings exclude each other: when their estimates sum above 1, the likeliest keeps its
    // own (measured to hold) and the others share what it leaves.
    auto normalize = [&](const std::vector<int32_t>& siblings) {
        float sum = 0.0f, top = 0.0f;
        for (int32_t c : siblings) {
            sum += tree.node(c).p_accept;
            top = std::max(top, tree.node(c).p_accept);
        }
        if (sum <= 1.0f) return;
        const float scale = (1.0f - top) / (sum - top);
        bool kept = false;
        for (int32_t c : siblings) {
            if (!kept && tree.node(c).p_accept == top) {
                kept = true;
                continue;
            }
            tree.set_p_accept(c, tree.node(c).p_accept * scale);
        }
    };
    normalize(tree.children(TokenTree::kRoot));
    for (int32_t i = 0; i < tree.size(); ++i) normalize(tree.children(i));
}

void Drafter::learn(const TokenTree& tree, const std::vector<int32_t>& path) {
    auto judge = [&](int32_t parent, int32_t accepted) {
        for (int32_t c : tree.children(parent)) {
            const TreeNode& nd = tree.node(c);
            for (const Proposal& pr : nd.proposals) acceptance_.record(pr.source, pr.cell, nd.depth, c == accepted);
            acceptance_.record_calibration(nd.p_raw, tree.n_sources(c), tree.top_source(c), c == accepted);
        }
    };
    int32_t parent = TokenTree::kRoot;
    for (size_t i = 0; i <= path.size(); ++i) {
        judge(parent, i < path.size() ? path[i] : -1);
        if (i < path.size()) parent = path[i];
    }
}

}  // namespace apls::draft
