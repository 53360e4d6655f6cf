// cuda/attention_visible.cuh — which cache entries a token attends to: visibility.h's rule over
// the arrays of AttentionArgs (launch.h), shared by the attention kernels.
#pragma once

#include "cuda/launch.h"
#include "visibility.h"

namespace apls::cuda {

// Entry j (position p_entry) of token i's list.
__device__ __forceinline__ bool visible(const AttentionArgs& a, int i, int j, int p_entry) {
    QueryRule q;
    q.pos = a.pos[i];
    q.n_old = a.n_old ? a.n_old[i] : 0;
    q.tree = a.anc != nullptr;
    q.anc = a.anc ? a.anc[i] : 0;
    const bool listed = a.view_mask && j < q.n_old && a.view_mask[a.off[i] + j] != 0;
    return entry_visible(a.view, q, j, p_entry, listed);
}

// A tree token walks the entries it sees in the order and at the indices the same path decoded as
// a chain has them (visibility.h's contract, extended to the lanes and splits of the kernels): the
// cache entries [0, n_old), then its ancestors and itself at n_old + depth. walk_end is the end of
// that walk; walk_entry maps walk index e to the entry list (a token's ancestors, in batch order,
// are in depth order: a parent precedes its children). Causal batches walk the entry list itself.
// kTree: whether a.anc is set (a kernel parameter, so the causal kernels carry none of the walk's
// code: it cost the one-token step's attention 10%, 216 -> 240 us of SmolLM2 on the H100).
template <bool kTree>
__device__ __forceinline__ int walk_end(const AttentionArgs& a, int i) {
    if constexpr (kTree) return a.n_old[i] + __popcll(a.anc[i]);
    else return a.n_end[i];
}

template <bool kTree>
__device__ __forceinline__ int walk_entry(const AttentionArgs& a, int i, int e) {
    if (!kTree || e < a.n_old[i]) return e;
    uint64_t m = a.anc[i];
    for (int k = e - a.n_old[i]; k > 0; --k) m &= m - 1;  // drop the k shallower ancestors
    return a.n_old[i] + __ffsll(static_cast<long long>(m)) - 1;
}

}  // namespace apls::cuda
