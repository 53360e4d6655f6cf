// visibility.h — which cache entries a query attends to: the one rule of every backend's
// attention (cpu/attention.cpp, cuda/attention.cu, cuda/prompt_attention.cu), compiled for the
// host and, under nvcc, for the device. Plain data only.
//
// Token i of a decode call (position pos, sequence s) sees entry j of s's entry list, whose
// position is p, when
//   - 0 <= p <= pos (causal; p < 0 marks an empty slot), and
//   - j < n_old, an entry held before the call: the view keeps it (no view: always; an explicit
//     list: p is listed; else p < n_sink or p > pos - n_window, n_window < 0 meaning no window);
//   - j >= n_old, an entry of the call itself: always in a causal batch; in a tree batch only
//     the token's ancestors and itself (batch index j - n_old: a tree is one sequence, appended
//     in batch order).
// Entries are visited in entry order, so a tree node sees the cache and then its ancestors in
// position order — the entries, order and arithmetic of the same path decoded as a chain.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define APLS_HD __host__ __device__ __forceinline__
#else
#define APLS_HD inline
#endif

namespace apls {

// Most tokens of a tree batch: a token's ancestors are one 64-bit mask.
constexpr int32_t kMaxTreeNodes = 64;

// A decode call's view of the entries held before it (kv_cache.h KVView, resolved).
struct ViewRule {
    int32_t n_sink = 0;
    int32_t n_window = -1;
    bool on = false;             // a view restricts the old entries
    bool explicit_list = false;  // only listed positions (the caller looks membership up)
};

// One query token's part of the rule.
struct QueryRule {
    int32_t pos = 0;    // the token's position
    int32_t n_old = 0;  // entries its sequence held before the call
    uint64_t anc = 0;   // tree: bit b set when batch token b is an ancestor of the token or itself
    bool tree = false;  // a tree batch (else the call's own entries are seen causally)
};

// Whether the view keeps an old entry at position p for a query at pos_q; listed: p is on the
// view's explicit list (read only for explicit views).
APLS_HD bool view_keeps(const ViewRule& v, int32_t p, int32_t pos_q, bool listed) {
    if (!v.on) return true;
    if (v.explicit_list) return listed;
    return p < v.n_sink || v.n_window < 0 || p > pos_q - v.n_window;
}

// Whether query q sees entry j (position p) of its sequence's entry list (see the top).
APLS_HD bool entry_visible(const ViewRule& v, const QueryRule& q, int32_t j, int32_t p, bool listed) {
    if (p < 0 || p > q.pos) return false;
    if (j >= q.n_old) return !q.tree || (j - q.n_old < 64 && ((q.anc >> (j - q.n_old)) & 1u) != 0);
    return view_keeps(v, p, q.pos, listed);
}

}  // namespace apls
