// test_kv_cache.cpp — the block pool against a naive dense model of the sequences: random
// appends, truncates, deletes (with and without shift), forks, keeps and clears; after every
// step the invariants hold, every sequence holds exactly the reference's entries (positions,
// V rows bit-exact, K rows = RoPE of the entry's vector at its current position), and failing
// operations leave everything unchanged. Runs under ASan/UBSan in CI.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "check.h"
#include "common.h"
#include "cpu/ops.h"
#include "ggml_types.h"
#include "kv_cache.h"

using apls::KVCache;

namespace {

constexpr int32_t kLayers = 2, kHeads = 2, kHeadDim = 4, kDim = kHeads * kHeadDim;
constexpr float kBase = 10000.0f;

// The unrotated vector of entry `id` in layer l: V holds it as is, K holds it rotated for its position.
void entry_vec(int32_t id, int32_t l, float* out) {
    for (int32_t i = 0; i < kDim; ++i) out[i] = std::sin(0.37f * id + 0.11f * i + l);
}

void rotated(int32_t id, int32_t l, int32_t pos, float* out) {
    float cs[kHeadDim];
    entry_vec(id, l, out);
    apls::cpu::rope_table(pos, kHeadDim, kBase, 1.0f, cs);
    apls::cpu::rope_pairs(out, kHeads, kHeadDim, kHeadDim, cs);
}

void load(const KVCache& kv, const uint8_t* row, float* out) {
    if (!kv.f16()) return (void)std::memcpy(out, row, kDim * 4);
    const uint16_t* h = reinterpret_cast<const uint16_t*>(row);
    for (int32_t i = 0; i < kDim; ++i) out[i] = apls::f16_to_f32(h[i]);
}

void store(KVCache& kv, uint8_t* row, const float* x) {
    if (!kv.f16()) return (void)std::memcpy(row, x, kDim * 4);
    uint16_t* h = reinterpret_cast<uint16_t*>(row);
    for (int32_t i = 0; i < kDim; ++i) h[i] = apls::f32_to_f16(x[i]);
}

struct Entry {
    int32_t pos, id;
};
bool operator==(const Entry& a, const Entry& b) { return a.pos == b.pos && a.id == b.id; }
using Ref = std::vector<std::vector<Entry>>;  // per sequence, entries in cache order

KVCache make_cache(uint32_t n_ctx, uint32_t block, uint32_t n_seq, bool f16) {
    KVCache kv(kLayers, kDim, n_ctx, block, n_seq, f16);
    kv.set_rope({kHeadDim, kHeadDim, kHeads, kBase, 1.0f});
    return kv;
}

// Append entries (seq[i], pos[i]) with fresh ids, writing rows as a forward pass would.
void append(KVCache& kv, Ref& ref, const std::vector<int32_t>& seq, const std::vector<int32_t>& pos, int32_t& next_id) {
    std::vector<int64_t> slots(seq.size());
    kv.append(seq.data(), pos.data(), static_cast<int32_t>(seq.size()), slots.data());
    for (size_t i = 0; i < seq.size(); ++i) {
        const int32_t id = next_id++;
        for (int32_t l = 0; l < kLayers; ++l) {
            float x[kDim];
            entry_vec(id, l, x);
            store(kv, kv.v_row(l, slots[i]), x);
            rotated(id, l, pos[i], x);
            store(kv, kv.k_row(l, slots[i]), x);
        }
        ref[seq[i]].push_back({pos[i], id});
    }
}

// The cache holds exactly the reference's entries.
void check_matches(const KVCache& kv, const Ref& ref, float k_tol) {
    kv.check_invariants();
    for (int32_t s = 0; s < static_cast<int32_t>(ref.size()); ++s) {
        CHECK(kv.seq_len(s) == static_cast<int32_t>(ref[s].size()));
        if (kv.seq_len(s) != static_cast<int32_t>(ref[s].size())) return;
        int32_t max_pos = -1;
        for (int32_t j = 0; j < kv.seq_len(s); ++j) {
            const Entry& e = ref[s][j];
            max_pos = std::max(max_pos, e.pos);
            const int64_t slot = kv.slot_of(s, j);
            CHECK(kv.slot_pos(slot) == e.pos);
            for (int32_t l = 0; l < kLayers; ++l) {
                float got[kDim], want[kDim];
                entry_vec(e.id, l, want);
                load(kv, kv.v_row(l, slot), got);
                for (int32_t i = 0; i < kDim; ++i)
                    CHECK(kv.f16() ? std::fabs(got[i] - want[i]) <= 1e-3f : got[i] == want[i]);
                rotated(e.id, l, e.pos, want);
                load(kv, kv.k_row(l, slot), got);
                for (int32_t i = 0; i < kDim; ++i) {
                    const bool ok = std::fabs(got[i] - want[i]) <= k_tol;
                    CHECK(ok);
                    if (!ok) return;
                }
            }
        }
        CHECK(kv.seq_next_pos(s) == max_pos + 1);
        CHECK(kv.seq_pos_max(s) == max_pos);
    }
}

// Reference semantics of a delete.
void ref_delete(Ref& ref, int32_t s, int32_t p0, int32_t p1, bool shift) {
    std::vector<Entry> kept;
    for (Entry e : ref[s]) {
        if (e.pos >= p0 && e.pos < p1) continue;
        if (shift && e.pos >= p1) e.pos -= p1 - p0;
        kept.push_back(e);
    }
    ref[s] = kept;
}

int32_t ref_next_pos(const std::vector<Entry>& es) {
    int32_t m = -1;
    for (const Entry& e : es) m = std::max(m, e.pos);
    return m + 1;
}

// A tree verify on sequence s: a random token tree appended, sometimes a fork of the result,
// then one root-to-node path kept (keep_path). A keep_path that fails (KV_FULL: blocks shared
// with the fork and none free) changes nothing, checked here; the caller checks the rest.
template <typename Uni>
void tree_round(KVCache& kv, Ref& ref, int32_t s, Uni& uni, int32_t& next_id) {
    const int32_t n_keep = kv.seq_len(s), next = kv.seq_next_pos(s), n = uni(1, 9);
    std::vector<int32_t> parent(n), seqs(n, s), poss(n);
    for (int32_t i = 0; i < n; ++i) {
        parent[i] = uni(-1, i - 1);
        poss[i] = parent[i] < 0 ? next : poss[parent[i]] + 1;
    }
    append(kv, ref, seqs, poss, next_id);  // KV_FULL: nothing changed (checked by the caller)
    const int32_t d = uni(0, static_cast<int32_t>(ref.size()) - 1);
    if (d != s && uni(0, 2) == 0) {
        try {
            kv.fork(s, d);
            ref[d] = ref[s];
        } catch (const apls::Error& e) {  // no free block for it: nothing changed
            CHECK(e.status() == APLS_STATUS_KV_FULL);
        }
    }
    std::vector<int32_t> path;  // batch indices, root first
    if (uni(0, 4) > 0)
        for (int32_t b = uni(0, n - 1); b >= 0; b = parent[b]) path.insert(path.begin(), b);
    std::vector<int32_t> entries;
    for (int32_t b : path) entries.push_back(n_keep + b);
    const Ref mid = ref;
    const apls::KVStats st0 = kv.stats();
    try {
        kv.keep_path(s, n_keep, entries.data(), static_cast<int32_t>(entries.size()));
    } catch (const apls::Error& e) {
        CHECK(e.status() == APLS_STATUS_KV_FULL);
        const apls::KVStats st1 = kv.stats();
        CHECK(st1.blocks_used == st0.blocks_used && st1.tokens == st0.tokens && st1.entries == st0.entries);
        kv.truncate(s, n_keep);  // roll the tree back instead
        ref[s].resize(n_keep);
        return;
    }
    std::vector<Entry> kept(mid[s].begin(), mid[s].begin() + n_keep);
    for (int32_t b : path) kept.push_back(mid[s][n_keep + b]);
    ref[s] = kept;
}

// One random run of `steps` operations.
void fuzz(uint32_t seed, bool f16, uint32_t block, int steps) {
    std::mt19937 rng(seed);
    auto uni = [&](int32_t lo, int32_t hi) { return std::uniform_int_distribution<int32_t>(lo, hi)(rng); };
    const uint32_t n_seq = 4, n_ctx = 12 * block;
    KVCache kv = make_cache(n_ctx, block, n_seq, f16);
    Ref ref(n_seq);
    int32_t next_id = 0;
    // F32: a re-rotation differs from rotating directly by a few ulps per shift; F16: half rounding.
    const float k_tol = f16 ? 4e-3f : 2e-5f;
    for (int step = 0; step < steps; ++step) {
        const int32_t s = uni(0, n_seq - 1);
        const int op = uni(0, 10);
        const Ref before = ref;
        const apls::KVStats st0 = kv.stats();
        bool failed = false;
        try {
            if (op <= 3) {  // append a batch over one or two sequences, rarely out of order
                std::vector<int32_t> seqs, poss;
                const int32_t s2 = uni(0, n_seq - 1);
                int32_t next[8] = {};
                for (uint32_t q = 0; q < n_seq; ++q) next[q] = kv.seq_next_pos(q);
                for (int32_t i = uni(1, 2 * block); i > 0; --i) {
                    const int32_t q = uni(0, 1) ? s : s2;
                    seqs.push_back(q);
                    poss.push_back(uni(0, 30) == 0 ? uni(0, next[q] + 3) : next[q]++);
                }
                append(kv, ref, seqs, poss, next_id);
            } else if (op == 4) {
                const int32_t n = uni(0, kv.seq_len(s));
                kv.truncate(s, n);
                ref[s].resize(n);
            } else if (op <= 6) {
                const int32_t np = kv.seq_next_pos(s);
                if (np == 0) continue;
                const int32_t p0 = uni(0, np - 1),
                              p1 = uni(p0 + 1, std::min(np, p0 + 2 * static_cast<int32_t>(block) + 1));
                const bool shift = uni(0, 1);
                kv.seq_delete(s, p0, p1, shift);
                ref_delete(ref, s, p0, p1, shift);
            } else if (op == 7) {
                const int32_t d = uni(0, n_seq - 1);
                if (d == s) continue;
                kv.fork(s, d);
                ref[d] = ref[s];
            } else if (op == 8) {
                kv.clear_seq(s);
                ref[s].clear();
            } else if (op == 9) {
                if (uni(0, 3) == 0) {
                    kv.keep(s);
                    for (uint32_t q = 0; q < n_seq; ++q)
                        if (static_cast<int32_t>(q) != s) ref[q].clear();
                }
            } else {
                tree_round(kv, ref, s, uni, next_id);
            }
        } catch (const apls::Error& e) {
            CHECK(e.status() == APLS_STATUS_KV_FULL);
            failed = true;
        }
        if (failed) {  // nothing changed
            CHECK(ref == before);
            const apls::KVStats st1 = kv.stats();
            CHECK(st1.blocks_used == st0.blocks_used && st1.tokens == st0.tokens && st1.entries == st0.entries);
        }
        check_matches(kv, ref, k_tol);
        // Memory: each sequence holds ceil(n / B) blocks, the pool no more than their sum.
        int64_t sum_blocks = 0;
        for (uint32_t q = 0; q < n_seq; ++q) {
            const size_t want = (ref[q].size() + block - 1) / block;
            CHECK(kv.block_table(q).size() == want);
            sum_blocks += want;
        }
        const apls::KVStats st = kv.stats();
        CHECK(st.blocks_used <= sum_blocks);
        CHECK(st.holes == static_cast<int64_t>(st.blocks_used) * block - st.tokens);
        if (apls_test::failures()) return;
    }
}

}  // namespace

