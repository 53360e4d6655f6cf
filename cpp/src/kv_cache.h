// kv_cache.h — the block KV cache: memory only, no policy.
//
// All K/V storage is preallocated at context creation: for every layer, K and V are
// (n_blocks * block_size, kv_dim) arrays of F32 or F16. A block is block_size consecutive slots.
// Blocks come from a pool with reference counts; each sequence owns a block table (its blocks
// in order), so logical entry j of a sequence lives in slot table[j / B] * B + j % B. Each slot
// records the position of the token it holds (-1 for a hole), which is what attention masks on.
//
// Speculation, streaming and views are composed from these generic operations by the callers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace apls {

// A view of a sequence's cache for attention, without copying: a query at position p sees the
// entries whose position is < n_sink, or in (p - n_window, p] (n_window < 0: no window limit),
// or — when `positions` is non-empty — exactly the listed positions that are <= p.
struct KVView {
    int32_t n_sink = 0;
    int32_t n_window = -1;
    std::vector<int32_t> positions;  // sorted, explicit set; empty = use n_sink/n_window

    bool sees(int32_t pos, int32_t pos_q) const;
};

class KVCache {
public:
    KVCache(int32_t n_layer, int32_t kv_dim, uint32_t n_ctx, uint32_t block_size, uint32_t n_seq_max, bool f16);

    // ---- storage -------------------------------------------------------------------------
    bool f16() const { return f16_; }
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
    int32_t seq_len(int32_t seq) const { return seqs_[seq].n; }         // entries (slots) held
    int32_t seq_next_pos(int32_t seq) const { return seqs_[seq].next_pos; }
    const std::vector<int32_t>& block_table(int32_t seq) const { return seqs_[seq].blocks; }
    int64_t slot_of(int32_t seq, int32_t j) const {
        return static_cast<int64_t>(seqs_[seq].blocks[j / block_size_]) * block_size_ + j % block_size_;
    }

    // Append n entries (token i to seq[i] at pos[i]) and return their slots. All or nothing:
    // throws APLS_STATUS_KV_FULL, leaving the cache unchanged, if the pool has too few blocks.
    void append(const int32_t* seq, const int32_t* pos, int32_t n, int64_t* slots_out);
    // Keep the first n entries of seq (n <= seq_len); freed blocks return to the pool.
    void truncate(int32_t seq, int32_t n);
    void clear();

    uint32_t n_free_blocks() const { return static_cast<uint32_t>(free_.size()); }
    int32_t ref_count(int32_t block) const { return refs_[block]; }

private:
    struct Seq {
        std::vector<int32_t> blocks;  // block table
        int32_t n = 0;                // entries held
        int32_t next_pos = 0;         // position of the next appended token when none is given
    };
    int32_t take_block();
    void release_block(int32_t block);

    int32_t n_layer_, kv_dim_;
    uint32_t block_size_, n_blocks_;
    bool f16_;
    std::vector<std::vector<uint8_t>> k_, v_;  // per layer: (n_blocks * block_size, kv_dim)
    std::vector<int32_t> pos_;                 // (n_blocks * block_size): position held, -1 = hole
    std::vector<int32_t> refs_;                // (n_blocks): sequences using the block
    std::vector<int32_t> free_;                // free block ids (stack)
    std::vector<Seq> seqs_;
};

}  // namespace apls
