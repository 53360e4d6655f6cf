// cpu/attention.h — attention of a GQA group of query heads over a sequence's cached entries.
#pragma once

#include <cstdint>
#include <vector>

#include "batch.h"
#include "cpu/kernels.h"
#include "cpu/kv_store.h"
#include "kv_cache.h"

namespace apls::cpu {

// The entries of a sequence that one query token sees (visibility.h: query qr of a call resolved
// into vis), as runs of consecutive entries at consecutive slots, in entry order: an entry that
// is not visible (an empty slot, a later position, outside the view, not an ancestor) ends a
// run, and so does a block boundary unless the next block happens to follow in the pool. They
// depend on the block table and the positions only, not on the layer or the head: a forward pass
// finds them once per token (find_visible) and every layer's attention reads them.
struct VisibleEntries {
    struct Run {
        int32_t j;     // first entry
        int32_t len;   // entries
        int64_t slot;  // slot of entry j (the run's slots are consecutive)
        int64_t k;     // the run's first index among the visible entries (its scores' column)
    };
    std::vector<Run> runs;
    int64_t n_vis = 0;  // visible entries
};

// Cost: proportional to the visible entries, not to the sequence's length. For a sorted prefix
// of the sequence (kv_cache.h) the visible entries are found as index ranges: binary searches
// for the causal bound and the sink/window bounds, one (usually O(1)) lookup per listed
// position. Elsewhere (unsorted entries, a tree's nodes) every entry is tested.
void find_visible(const KVCache& kv, int32_t seq, const Visibility& vis, const QueryRule& qr, VisibleEntries& out);

// For each of n_q query heads that share one KV head (GQA): out (hd) = sum_j softmax_j(q . K_j
// * scale) V_j over the visible entries ve of a sequence in `layer` (find_visible); store: their
// rows. q and out are
// (n_q, hd), head r at q + r * hd; kv_off: offset of the KV head inside a cached row.
// Entries are visited in block-table order, so the result for a query does not depend on what
// else is in the batch, nor on whether a view hides other entries, nor on the tree around a
// node (a node sees the cache, then its ancestors: the entries and order of its path as a chain).
// Each K/V row is loaded once for all n_q heads, entries are processed as runs of consecutive
// slots (a block at a time), scores, exp and the weighted sum are vectorised
// (KernelTable::attn_*). A head's result depends only on its visible entries in block-table
// order, never on n_q, on which other heads share the call, or on how entries fall into blocks,
// so tasks may group heads freely without breaking batch invariance. Scratch is per thread
// (grown as needed).
void attend_group(const KernelTable& kt, const HostKVStore& store, int32_t layer, const VisibleEntries& ve,
                  const float* q, int64_t n_q, int64_t kv_off, int64_t hd, float scale, float* out);

// attend_group for n_tok query tokens of one call in the same sequence (visible entries ve[t];
// token t's heads at q + t * q_stride, its output at out + t * out_stride), each giving exactly
// attend_group's result: the entries are cut into tiles of 128 and every token takes a tile's K
// (then V) rows in turn, so a verify batch or a prompt reads the sequence's K/V from memory once
// per call instead of once per token (a cut only splits a run of rows, which never changes a
// result).
void attend_tokens(const KernelTable& kt, const HostKVStore& store, int32_t layer, const VisibleEntries* ve,
                   int32_t n_tok, const float* q, int64_t q_stride, int64_t n_q, int64_t kv_off, int64_t hd,
                   float scale, float* out, int64_t out_stride);

}  // namespace apls::cpu
