// kv_cache.h — the block KV cache: memory only, no policy.
//
// All K/V storage is preallocated at context creation: for every layer, K and V are
// (n_blocks * block_size, kv_dim) arrays of F32 or F16. A block is block_size (B) consecutive
// slots. Blocks come from a pool with reference counts; each sequence owns a block table (its
// blocks in order), so logical entry j of a sequence lives in slot table[j / B] * B + j % B.
// Each slot records the position of the token it holds (-1 = empty), which attention masks on.
//
// Operations on a sequence: append (decode), truncate, delete a position range (optionally
// shifting later positions down and re-rotating their keys), fork (copy-on-write sharing),
// keep, clear, statistics. Speculation, streaming and views are composed from these by callers.
//
// Copy-on-write. A fork shares every block of the source (reference count + 1), copying nothing.
// A block with more than one reference is never written: before an append lands in a shared,
// partially filled last block, and before a delete/shift rewrites entries of a shared block,
// that block is copied to a fresh block (B rows of K and V for every layer) owned by the writer.
//
// Compaction is automatic (decided here): a delete removes its entries from the block table at
// once, moving every later entry of the sequence down so that entries stay dense (no holes).
//   - Cost: one K row and one V row copy per layer for each moved entry, i.e.
//     (entries after the range) * n_layer * 2 * kv_dim * (2 or 4) bytes, plus a copy of each
//     shared block that gets rewritten. A range that starts on a block boundary and covers a
//     whole number of blocks is dropped from the table without copying anything.
//   - Gain: a sequence of n entries always holds exactly ceil(n / B) blocks (less than one block
//     above the ideal), attention never scans holes, entries stay in position order, and
//     attention over a view finds its entries by binary search (see cpu/attention.h).
//
// Entry order. Entries are kept in the order appended. A sequence whose positions are
// non-decreasing in entry order (the normal case; deletes and shifts preserve it) is "sorted":
// lookups by position are binary searches. Appending a position below the last one (a token
// tree's second branch, say) makes it unsorted and lookups fall back to scans; the cache keeps
// the length of the sorted prefix, so a truncate or keep_path back to it makes it sorted again.
//
// Token trees (batch.h). A tree verify appends every node; keep_path then keeps the prefix and
// the accepted path, moved down to consecutive entries (K/V rows copied; entries already in
// place, such as a path that is the batch's first nodes, are not copied), and drops the rest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "rope.h"
#include "visibility.h"

namespace apls {

// A view of a sequence's cache for attention, without copying. It restricts the entries that
// were in the cache before the decode call (entries appended by the call itself are always
// seen causally, as in a cache that held only the view's entries):
//   - explicit (positions non-empty): exactly the listed positions that are <= p, where p is
//     the query's position;
//   - else sink + window: positions < n_sink, or in (p - n_window, p] (n_window < 0: no limit).
// The rule itself is visibility.h's, for every backend; a decode call resolves the view into a
// Visibility (batch.h) and leaves it as the caller gave it.
struct KVView {
    int32_t n_sink = 0;
    int32_t n_window = -1;
    std::vector<int32_t> positions;  // strictly increasing; empty = use n_sink/n_window

