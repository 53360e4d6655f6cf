// token_tree.cpp — the trie of a round's candidates and its cut; see token_tree.h.
#include "draft/token_tree.h"

#include <algorithm>
#include <numeric>

namespace apls::draft {

const char* source_name(Source s) {
    switch (s) {
        case Source::SKIP:
            return "skip";
        case Source::LOOKUP:
            return "lookup";
        case Source::SUFFIX:
            return "suffix";
        case Source::RECYCLE:
            return "recycle";
    }
    return "?";
}

void TokenTree::clear() {
    nodes_.clear();
    roots_.clear();
}

int32_t TokenTree::child(int32_t parent, int32_t token) const {
    for (int32_t c : children(parent))
        if (nodes_[c].token == token) return c;
    return -1;
}

int32_t TokenTree::add(int32_t parent, int32_t token, float p_accept, const Proposal& pr) {
    int32_t i = child(parent, token);
    if (i < 0) {
        i = size();
        const int32_t depth = parent == kRoot ? 1 : nodes_[parent].depth + 1;
        nodes_.push_back(TreeNode{token, parent, depth, p_accept, p_accept, 0.0f, {}, {}, 0});
        (parent == kRoot ? roots_ : nodes_[parent].children).push_back(i);
    } else if (p_accept > nodes_[i].p_raw) {
        nodes_[i].p_raw = nodes_[i].p_accept = p_accept;
        nodes_[i].top = static_cast<int32_t>(nodes_[i].proposals.size());
    }
    nodes_[i].proposals.push_back(pr);
    return i;
}

int32_t TokenTree::n_sources(int32_t i) const {
    uint32_t seen = 0;
    for (const Proposal& pr : nodes_[i].proposals) seen |= 1u << static_cast<int>(pr.source);
    return __builtin_popcount(seen);
}

Source TokenTree::top_source(int32_t i) const { return nodes_[i].proposals[nodes_[i].top].source; }

void TokenTree::finish() {
    for (TreeNode& nd : nodes_)  // parents precede children
        nd.p_path = nd.p_accept * (nd.parent == kRoot ? 1.0f : nodes_[nd.parent].p_path);
}

std::vector<float> TokenTree::sorted_p_path() const {
    std::vector<float> p(nodes_.size());
    for (size_t i = 0; i < nodes_.size(); ++i) p[i] = nodes_[i].p_path;
    std::sort(p.begin(), p.end(), [](float a, float b) { return a > b; });
    return p;
}

bool TokenTree::is_chain() const {
    if (roots_.size() > 1) return false;
    for (const TreeNode& nd : nodes_)
        if (nd.children.size() > 1) return false;
    return true;
}

std::vector<int32_t> TokenTree::path_tokens(int32_t i) const {
    std::vector<int32_t> out;
    for (; i != kRoot; i = nodes_[i].parent) out.push_back(nodes_[i].token);
    std::reverse(out.begin(), out.end());
    return out;
}

bool TokenTree::ranks_above(int32_t a, int32_t b) const {
    // A parent ranks above its children (its p_path is >= theirs and it is shallower), so every
    // prefix of this order is closed under ancestors.
    const TreeNode &x = nodes_[a], &y = nodes_[b];
    if (x.p_path != y.p_path) return x.p_path > y.p_path;
    if (x.depth != y.depth) return x.depth < y.depth;
    return a < b;
}

std::vector<int32_t> TokenTree::best(int32_t n) const {
    std::vector<int32_t> order(nodes_.size());
    std::iota(order.begin(), order.end(), 0);
    n = std::clamp<int32_t>(n, 0, size());
    std::partial_sort(order.begin(), order.begin() + n, order.end(),
                      [&](int32_t a, int32_t b) { return ranks_above(a, b); });
    order.resize(n);
    return order;
}

std::vector<int32_t> TokenTree::best_path() const {
    std::vector<int32_t> path;
    for (int32_t at = kRoot;;) {
        const std::vector<int32_t>& ch = children(at);
        if (ch.empty()) return path;
        at = *std::min_element(ch.begin(), ch.end(), [&](int32_t a, int32_t b) { return ranks_above(a, b); });
        path.push_back(at);
    }
}

TokenTree TokenTree::subtree(const std::vector<int32_t>& keep, std::vector<int32_t>* kept) const {
    std::vector<uint8_t> in(nodes_.size(), 0);
    for (int32_t i : keep) in[i] = 1;
    TokenTree out;
    std::vector<int32_t> map;
    std::vector<std::pair<int32_t, int32_t>> stack;  // (index here, parent in out)
    auto push_children = [&](const std::vector<int32_t>& ch, int32_t new_parent) {
        std::vector<int32_t> c;
        for (int32_t x : ch)
            if (in[x]) c.push_back(x);
        std::sort(c.begin(), c.end(), [&](int32_t a, int32_t b) { return ranks_above(a, b); });
        for (auto it = c.rbegin(); it != c.rend(); ++it) stack.emplace_back(*it, new_parent);
    };
    push_children(roots_, kRoot);
    while (!stack.empty()) {
        const auto [old, parent] = stack.back();
        stack.pop_back();
        const TreeNode& nd = nodes_[old];
        const int32_t i = out.size();
        out.nodes_.push_back(
            TreeNode{nd.token, parent, nd.depth, nd.p_raw, nd.p_accept, nd.p_path, nd.proposals, {}, nd.top});
        (parent == kRoot ? out.roots_ : out.nodes_[parent].children).push_back(i);
        map.push_back(old);
        push_children(nd.children, i);
    }
    if (kept) *kept = std::move(map);
    return out;
}

int32_t best_size(const std::vector<float>& sorted, const std::vector<float>& cost) {
    const int32_t n_max = static_cast<int32_t>(sorted.size());
    if (cost.empty()) return n_max;
    int32_t best = 0;
    double best_rate = 1.0 / cost[0], gain = 1.0;
    for (int32_t n = 1; n <= n_max && n < static_cast<int32_t>(cost.size()); ++n) {
        gain += sorted[n - 1];
        const double rate = gain / cost[n];
        if (rate > best_rate) best_rate = rate, best = n;
    }
    return best;
}

}  // namespace apls::draft