APLS_TEST(random_operations_match_dense_reference_f32) {
    for (uint32_t seed = 1; seed <= 12; ++seed) fuzz(seed, false, seed % 3 == 0 ? 1 : (seed % 2 ? 4 : 16), 400);
}

APLS_TEST(random_operations_match_dense_reference_f16) {
    for (uint32_t seed = 100; seed <= 104; ++seed) fuzz(seed, true, 4, 300);
}

APLS_TEST(fork_shares_blocks_and_copies_on_write) {
    KVCache kv = make_cache(64, 4, 2, false);
    Ref ref(2);
    int32_t id = 0;
    append(kv, ref, {0, 0, 0, 0, 0, 0}, {0, 1, 2, 3, 4, 5}, id);
    kv.fork(0, 1);
    ref[1] = ref[0];
    CHECK(kv.block_table(0) == kv.block_table(1));
    CHECK(kv.ref_count(kv.block_table(0)[0]) == 2 && kv.stats().blocks_used == 2);
    const int32_t shared_last = kv.block_table(0)[1];
    append(kv, ref, {1}, {6}, id);  // lands in the shared partial block: copy first
    CHECK(kv.block_table(1)[1] != shared_last && kv.block_table(0)[1] == shared_last);
    CHECK(kv.block_table(1)[0] == kv.block_table(0)[0]);  // the full block stays shared
    CHECK(kv.ref_count(shared_last) == 1 && kv.stats().blocks_used == 3);
    check_matches(kv, ref, 0.0f);
    kv.seq_delete(0, 1, 2, false);  // rewrites the shared first block: copy first
    ref_delete(ref, 0, 1, 2, false);
    CHECK(kv.block_table(1)[0] != kv.block_table(0)[0]);
    check_matches(kv, ref, 0.0f);
}