    bool explicit_list() const { return !positions.empty(); }
    ViewRule rule() const;
    bool lists(int32_t p) const;  // p is on the explicit list (binary search)
};

// What a delete/shift needs to re-rotate cached keys: RoPE on adjacent pairs of the first
// n_rot dimensions of each of n_head_kv heads of head_dim, theta_i = pos * freq_scale *
// base^(-2i / n_rot). n_rot == 0: unknown (a shift then fails).
struct RopeParams {
    int32_t n_rot = 0;
    int32_t head_dim = 0;
    int32_t n_head_kv = 0;
    float base = 10000.0f;
    float freq_scale = 1.0f;
    RopeStyle style = RopeStyle::NORM;  // pair layout (rope.h): NEOX rotates (x[i], x[i + n_rot/2])
};

// Pool occupancy. tokens: occupied slots (a slot shared by several sequences counts once);
// entries: sum of sequence lengths (shared entries count once per sequence); holes: empty
// slots inside used blocks; fragmentation = 1 - tokens / (blocks_used * block_size) (0 when
// nothing is used).
struct KVStats {
    int32_t n_blocks = 0, block_size = 0, blocks_used = 0, blocks_free = 0, blocks_shared = 0;
    int64_t tokens = 0, entries = 0, holes = 0;
    int32_t n_seq_used = 0;
    double fragmentation = 0.0;
};

// Where K/V rows live when not in host memory (a GPU backend). The cache keeps every piece of
// bookkeeping (block tables, positions, reference counts) on the host and asks the store to
// move data: copy_slot copies the K and V rows of every layer; rerotate re-applies RoPE to the
// K rows of every layer (cos_sin: n_rot values as cpu::rope_table gives them). Operations may be
// queued; flush() is called at the end of every cache operation that issued some, and the store
// must apply them in the order issued.
class KVStore {
public:
    virtual ~KVStore() = default;
    virtual void copy_slot(int64_t dst, int64_t src) = 0;
    virtual void rerotate(int64_t slot, const float* cos_sin) = 0;
    virtual void flush() = 0;
};

class KVCache {
public:
    // host_storage = false: no host K/V arrays; a KVStore must be attached before use.
    KVCache(int32_t n_layer, int32_t kv_dim, uint32_t n_ctx, uint32_t block_size, uint32_t n_seq_max, bool f16,
            bool host_storage = true);
    void attach_store(KVStore* store) { store_ = store; }
    bool host_storage() const { return store_ == nullptr; }

    void set_rope(const RopeParams& rope) { rope_ = rope; }
    const RopeParams& rope() const { return rope_; }

    // ---- storage -------------------------------------------------------------------------
    bool f16() const { return f16_; }
    int32_t n_layer() const { return n_layer_; }
    int32_t kv_dim() const { return kv_dim_; }
    uint32_t block_size() const { return block_size_; }
    uint32_t n_blocks() const { return n_blocks_; }
    uint32_t capacity() const { return n_blocks_ * block_size_; }  // slots
    size_t row_bytes() const { return static_cast<size_t>(kv_dim_) * (f16_ ? 2 : 4); }
    uint8_t* k_row(int32_t layer, int64_t slot) { return k_[layer].data() + slot * row_bytes(); }
    uint8_t* v_row(int32_t layer, int64_t slot) { return v_[layer].data() + slot * row_bytes(); }
    const uint8_t* k_row(int32_t layer, int64_t slot) const { return k_[layer].data() + slot * row_bytes(); }
    const uint8_t* v_row(int32_t layer, int64_t slot) const { return v_[layer].data() + slot * row_bytes(); }
    int32_t slot_pos(int64_t slot) const { return pos_[slot]; }

    // ---- sequences -----------------------------------------------------------------------
    uint32_t n_seq_max() const { return static_cast<uint32_t>(seqs_.size()); }
    bool valid_seq(int32_t seq) const { return seq >= 0 && seq < static_cast<int32_t>(seqs_.size()); }
    int32_t seq_len(int32_t seq) const { return seqs_[seq].n; }         // entries held
    int32_t seq_next_pos(int32_t seq) const { return seqs_[seq].next_pos; }  // max position + 1, 0 if empty
    bool seq_sorted(int32_t seq) const { return seqs_[seq].n_sorted == seqs_[seq].n; }
    int32_t sorted_prefix(int32_t seq) const { return seqs_[seq].n_sorted; }  // leading entries in order
    int32_t seq_pos_min(int32_t seq) const;  // -1 if empty
    int32_t seq_pos_max(int32_t seq) const;  // -1 if empty
    const std::vector<int32_t>& block_table(int32_t seq) const { return seqs_[seq].blocks; }
    int64_t slot_of(int32_t seq, int32_t j) const {
        return static_cast<int64_t>(seqs_[seq].blocks[j / block_size_]) * block_size_ + j % block_size_;
    }
    int32_t entry_pos(int32_t seq, int32_t j) const { return pos_[slot_of(seq, j)]; }
    // First entry whose position is >= p among the first `end` entries (default all), which
    // must be sorted (end <= sorted_prefix): binary search, O(log n).
    int32_t lower_entry(int32_t seq, int32_t p, int32_t end = -1) const;
    // The entry holding position p, or -1 (binary search when sorted, else a scan).
    int32_t find_pos(int32_t seq, int32_t p) const;
    // Throws APLS_STATUS_INVALID_ARGUMENT unless `view` is well formed (n_sink >= 0; positions
    // strictly increasing, >= 0) and every listed position is held by seq. O(m log n).
    void check_view(const KVView& view, int32_t seq) const;

