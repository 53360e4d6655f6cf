// token_tree.h — the token tree of one speculative round: candidates from every draft source
// merged into one trie under the round's `last` token, then cut to the nodes worth verifying.
//
// Each node is a token that may follow its parent. Sources add nodes with an estimate of the
// probability that the verifier picks the node's token after its parent (p_accept, from the
// measured acceptance of that source: acceptance.h); a node proposed by several sources keeps
// the largest estimate and every proposal (sampling needs each one's draft distribution). The
// probability that a node is accepted is then the product of p_accept along its path (p_path),
// and the expected tokens of a round are 1 + the sum of p_path over the nodes verified. So the
// best n nodes to verify are the n largest p_path (a set closed under ancestors, as p_path never
// grows along a path), and n is chosen against the verify cost of n + 1 tokens (best_size).
#pragma once

#include <cstdint>
#include <vector>

namespace apls::draft {

// The draft sources, combinable in one tree. Bit i of a source mask is Source(i).
enum class Source : uint8_t { SKIP = 0, LOOKUP = 1, SUFFIX = 2, RECYCLE = 3 };
constexpr int kNumSources = 4;
constexpr uint32_t kAllSources = (1u << kNumSources) - 1;
const char* source_name(Source s);  // "skip", "lookup", "suffix", "recycle"

// One source's claim on a node: the cell of the source's acceptance table that judges it
// (acceptance.h), and, for a token drawn from a draft distribution (sampling with the layer-skip
// draft), the index of that distribution in the round's list; -1: proposed deterministically.
struct Proposal {
    Source source;
    int32_t cell;
    int32_t q = -1;
};

struct TreeNode {
    int32_t token;
    int32_t parent;    // node index; -1 = the root (the round's `last` token, not a node)
    int32_t depth;     // 1 for the root's children: the node's position is the root's + depth
    float p_raw;       // the largest of its proposals' estimates (from each source's cells)
    float p_accept;    // estimated P(verifier picks token | parent accepted): p_raw, calibrated
    float p_path = 0;  // product of p_accept from the root (filled by TokenTree::finish)
    std::vector<Proposal> proposals;
    std::vector<int32_t> children;  // node indices, in the order added
    int32_t top = 0;                // the proposal whose estimate is p_raw
};

class TokenTree {
public:
    static constexpr int32_t kRoot = -1;

    // The child of `parent` (kRoot or a node) with `token`, created if absent; p_raw (and
    // p_accept) become the larger of the existing and the given estimate. Returns the node index
    // (parents always come before their children).
    int32_t add(int32_t parent, int32_t token, float p_accept, const Proposal& pr);
    void set_p_accept(int32_t i, float p) { nodes_[i].p_accept = p; }
    // How many different sources proposed node i, and which gave the largest estimate.
    int32_t n_sources(int32_t i) const;
    Source top_source(int32_t i) const;
    int32_t child(int32_t parent, int32_t token) const;  // -1 if absent
    const std::vector<int32_t>& children(int32_t parent) const {
        return parent == kRoot ? roots_ : nodes_[parent].children;
    }
    const TreeNode& node(int32_t i) const { return nodes_[i]; }
    int32_t size() const { return static_cast<int32_t>(nodes_.size()); }
    bool empty() const { return nodes_.empty(); }
    void clear();

    // Fill p_path of every node (call after the last add).
    void finish();
    // The n nodes with the largest p_path (ties: shallower first, then earlier): a set closed
    // under ancestors. Requires finish().
    std::vector<int32_t> best(int32_t n) const;
    // The likeliest path: from the root, the child with the largest p_path, down to a leaf.
    std::vector<int32_t> best_path() const;
    // The nodes in `keep` (closed under ancestors) as a new tree in depth-first order, each node's
    // children sorted by p_path: the most probable path comes first, so an accepted chain usually
    // is a prefix of the verify batch. `kept` (optional) receives, for each node of the new tree,
    // its index here.
    TokenTree subtree(const std::vector<int32_t>& keep, std::vector<int32_t>* kept = nullptr) const;
    // p_path of every node, largest first (requires finish()).
    std::vector<float> sorted_p_path() const;
    // True when no node has a sibling (the tree is one chain).
    bool is_chain() const;
    // Tokens from the root down to node i (inclusive).
    std::vector<int32_t> path_tokens(int32_t i) const;

private:
    bool ranks_above(int32_t a, int32_t b) const;  // the order of best()

    std::vector<TreeNode> nodes_;
    std::vector<int32_t> roots_;
};

// The number of nodes n in [0, sorted.size()] that maximizes the expected tokens per cost of a
// round, (1 + sum of the n largest p_path) / cost[n], where cost[n] is the verify cost of a batch
// of n + 1 tokens relative to one plain step (cost[0] = 1: a plain step) and `sorted` is
// sorted_p_path(). Entries beyond cost's end are not considered; an empty cost keeps every node.
// The smallest n wins ties, so a round drafts nothing unless drafting is expected to pay.
int32_t best_size(const std::vector<float>& sorted, const std::vector<float>& cost);

}  // namespace apls::draft
