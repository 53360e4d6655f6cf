// batch.cpp — tree checks and the per-call visibility; see batch.h.
#include "batch.h"

#include "common.h"

namespace apls {

std::vector<int32_t> tree_positions(const std::vector<int32_t>& parent, int32_t next_pos) {
    std::vector<int32_t> pos(parent.size());
    for (size_t i = 0; i < parent.size(); ++i) {
        const int32_t p = parent[i];
        if (p < -1 || p >= static_cast<int32_t>(i))
            fail(APLS_STATUS_INVALID_ARGUMENT, "tree batch: parent[", i, "] = ", p,
                 " (must be -1 for a root or the batch index of an earlier token)");
        pos[i] = p < 0 ? next_pos : pos[p] + 1;
    }
    return pos;
}

void check_tree(const Batch& b, const KVCache& kv) {
    const int32_t n = b.size();
    if (static_cast<int32_t>(b.parent.size()) != n)
        fail(APLS_STATUS_INVALID_ARGUMENT, "tree batch: ", b.parent.size(), " parents for ", n, " tokens");
    if (n > kMaxTreeNodes)
        fail(APLS_STATUS_INVALID_ARGUMENT, "tree batch of ", n, " tokens: a tree holds at most ", kMaxTreeNodes);
    for (int32_t i = 1; i < n; ++i)
        if (b.seq[i] != b.seq[0])
            fail(APLS_STATUS_INVALID_ARGUMENT, "tree batch: token ", i, " is in sequence ", b.seq[i], ", token 0 in ",
                 b.seq[0], " (a tree is one sequence)");
    const std::vector<int32_t> want = tree_positions(b.parent, kv.seq_next_pos(b.seq[0]));
    for (int32_t i = 0; i < n; ++i)
        if (b.pos[i] != want[i])
            fail(APLS_STATUS_INVALID_ARGUMENT, "tree batch: token ", i, " is at position ", b.pos[i], " but its ",
                 b.parent[i] < 0 ? str("sequence continues at ", want[i]) : str("parent is at ", want[i] - 1));
}

Visibility Visibility::resolve(const Batch& b, const KVView* view, const KVCache& kv) {
    Visibility v;
    v.view = view;
    if (view) v.rule = view->rule();
    v.n_old.resize(kv.n_seq_max());
    for (uint32_t s = 0; s < kv.n_seq_max(); ++s) v.n_old[s] = kv.seq_len(static_cast<int32_t>(s));
    if (b.tree()) {
        v.anc.resize(b.size());
        for (int32_t i = 0; i < b.size(); ++i)
            v.anc[i] = (b.parent[i] < 0 ? 0 : v.anc[b.parent[i]]) | (uint64_t{1} << i);
    }
    return v;
}

}  // namespace apls