    // Append n entries (token i to seq[i] at pos[i]) and return their slots. Copies a shared
    // partially filled last block first (copy-on-write). All or nothing: throws
    // APLS_STATUS_KV_FULL, leaving the cache unchanged, if the pool has too few blocks.
    void append(const int32_t* seq, const int32_t* pos, int32_t n, int64_t* slots_out);
    // Keep the first n entries of seq (n <= seq_len); freed blocks return to the pool.
    void truncate(int32_t seq, int32_t n);
    // Remove the entries whose position is in [p0, p1), 0 <= p0 < p1 <= seq_next_pos, and
    // compact (see above). shift: entries at positions >= p1 move to p - (p1 - p0) and their
    // keys are re-rotated by -(p1 - p0) in every layer. KV_FULL (nothing changed) if shared
    // blocks that must be rewritten cannot be copied for lack of free blocks.
    void seq_delete(int32_t seq, int32_t p0, int32_t p1, bool shift);
    // dst becomes a copy-on-write copy of src (dst's previous entries are dropped). Needs one
    // free block when src's last block is partial (the copy the next append to either will
    // make): KV_FULL, nothing changed, otherwise.
    void fork(int32_t src, int32_t dst);
    // After a tree verify: keep entries [0, n_keep) of seq, then entries[0..n) (strictly
    // increasing indices >= n_keep at consecutive positions continuing the kept prefix: the
    // accepted path) as entries n_keep, n_keep + 1, ..., and drop every other entry (the
    // rejected nodes: their blocks return to the pool). Cost: one K and one V row copy per layer
    // for each path entry not already in place. INVALID_ARGUMENT naming the problem, or KV_FULL
    // when blocks shared with a fork must be copied and none is free; nothing changed then.
    void keep_path(int32_t seq, int32_t n_keep, const int32_t* entries, int32_t n);
    void keep(int32_t seq);       // drop every other sequence
    void clear_seq(int32_t seq);  // drop one sequence
    void clear();                 // drop everything

    uint32_t n_free_blocks() const { return static_cast<uint32_t>(free_.size()); }
    // Entries seq can still append: its last block's free slots and every free block.
    int32_t room(int32_t seq) const {
        return static_cast<int32_t>(free_.size() * block_size_ + seqs_[seq].blocks.size() * block_size_) - seqs_[seq].n;
    }
    int32_t ref_count(int32_t block) const { return refs_[block]; }
    KVStats stats() const;
    // Debug: throws APLS_STATUS_INTERNAL naming the first violated invariant (reference counts
    // equal table occurrences, free list = unreferenced blocks, ceil(n / B) blocks per sequence,
    // no holes, sorted flag and next_pos true, empty slots outside sequences).
    void check_invariants() const;

private:
    struct Seq {
        std::vector<int32_t> blocks;  // block table
        int32_t n = 0;                // entries held
        int32_t next_pos = 0;         // max position + 1 (0 if empty)
        int32_t n_sorted = 0;         // the first n_sorted entries have non-decreasing positions
    };
    void check_seq(int32_t seq, const char* op) const;
    int32_t take_block();
    void release_block(int32_t block);
    bool last_block_shared_partial(const Seq& s) const;
    // Replace table entry bi of seq by a private copy of its block (rows of entries it holds).
    void make_private(int32_t seq, size_t bi);
    void copy_entry(int64_t dst_slot, int64_t src_slot);  // K, V rows of every layer and position
    void shrink(int32_t seq, int32_t n);  // drop entries >= n (no checks)
    void rerotate(int64_t slot, const float* cos_sin);  // K rows of every layer
    void refresh_next_pos(Seq& s);  // next_pos and n_sorted after entries were removed or moved

    int32_t n_layer_, kv_dim_;
    uint32_t block_size_, n_blocks_;
    bool f16_;
    RopeParams rope_;
    std::vector<std::vector<uint8_t>> k_, v_;  // per layer: (n_blocks * block_size, kv_dim)
    std::vector<int32_t> pos_;                 // (n_blocks * block_size): position held, -1 = empty
    std::vector<int32_t> refs_;                // (n_blocks): sequences using the block
    std::vector<int32_t> free_;                // free block ids (stack)
    std::vector<Seq> seqs_;
    KVStore* store_ = nullptr;  // device storage, or nullptr: k_ and v_ hold the data
};

}  // namespace apls