APLS_TEST(block_aligned_delete_copies_nothing) {
    KVCache kv = make_cache(64, 4, 2, false);
    Ref ref(2);
    int32_t id = 0;
    std::vector<int32_t> s(12, 0), p(12);
    for (int32_t i = 0; i < 12; ++i) p[i] = i;
    append(kv, ref, s, p, id);
    kv.fork(0, 1);
    ref[1] = ref[0];
    const std::vector<int32_t> t = kv.block_table(0);
    kv.seq_delete(0, 4, 8, false);  // exactly the second block: dropped, nothing copied
    ref_delete(ref, 0, 4, 8, false);
    CHECK((kv.block_table(0) == std::vector<int32_t>{t[0], t[2]}));
    CHECK(kv.stats().blocks_used == 3);
    check_matches(kv, ref, 0.0f);
}

APLS_TEST(errors_leave_the_cache_unchanged) {
    KVCache kv = make_cache(12, 4, 2, false);
    Ref ref(2);
    int32_t id = 0;
    append(kv, ref, {0, 0, 0, 0, 0, 0}, {0, 1, 2, 3, 4, 5}, id);
    kv.fork(0, 1);  // one free block left for the copy-on-write
    ref[1] = ref[0];
    append(kv, ref, {1}, {6}, id);  // uses it
    CHECK(kv.n_free_blocks() == 0);
    CHECK_THROWS(append(kv, ref, {0, 0, 0}, {6, 7, 8}, id), APLS_STATUS_KV_FULL, "KV cache full");
    CHECK_THROWS(kv.seq_delete(0, 0, 1, false), APLS_STATUS_KV_FULL, "shared");
    CHECK_THROWS(kv.seq_delete(0, 3, 9, false), APLS_STATUS_INVALID_ARGUMENT, "[3, 9)");
    CHECK_THROWS(kv.seq_delete(0, 2, 2, false), APLS_STATUS_INVALID_ARGUMENT, "p0 < p1");
    CHECK_THROWS(kv.seq_delete(5, 0, 1, false), APLS_STATUS_INVALID_ARGUMENT, "unknown sequence 5");
    CHECK_THROWS(kv.fork(0, 0), APLS_STATUS_INVALID_ARGUMENT, "onto itself");
    CHECK_THROWS(kv.fork(0, 2), APLS_STATUS_INVALID_ARGUMENT, "unknown sequence 2");
    CHECK_THROWS(kv.truncate(0, 7), APLS_STATUS_INVALID_ARGUMENT, "holds 6");
    check_matches(kv, ref, 0.0f);
    // A full pool: forking a sequence with a partial last block needs a free block.
    KVCache full = make_cache(12, 4, 3, false);
    Ref r2(3);
    append(full, r2, {0, 0, 0, 0, 0, 1, 1, 1}, {0, 1, 2, 3, 4, 0, 1, 2}, id);
    CHECK_THROWS(full.fork(0, 2), APLS_STATUS_KV_FULL, "fork");
    full.fork(0, 1);  // replacing sequence 1 frees its block
    r2[1] = r2[0];
    check_matches(full, r2, 0.0f);
    apls::KVView view;
    view.positions = {0, 9};
    CHECK_THROWS(kv.check_view(view, 0), APLS_STATUS_INVALID_ARGUMENT, "position 9 is not in the cache");
    view.positions = {2, 1};
    CHECK_THROWS(kv.check_view(view, 0), APLS_STATUS_INVALID_ARGUMENT, "strictly increasing");
}

