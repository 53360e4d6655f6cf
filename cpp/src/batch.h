// batch.h — one decode call's tokens (plain data between the C API, Context and the backends),
// token trees, and what each token's attention may see (Visibility, resolved per call).
//
// A causal batch: token i goes to seq[i] at pos[i] and sees its sequence's entries at positions
// <= pos[i] (the batch's own included). A tree batch (parent non-empty) is one sequence's token
// tree, as a verify pass of several drafted continuations needs: parent[i] is the batch index
// j < i of token i's parent, or -1 for a root (a node right after the cache); pos[i] =
// pos[parent[i]] + 1, roots at the sequence's next position. A tree token sees the sequence's
// entries held before the call (through the view, if any), its ancestors in the batch and
// itself — so a node's logits are bit-identical to those of its root-to-node path decoded as a
// chain (visibility.h).
#pragma once

#include <cstdint>
#include <vector>

#include "kv_cache.h"
#include "visibility.h"

namespace apls {

struct Batch {
    std::vector<int32_t> token, pos, seq;
    std::vector<int8_t> out;
    std::vector<int32_t> parent;  // (t) tree batch: parent batch index or -1; empty = causal batch
    int32_t size() const { return static_cast<int32_t>(token.size()); }
    bool tree() const { return !parent.empty(); }
    // One token at `pos` of `seq`, with its logits (a draft step).
    static Batch single(int32_t token, int32_t pos, int32_t seq) { return Batch{{token}, {pos}, {seq}, {1}, {}}; }
};

// Throws APLS_STATUS_INVALID_ARGUMENT naming the problem unless b's tree is well formed against
// the cache as it is before the call: at most kMaxTreeNodes tokens of one sequence, parent[i] in
// [-1, i), roots at the sequence's next position, every other node one past its parent.
void check_tree(const Batch& b, const KVCache& kv);
// Tree positions: roots at next_pos, each other node one past its parent (parent checked).
std::vector<int32_t> tree_positions(const std::vector<int32_t>& parent, int32_t next_pos);

// What the attention of one decode call may see, resolved by Context::decode before the batch's
// entries are appended; every backend reads it (visibility.h has the rule).
struct Visibility {
    const KVView* view = nullptr;  // the caller's view, or nullptr
    ViewRule rule;                 // its parameters
    std::vector<int32_t> n_old;    // (n_seq_max) entries each sequence held before the call
    std::vector<uint64_t> anc;     // (t) tree batch: ancestors-and-self mask of each token; else empty

    static Visibility resolve(const Batch& b, const KVView* view, const KVCache& kv);
    QueryRule query(const Batch& b, int32_t i) const {
        QueryRule q;
        q.pos = b.pos[i];
        q.n_old = n_old[b.seq[i]];
        q.tree = !anc.empty();
        q.anc = q.tree ? anc[i] : 0;
        return q;
    }
    // Whether position p is on the view's explicit list (binary search).
    bool listed(int32_t p) const { return view && view->lists(p); }
};

}  // namespace apls
