// cpu/attention.h — attention of a GQA group of query heads over a sequence's cached entries.
#pragma once

#include <cstdint>

#include "batch.h"
#include "cpu/kernels.h"
#include "cpu/kv_store.h"
#include "kv_cache.h"

namespace apls::cpu {

// For each of n_q query heads that share one KV head (GQA): out (hd) = sum_j softmax_j(q . K_j
// * scale) V_j over the entries j of `seq` in `layer` that the query sees (visibility.h: query
// qr of a call resolved into vis); kv: which slots hold them, store: their rows. q and out are
// (n_q, hd), head r at q + r * hd; kv_off: offset of the KV head inside a cached row.
// Entries are visited in block-table order, so the result for a query does not depend on what
// else is in the batch, nor on whether a view hides other entries, nor on the tree around a
// node (a node sees the cache, then its ancestors: the entries and order of its path as a chain).
// Each K/V row is loaded once for all n_q heads, entries are processed as runs of consecutive
// slots (a block at a time), scores, exp and the weighted sum are vectorised
// (KernelTable::attn_*). A head's result depends only on its visible entries in block-table
// order, never on n_q, on which other heads share the call, or on how entries fall into blocks,
// so tasks may group heads freely without breaking batch invariance.
// Cost: proportional to the visible entries, not to the sequence's length. For a sorted prefix
// of the sequence (kv_cache.h) the visible entries are found as index ranges: binary searches
// for the causal bound and the sink/window bounds, one (usually O(1)) lookup per listed
// position. Elsewhere (unsorted entries, a tree's nodes) every entry is tested. Scratch is per
// thread (grown as needed).
void attend_group(const KernelTable& kt, const KVCache& kv, const HostKVStore& store, int32_t layer, int32_t seq,
                  const Visibility& vis, const QueryRule& qr, const float* q, int64_t n_q, int64_t kv_off, int64_t hd,
                  float scale, float* out);

// attend_group for n_tok query tokens of one call in the same sequence (query rules qr[t]; token
// t's heads at q + t * q_stride, its output at out + t * out_stride), each giving exactly
// attend_group's result: the entries are cut into tiles of 128 and every token takes a tile's K
// (then V) rows in turn, so a verify batch or a prompt reads the sequence's K/V from memory once
// per call instead of once per token (a cut only splits a run of rows, which never changes a
// result).
void attend_tokens(const KernelTable& kt, const KVCache& kv, const HostKVStore& store, int32_t layer, int32_t seq,
                   const Visibility& vis, const QueryRule* qr, int32_t n_tok, const float* q, int64_t q_stride,
                   int64_t n_q, int64_t kv_off, int64_t hd, float scale, float* out, int64_t out_stride);

}  // namespace apls::cpu
