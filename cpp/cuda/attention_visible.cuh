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

}  // namespace apls::cuda