// A store that counts what the cache asks it to move (no host K/V arrays then).
struct CountingStore : apls::KVStore {
    int copies = 0, rotations = 0, flushes = 0;
    void copy_slot(int64_t, int64_t) override { ++copies; }
    void rerotate(int64_t, const float*) override { ++rotations; }
    void flush() override { ++flushes; }
};

APLS_TEST(keep_path_keeps_the_path_and_frees_the_rest) {
    for (bool f16 : {false, true}) {
        KVCache kv = make_cache(64, 4, 1, f16);
        Ref ref(1);
        int32_t id = 0;
        append(kv, ref, {0, 0, 0, 0, 0}, {0, 1, 2, 3, 4}, id);
        // A tree after 5 entries: 0 -> {1 -> 2, 3 -> 4 -> 5}, positions by depth: 5, 6, 7, 6, 7, 8.
        const std::vector<int32_t> parent = {-1, 0, 1, 0, 3, 4};
        std::vector<int32_t> pos(parent.size());
        for (size_t i = 0; i < parent.size(); ++i) pos[i] = parent[i] < 0 ? 5 : pos[parent[i]] + 1;
        append(kv, ref, std::vector<int32_t>(parent.size(), 0), pos, id);
        CHECK(!kv.seq_sorted(0) && kv.sorted_prefix(0) == 8);  // the second branch goes back to 6
        const Ref before = ref;
        const std::vector<int32_t> path = {5 + 0, 5 + 3, 5 + 4, 5 + 5};  // 0 -> 3 -> 4 -> 5
        kv.keep_path(0, 5, path.data(), 4);
        ref[0] = {before[0][0], before[0][1], before[0][2], before[0][3], before[0][4],
                  before[0][5], before[0][8], before[0][9], before[0][10]};
        check_matches(kv, ref, f16 ? 4e-3f : 0.0f);  // F16: the rows' own rounding, moved as they are
        CHECK(kv.seq_sorted(0) && kv.seq_next_pos(0) == 9);
        CHECK(kv.block_table(0).size() == 3 && kv.stats().blocks_used == 3);  // ceil(9 / 4)
    }
    // Entries already in place are not copied: the path of the tree's first tokens costs nothing.
    KVCache kv(kLayers, kDim, 64, 4, 1, false, false);
    CountingStore store;
    kv.attach_store(&store);
    std::vector<int64_t> slots(8);
    const std::vector<int32_t> seq(8, 0), pos = {0, 1, 2, 3, 4, 4, 5, 5};  // chain 0..4, then branches
    kv.append(seq.data(), pos.data(), 8, slots.data());
    const std::vector<int32_t> first = {3, 4};
    kv.keep_path(0, 3, first.data(), 2);
    CHECK(store.copies == 0 && kv.seq_len(0) == 5 && kv.seq_sorted(0));
    kv.append(seq.data() + 5, pos.data() + 5, 3, slots.data());  // entries 5..7 at positions 4, 5, 5
    const std::vector<int32_t> other = {5};                       // position 4: moves to entry 4
    kv.keep_path(0, 4, other.data(), 1);
    CHECK(store.copies == 1 && kv.seq_len(0) == 5);
    kv.check_invariants();
}

