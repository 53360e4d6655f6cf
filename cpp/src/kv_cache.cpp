// kv_cache.cpp — block pool, block tables, copy-on-write and compaction; see kv_cache.h.
#include "kv_cache.h"

#include <algorithm>
#include <cstring>

#include "common.h"
#include "cpu/ops.h"
#include "ggml_types.h"

namespace apls {

ViewRule KVView::rule() const {
    ViewRule r;
    r.n_sink = n_sink;
    r.n_window = n_window;
    r.on = true;
    r.explicit_list = explicit_list();
    return r;
}

bool KVView::lists(int32_t p) const { return std::binary_search(positions.begin(), positions.end(), p); }

KVCache::KVCache(int32_t n_layer, int32_t kv_dim, uint32_t n_ctx, uint32_t block_size, uint32_t n_seq_max, bool f16,
                 bool host_storage)
    : n_layer_(n_layer), kv_dim_(kv_dim), block_size_(block_size), f16_(f16) {
    if (block_size == 0) fail(APLS_STATUS_INVALID_ARGUMENT, "kv_block_size must be positive");
    if (n_seq_max == 0) fail(APLS_STATUS_INVALID_ARGUMENT, "n_seq_max must be positive");
    n_blocks_ = (n_ctx + block_size - 1) / block_size;
    const size_t bytes = host_storage ? static_cast<size_t>(n_blocks_) * block_size * row_bytes() : 0;
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

// ---- pool ------------------------------------------------------------------------------------

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

void KVCache::copy_entry(int64_t dst, int64_t src) {
    pos_[dst] = pos_[src];
    if (store_) return store_->copy_slot(dst, src);
    const size_t rb = row_bytes();
    for (int32_t l = 0; l < n_layer_; ++l) {
        std::memcpy(k_row(l, dst), k_row(l, src), rb);
        std::memcpy(v_row(l, dst), v_row(l, src), rb);
    }
}

void KVCache::make_private(int32_t seq, size_t bi) {
    Seq& s = seqs_[seq];
    const int32_t old = s.blocks[bi];
    if (refs_[old] == 1) return;
    const int32_t fresh = take_block();
    const int64_t B = block_size_;
    const int64_t held = std::min<int64_t>(B, s.n - static_cast<int64_t>(bi) * B);  // entries of seq in it
    for (int64_t i = 0; i < held; ++i) copy_entry(fresh * B + i, old * B + i);
    s.blocks[bi] = fresh;
    release_block(old);  // still referenced by the other sharers
}

void KVCache::check_seq(int32_t seq, const char* op) const {
    if (!valid_seq(seq))
        fail(APLS_STATUS_INVALID_ARGUMENT, op, ": unknown sequence ", seq, " (n_seq_max ", seqs_.size(), ")");
}

// ---- lookups ---------------------------------------------------------------------------------

int32_t KVCache::lower_entry(int32_t seq, int32_t p, int32_t end) const {
    int32_t lo = 0, hi = end < 0 ? seqs_[seq].n : end;  // first entry with position >= p, positions sorted
    while (lo < hi) {
        const int32_t mid = lo + (hi - lo) / 2;
        if (entry_pos(seq, mid) < p) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

int32_t KVCache::find_pos(int32_t seq, int32_t p) const {
    const Seq& s = seqs_[seq];
    if (seq_sorted(seq)) {
        const int32_t j = lower_entry(seq, p);
        return j < s.n && entry_pos(seq, j) == p ? j : -1;
    }
    for (int32_t j = 0; j < s.n; ++j)
        if (entry_pos(seq, j) == p) return j;
    return -1;
}

void KVCache::check_view(const KVView& view, int32_t seq) const {
    check_seq(seq, "view");
    if (view.n_sink < 0) fail(APLS_STATUS_INVALID_ARGUMENT, "view: n_sink ", view.n_sink, " is negative");
    for (size_t i = 0; i < view.positions.size(); ++i) {
        const int32_t p = view.positions[i];
        if (p < 0 || (i > 0 && p <= view.positions[i - 1]))
            fail(APLS_STATUS_INVALID_ARGUMENT, "view: positions must be >= 0 and strictly increasing (entry ", i,
                 " is ", p, ")");
        if (find_pos(seq, p) < 0)
            fail(APLS_STATUS_INVALID_ARGUMENT, "view: position ", p, " is not in the cache of sequence ", seq);
    }
}

int32_t KVCache::seq_pos_min(int32_t seq) const {
    const Seq& s = seqs_[seq];
    if (s.n == 0) return -1;
    if (seq_sorted(seq)) return entry_pos(seq, 0);
    int32_t m = entry_pos(seq, 0);
    for (int32_t j = 1; j < s.n; ++j) m = std::min(m, entry_pos(seq, j));
    return m;
}

int32_t KVCache::seq_pos_max(int32_t seq) const { return seqs_[seq].next_pos - 1; }

void KVCache::refresh_next_pos(Seq& s) {
    const int32_t seq = static_cast<int32_t>(&s - seqs_.data());
    s.n_sorted = std::min(s.n_sorted, s.n);
    if (s.n == 0) {
        s.next_pos = 0;
        return;
    }
    if (s.n_sorted == s.n) {
        s.next_pos = entry_pos(seq, s.n - 1) + 1;
        return;
    }
    s.next_pos = entry_pos(seq, 0) + 1;  // one scan: the largest position and the sorted prefix
    s.n_sorted = 1;
    bool in_order = true;
    for (int32_t j = 1; j < s.n; ++j) {
        const int32_t p = entry_pos(seq, j);
        in_order = in_order && p >= entry_pos(seq, j - 1);
        s.n_sorted += in_order;
        s.next_pos = std::max(s.next_pos, p + 1);
    }
}

// ---- append / truncate -----------------------------------------------------------------------

bool KVCache::last_block_shared_partial(const Seq& s) const {
    return s.n % block_size_ != 0 && refs_[s.blocks.back()] > 1;
}

void KVCache::append(const int32_t* seq, const int32_t* pos, int32_t n, int64_t* slots_out) {
    // Count the blocks every sequence needs (new ones and copies-on-write) before touching anything.
    std::vector<int32_t> added(seqs_.size(), 0);
    for (int32_t i = 0; i < n; ++i) added[seq[i]]++;
    uint64_t need = 0;
    for (size_t s = 0; s < seqs_.size(); ++s) {
        if (added[s] == 0) continue;
        const uint64_t have = seqs_[s].blocks.size();
        const uint64_t want = (static_cast<uint64_t>(seqs_[s].n) + added[s] + block_size_ - 1) / block_size_;
        need += want > have ? want - have : 0;
        need += last_block_shared_partial(seqs_[s]) ? 1 : 0;
    }
    if (need > free_.size())
        fail(APLS_STATUS_KV_FULL, "KV cache full: the batch needs ", need, " more blocks of ", block_size_,
             " tokens but ", free_.size(), " of ", n_blocks_, " are free (n_ctx ", capacity(), ")");
    for (size_t s = 0; s < seqs_.size(); ++s)
        if (added[s] > 0 && last_block_shared_partial(seqs_[s]))
            make_private(static_cast<int32_t>(s), seqs_[s].blocks.size() - 1);
    for (int32_t i = 0; i < n; ++i) {
        Seq& s = seqs_[seq[i]];
        if (s.n == static_cast<int32_t>(s.blocks.size() * block_size_)) s.blocks.push_back(take_block());
        if (s.n_sorted == s.n && (s.n == 0 || pos[i] >= entry_pos(seq[i], s.n - 1))) s.n_sorted++;
        const int64_t slot = slot_of(seq[i], s.n);
        pos_[slot] = pos[i];
        s.n++;
        s.next_pos = std::max(s.next_pos, pos[i] + 1);
        slots_out[i] = slot;
    }
}

void KVCache::shrink(int32_t seq, int32_t n) {
    Seq& s = seqs_[seq];
    const size_t keep = (static_cast<size_t>(n) + block_size_ - 1) / block_size_;
    while (s.blocks.size() > keep) {
        release_block(s.blocks.back());
        s.blocks.pop_back();
    }
    // Empty the dropped slots of the last block when nobody else reads it.
    if (keep > 0 && refs_[s.blocks.back()] == 1)
        for (int32_t j = n; j < std::min<int32_t>(s.n, static_cast<int32_t>(keep * block_size_)); ++j)
            pos_[slot_of(seq, j)] = -1;
    s.n = n;
}

void KVCache::truncate(int32_t seq, int32_t n) {
    check_seq(seq, "truncate");
    Seq& s = seqs_[seq];
    if (n < 0 || n > s.n)
        fail(APLS_STATUS_INVALID_ARGUMENT, "truncate of sequence ", seq, " to ", n, " entries: it holds ", s.n);
    shrink(seq, n);
    refresh_next_pos(s);
}

// ---- delete / shift --------------------------------------------------------------------------

void KVCache::rerotate(int64_t slot, const float* cos_sin) {
    if (store_) return store_->rerotate(slot, cos_sin);
    float row[4096];  // kv_dim is checked against this in seq_delete
    for (int32_t l = 0; l < n_layer_; ++l) {
        uint8_t* k = k_row(l, slot);
        if (f16_) {
            const uint16_t* h = reinterpret_cast<const uint16_t*>(k);
            for (int32_t i = 0; i < kv_dim_; ++i) row[i] = f16_to_f32(h[i]);
        } else {
            std::memcpy(row, k, static_cast<size_t>(kv_dim_) * 4);
        }
        rope_apply(rope_.style, row, rope_.n_head_kv, rope_.head_dim, rope_.n_rot, cos_sin);
        if (f16_) {
            uint16_t* h = reinterpret_cast<uint16_t*>(k);
            for (int32_t i = 0; i < kv_dim_; ++i) h[i] = f32_to_f16(row[i]);
        } else {
            std::memcpy(k, row, static_cast<size_t>(kv_dim_) * 4);
        }
    }
}

void KVCache::seq_delete(int32_t seq, int32_t p0, int32_t p1, bool shift) {
    check_seq(seq, "delete");
    Seq& s = seqs_[seq];
    if (p0 < 0 || p1 <= p0 || p1 > s.next_pos)
        fail(APLS_STATUS_INVALID_ARGUMENT, "delete of positions [", p0, ", ", p1, ") from sequence ", seq,
             ": need 0 <= p0 < p1 <= ", s.next_pos, " (its next position)");
    if (shift && (rope_.n_rot <= 0 || rope_.n_head_kv * rope_.head_dim != kv_dim_ || kv_dim_ > 4096))
        fail(APLS_STATUS_INVALID_ARGUMENT, "delete with shift needs the model's RoPE parameters");
    const int32_t B = static_cast<int32_t>(block_size_), n = s.n, delta = p1 - p0;
    auto gone = [&](int32_t p) { return p >= p0 && p < p1; };

    // Entries before `start` neither move nor change. Sorted: the deleted ones are [j0, j1).
    const bool sorted = seq_sorted(seq);
    const int32_t j0 = sorted ? lower_entry(seq, p0) : 0;
    const int32_t j1 = sorted ? lower_entry(seq, p1) : 0;
    const bool drop_blocks = sorted && j1 > j0 && j0 % B == 0 && (j1 - j0) % B == 0;

    // Blocks (table indices after the delete) that get written and must be private.
    std::vector<char> written(s.blocks.size(), 0);
    size_t avail = free_.size();
    int32_t n_new = 0;
    if (drop_blocks) {
        for (int32_t b = j0 / B; b < j1 / B; ++b) avail += refs_[s.blocks[b]] == 1;
        n_new = n - (j1 - j0);
        if (shift)
            for (int32_t w = j0; w < n_new; ++w) written[w / B] = 1;
    } else {
        int32_t w = j0;
        for (int32_t j = j0; j < n; ++j) {
            const int32_t p = entry_pos(seq, j);
            if (gone(p)) continue;
            if (j != w || (shift && p >= p1)) written[w / B] = 1;
            ++w;
        }
        n_new = w;
    }
    // Table index before the delete of the block at index b after it.
    auto before = [&](size_t b) { return drop_blocks && b >= static_cast<size_t>(j0 / B) ? b + (j1 - j0) / B : b; };
    size_t need = 0;
    for (size_t b = 0; b < written.size(); ++b) need += written[b] && refs_[s.blocks[before(b)]] > 1;
    if (need > avail)
        fail(APLS_STATUS_KV_FULL, "KV cache full: deleting from sequence ", seq, " rewrites ", need,
             " shared blocks but ", avail, " blocks are free");

    if (drop_blocks) {
        for (int32_t b = j0 / B; b < j1 / B; ++b) release_block(s.blocks[b]);
        s.blocks.erase(s.blocks.begin() + j0 / B, s.blocks.begin() + j1 / B);
        s.n = n_new;
    } else {
        for (size_t b = 0; b < written.size(); ++b)
            if (written[b]) make_private(seq, b);
        int32_t w = j0;  // compaction: kept entries move down over the deleted ones
        for (int32_t j = j0; j < n; ++j) {
            if (gone(entry_pos(seq, j))) continue;
            if (j != w) copy_entry(slot_of(seq, w), slot_of(seq, j));
            ++w;
        }
        shrink(seq, n_new);
        if (!sorted) s.n_sorted = 0;  // later entries moved into the old sorted prefix: rescan
    }
    if (shift) {
        for (size_t b = 0; b < written.size() && b < s.blocks.size(); ++b)
            if (written[b]) make_private(seq, b);  // no-op unless a dropped range left it shared
        std::vector<float> cs(static_cast<size_t>(rope_.n_rot));
        cpu::rope_table(-delta, rope_.n_rot, rope_.base, rope_.freq_scale, cs.data());
        for (int32_t j = sorted ? j0 : 0; j < s.n; ++j) {
            const int64_t slot = slot_of(seq, j);
            if (pos_[slot] < p1) continue;
            pos_[slot] -= delta;
            rerotate(slot, cs.data());
        }
    }
    if (store_) store_->flush();
    refresh_next_pos(s);
}

// ---- token trees -----------------------------------------------------------------------------

void KVCache::keep_path(int32_t seq, int32_t n_keep, const int32_t* entries, int32_t n) {
    check_seq(seq, "keep_path");
    Seq& s = seqs_[seq];
    if (n_keep < 0 || n_keep > s.n)
        fail(APLS_STATUS_INVALID_ARGUMENT, "keep_path: n_keep ", n_keep, " is out of range [0, ", s.n,
             "] (entries of sequence ", seq, ")");
    if (n < 0 || (n > 0 && !entries)) fail(APLS_STATUS_INVALID_ARGUMENT, "keep_path: bad entry list (", n, " entries)");
    // The prefix's next position: the path must continue it.
    int32_t next = -1;
    if (n_keep > 0 && s.n_sorted >= n_keep) next = entry_pos(seq, n_keep - 1) + 1;
    for (int32_t j = 0; n_keep > 0 && s.n_sorted < n_keep && j < n_keep; ++j)
        next = std::max(next, entry_pos(seq, j) + 1);
    for (int32_t k = 0; k < n; ++k)
        if (entries[k] < n_keep || entries[k] >= s.n || (k > 0 && entries[k] <= entries[k - 1]))
            fail(APLS_STATUS_INVALID_ARGUMENT, "keep_path: entry ", entries[k], " (item ", k,
                 ") must be increasing and in [n_keep, seq_len) = [", n_keep, ", ", s.n, ")");
    for (int32_t k = 0; k < n; ++k) {
        const int32_t e = entries[k];
        const int32_t want = k > 0 ? entry_pos(seq, entries[k - 1]) + 1 : next;
        if (want >= 0 && entry_pos(seq, e) != want)
            fail(APLS_STATUS_INVALID_ARGUMENT, "keep_path: entry ", e, " is at position ", entry_pos(seq, e), ", not ",
                 want, " (the path must continue the kept entries at consecutive positions)");
    }
    // Copy-on-write: the blocks that receive a moved entry must be private.
    const int32_t B = static_cast<int32_t>(block_size_), n_new = n_keep + n;
    std::vector<char> written(s.blocks.size(), 0);
    for (int32_t k = 0; k < n; ++k)
        if (entries[k] != n_keep + k) written[(n_keep + k) / B] = 1;
    size_t need = 0;
    for (size_t b = 0; b < written.size(); ++b) need += written[b] && refs_[s.blocks[b]] > 1;
    if (need > free_.size())
        fail(APLS_STATUS_KV_FULL, "KV cache full: keep_path on sequence ", seq, " rewrites ", need,
             " blocks shared with a fork but ", free_.size(), " blocks are free");

    // The moves: entries[k] >= n_keep + k, so moving in order never overwrites an entry still to
    // move; then the rest is dropped.
    const bool prefix_sorted = s.n_sorted >= n_keep;
    for (size_t b = 0; b < written.size(); ++b)
        if (written[b]) make_private(seq, b);
    for (int32_t k = 0; k < n; ++k)
        if (entries[k] != n_keep + k) copy_entry(slot_of(seq, n_keep + k), slot_of(seq, entries[k]));
    shrink(seq, n_new);
    s.n_sorted = prefix_sorted ? n_new : std::min(s.n_sorted, n_keep);
    if (store_) store_->flush();
    refresh_next_pos(s);
}

// ---- fork / keep / clear ---------------------------------------------------------------------

void KVCache::clear_seq(int32_t seq) {
    check_seq(seq, "clear");
    Seq& s = seqs_[seq];
    for (int32_t b : s.blocks) release_block(b);
    s = Seq{};
}

void KVCache::fork(int32_t src, int32_t dst) {
    check_seq(src, "fork");
    check_seq(dst, "fork");
    if (src == dst) fail(APLS_STATUS_INVALID_ARGUMENT, "fork of sequence ", src, " onto itself");
    const Seq& s = seqs_[src];
    size_t avail = free_.size();
    for (int32_t b : seqs_[dst].blocks) avail += refs_[b] == 1;
    if (s.n % block_size_ != 0 && avail == 0)
        fail(APLS_STATUS_KV_FULL, "KV cache full: fork of sequence ", src,
             " needs a free block for the copy of its "
             "partially filled last block, and none of ",
             n_blocks_, " is free");
    clear_seq(dst);
    Seq& d = seqs_[dst];
    d = s;
    for (int32_t b : d.blocks) refs_[b]++;
}

void KVCache::keep(int32_t seq) {
    check_seq(seq, "keep");
    for (int32_t s = 0; s < static_cast<int32_t>(seqs_.size()); ++s)
        if (s != seq) clear_seq(s);
}

// ---- statistics and invariants ---------------------------------------------------------------

KVStats KVCache::stats() const {
    KVStats st;
    st.n_blocks = static_cast<int32_t>(n_blocks_);
    st.block_size = static_cast<int32_t>(block_size_);
    st.blocks_free = static_cast<int32_t>(free_.size());
    st.blocks_used = st.n_blocks - st.blocks_free;
    for (int32_t r : refs_) st.blocks_shared += r > 1;
    std::vector<char> held(pos_.size(), 0);
    for (int32_t q = 0; q < static_cast<int32_t>(seqs_.size()); ++q) {
        st.entries += seqs_[q].n;
        st.n_seq_used += seqs_[q].n > 0;
        for (int32_t j = 0; j < seqs_[q].n; ++j) held[slot_of(q, j)] = 1;
    }
    for (char h : held) st.tokens += h;
    st.holes = static_cast<int64_t>(st.blocks_used) * block_size_ - st.tokens;
    st.fragmentation =
        st.blocks_used ? static_cast<double>(st.holes) / (static_cast<double>(st.blocks_used) * block_size_) : 0.0;
    return st;
}

void KVCache::check_invariants() const {
    auto bad = [](auto... what) { fail(APLS_STATUS_INTERNAL, "KV cache invariant violated: ", what...); };
    std::vector<int32_t> uses(n_blocks_, 0);
    for (int32_t q = 0; q < static_cast<int32_t>(seqs_.size()); ++q) {
        const Seq& s = seqs_[q];
        if (s.blocks.size() != (static_cast<size_t>(s.n) + block_size_ - 1) / block_size_)
            bad("sequence ", q, " holds ", s.n, " entries in ", s.blocks.size(), " blocks");
        std::vector<int32_t> t = s.blocks;
        std::sort(t.begin(), t.end());
        if (std::adjacent_find(t.begin(), t.end()) != t.end()) bad("sequence ", q, " lists a block twice");
        for (int32_t b : s.blocks) {
            if (b < 0 || b >= static_cast<int32_t>(n_blocks_)) bad("sequence ", q, " lists block ", b);
            uses[b]++;
        }
        int32_t max_pos = -1;
        for (int32_t j = 0; j < s.n; ++j) {
            const int32_t p = entry_pos(q, j);
            if (p < 0) bad("sequence ", q, " has a hole at entry ", j);
            if (j < s.n_sorted && j > 0 && p < entry_pos(q, j - 1))
                bad("sequence ", q, " has a sorted prefix of ", s.n_sorted, " entries but is not sorted at entry ", j);
            max_pos = std::max(max_pos, p);
        }
        if (s.next_pos != max_pos + 1) bad("sequence ", q, " has next_pos ", s.next_pos, ", max position ", max_pos);
    }
    std::vector<char> in_free(n_blocks_, 0);
    for (int32_t b : free_) {
        if (b < 0 || b >= static_cast<int32_t>(n_blocks_) || in_free[b])
            bad("free list holds block ", b, " twice or out of range");
        in_free[b] = 1;
    }
    for (uint32_t b = 0; b < n_blocks_; ++b) {
        if (refs_[b] != uses[b]) bad("block ", b, " has reference count ", refs_[b], " but ", uses[b], " users");
        if ((uses[b] == 0) != (in_free[b] != 0))
            bad("block ", b, " with ", uses[b], " users is ", in_free[b] ? "" : "not ", "free");
        if (uses[b] == 0)
            for (uint32_t i = 0; i < block_size_; ++i)
                if (pos_[static_cast<size_t>(b) * block_size_ + i] != -1) bad("free block ", b, " holds a position");
    }
}

}  // namespace apls
