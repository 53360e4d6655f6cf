// cuda/attention_visible.cuh — which cache entries a token attends to (launch.h, AttentionArgs),
// shared by the attention kernels.
#pragma once

#include "cuda/launch.h"

namespace apls::cuda {

// Entry j (position p_entry) of token i's list: causal, and kept by the view when it is old.
__device__ __forceinline__ bool visible(const AttentionArgs& a, int i, int j, int p_entry) {
    const int p = a.pos[i];
    if (p_entry < 0 || p_entry > p) return false;
    if (!a.n_old || j >= a.n_old[i]) return true;
    if (a.view_mask) return a.view_mask[a.off[i] + j] != 0;
    return p_entry < a.n_sink || a.n_window < 0 || p_entry > p - a.n_window;
}

}  // namespace apls::cuda