APLS_TEST(keep_path_errors_change_nothing) {
    KVCache kv = make_cache(16, 4, 2, false);
    Ref ref(2);
    int32_t id = 0;
    append(kv, ref, {0, 0, 0, 0, 0, 0}, {0, 1, 2, 4, 4, 5}, id);
    const apls::KVStats st = kv.stats();
    const std::vector<int32_t> gap = {3};  // position 4 after a prefix ending at 2
    CHECK_THROWS(kv.keep_path(0, 3, gap.data(), 1), APLS_STATUS_INVALID_ARGUMENT, "not 3");
    const std::vector<int32_t> down = {4, 3};
    CHECK_THROWS(kv.keep_path(0, 3, down.data(), 2), APLS_STATUS_INVALID_ARGUMENT, "increasing");
    const std::vector<int32_t> low = {2};
    CHECK_THROWS(kv.keep_path(0, 3, low.data(), 1), APLS_STATUS_INVALID_ARGUMENT, "[n_keep, seq_len)");
    const std::vector<int32_t> past = {6};
    CHECK_THROWS(kv.keep_path(0, 3, past.data(), 1), APLS_STATUS_INVALID_ARGUMENT, "[n_keep, seq_len)");
    CHECK_THROWS(kv.keep_path(0, 7, nullptr, 0), APLS_STATUS_INVALID_ARGUMENT, "n_keep 7");
    CHECK_THROWS(kv.keep_path(2, 0, nullptr, 0), APLS_STATUS_INVALID_ARGUMENT, "unknown sequence 2");
    const std::vector<int32_t> skip = {3, 5};  // entry 3 is inside the kept prefix of 4
    CHECK_THROWS(kv.keep_path(0, 4, skip.data(), 2), APLS_STATUS_INVALID_ARGUMENT, "[n_keep, seq_len)");
    check_matches(kv, ref, 0.0f);
    const apls::KVStats st2 = kv.stats();
    CHECK(st2.blocks_used == st.blocks_used && st2.entries == st.entries);
    // Blocks shared with a fork need copies; with no free block that is KV_FULL, nothing changed.
    KVCache full = make_cache(12, 4, 2, false);
    Ref r2(2);
    append(full, r2, {0, 0, 0, 0, 0, 0, 0, 0}, {0, 1, 2, 3, 4, 4, 5, 6}, id);
    full.fork(0, 1);
    r2[1] = r2[0];
    append(full, r2, {1, 1, 1, 1}, {7, 8, 9, 10}, id);  // takes the last free block
    CHECK(full.n_free_blocks() == 0);
    const std::vector<int32_t> branch = {5, 6, 7};  // positions 4, 5, 6: moves into a shared block
    CHECK_THROWS(full.keep_path(0, 4, branch.data(), 3), APLS_STATUS_KV_FULL, "shared with a fork");
    check_matches(full, r2, 0.0f);
}

APLS_TEST(shift_rerotates_keys_and_moves_next_pos) {
    for (bool f16 : {false, true}) {
        KVCache kv = make_cache(64, 4, 1, f16);
        Ref ref(1);
        int32_t id = 0;
        std::vector<int32_t> s(20, 0), p(20);
        for (int32_t i = 0; i < 20; ++i) p[i] = i;
        append(kv, ref, s, p, id);
        kv.seq_delete(0, 3, 10, true);
        ref_delete(ref, 0, 3, 10, true);
        CHECK(kv.seq_next_pos(0) == 13 && kv.seq_len(0) == 13);
        check_matches(kv, ref, f16 ? 4e-3f : 2e-6f);
    }
}

APLS_TEST_MAIN()
