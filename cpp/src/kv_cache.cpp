// kv_cache.cpp — block pool and block tables; see kv_cache.h.
#include "kv_cache.h"

#include <algorithm>

#include "common.h"

namespace apls {

bool KVView::sees(int32_t pos, int32_t pos_q) const {
    if (!positions.empty()) return std::binary_search(positions.begin(), positions.end(), pos);
    return pos < n_sink || n_window < 0 || pos > pos_q - n_window;
}

KVCache::KVCache(int32_t n_layer, int32_t kv_dim, uint32_t n_ctx, uint32_t block_size, uint32_t n_seq_max, bool f16)
    : n_layer_(n_layer), kv_dim_(kv_dim), block_size_(block_size), f16_(f16) {
    if (block_size == 0) fail(APLS_STATUS_INVALID_ARGUMENT, "kv_block_size must be positive");
    if (n_seq_max == 0) fail(APLS_STATUS_INVALID_ARGUMENT, "n_seq_max must be positive");
    n_blocks_ = (n_ctx + block_size - 1) / block_size;
    const size_t bytes = static_cast<size_t>(n_blocks_) * block_size * row_bytes();
    try {
        k_.assign(n_layer, std::vector<uint8_t>(bytes));
        v_.assign(n_layer, std::vector<uint8_t>(bytes));
        pos_.assign(static_cast<size_t>(n_blocks_) * block_size, -1);
    } catch (const std::bad_alloc&) {
        fail(APLS_STATUS_OUT_OF_MEMORY, "cannot allocate a KV cache of ", n_ctx, " tokens (",
             2 * n_layer * bytes / (1 << 20), " MiB)");
    }
    refs_.assign(n_blocks_, 0);
    seqs_.resize(n_seq_max);
    clear();
}

void KVCache::clear() {
    free_.clear();
    for (int32_t b = static_cast<int32_t>(n_blocks_) - 1; b >= 0; --b) free_.push_back(b);
    std::fill(refs_.begin(), refs_.end(), 0);
    std::fill(pos_.begin(), pos_.end(), -1);
    for (Seq& s : seqs_) s = Seq{};
}

int32_t KVCache::take_block() {
    const int32_t b = free_.back();
    free_.pop_back();
    refs_[b] = 1;
    return b;
}

void KVCache::release_block(int32_t block) {
    if (--refs_[block] == 0) {
        std::fill(pos_.begin() + static_cast<int64_t>(block) * block_size_,
                  pos_.begin() + static_cast<int64_t>(block + 1) * block_size_, -1);
        free_.push_back(block);
    }
}

void KVCache::append(const int32_t* seq, const int32_t* pos, int32_t n, int64_t* slots_out) {
    // Count the new blocks every sequence needs before touching anything.
    std::vector<int32_t> added(seqs_.size(), 0);
    for (int32_t i = 0; i < n; ++i) added[seq[i]]++;
    uint64_t need = 0;
    for (size_t s = 0; s < seqs_.size(); ++s) {
        if (added[s] == 0) continue;
        const uint64_t have = seqs_[s].blocks.size();
        const uint64_t want = (static_cast<uint64_t>(seqs_[s].n) + added[s] + block_size_ - 1) / block_size_;
        need += want > have ? want - have : 0;
    }
    if (need > free_.size())
        fail(APLS_STATUS_KV_FULL, "KV cache full: the batch needs ", need, " more blocks of ", block_size_,
             " tokens but ", free_.size(), " of ", n_blocks_, " are free (n_ctx ", capacity(), ")");
    for (int32_t i = 0; i < n; ++i) {
        Seq& s = seqs_[seq[i]];
        if (s.n == static_cast<int32_t>(s.blocks.size() * block_size_)) s.blocks.push_back(take_block());
        const int64_t slot = slot_of(seq[i], s.n);
        pos_[slot] = pos[i];
        s.n++;
        s.next_pos = std::max(s.next_pos, pos[i] + 1);
        slots_out[i] = slot;
    }
}

void KVCache::truncate(int32_t seq, int32_t n) {
    Seq& s = seqs_[seq];
    if (n < 0 || n > s.n) fail(APLS_STATUS_INVALID_ARGUMENT, "truncate of sequence ", seq, " to ", n,
                              " entries: it holds ", s.n);
    for (int32_t j = n; j < s.n; ++j) pos_[slot_of(seq, j)] = -1;
    const size_t keep = (static_cast<size_t>(n) + block_size_ - 1) / block_size_;
    while (s.blocks.size() > keep) {
        release_block(s.blocks.back());
        s.blocks.pop_back();
    }
    s.n = n;
    s.next_pos = 0;
    for (int32_t j = 0; j < n; ++j) s.next_pos = std::max(s.next_pos, pos_[slot_of(seq, j)] + 1);
}

}  // namespace apls
