// cuda/attention.cu — attention over the block KV cache (flash-decoding).
//
// Grid: (split, KV head x chunk of query heads, tile of tokens). A block scores the entries
// [split * kAttnSplit, ...) of its tokens' sequence for up to kHeads query heads of one KV head
// (GQA: each K/V row is read once for the chunk; a prompt or verify batch: once for up to 16
// tokens), takes the softmax numerator with the split's own max, and accumulates V; a second
// kernel merges the splits of each (token, head) in order. The split size is fixed and every
// (token, head) row is computed by the same operations in any tile, so a token's result
// depends only on its own entries and view, never on the batch or the grid.
#include <algorithm>
#include <cfloat>

#include "cuda/attention_visible.cuh"
#include "cuda/dequant.cuh"
#include "cuda/launch.h"
#include "cuda/pdl.cuh"

namespace apls::cuda {

namespace {

constexpr int kHeads = 8;     // query heads per block (a GQA group, or a chunk of it)
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kMaxHeadDim = kMaxAttentionHeadDim;

// 8 cache values (F16 or F32) from element e, as raw bits: one 16-byte load (F16) or two (F32).
// The cache type is a template parameter of the kernels: a block runs its code once, cold from
// the instruction cache, so code it does not need costs it time (docs/CUDA.md).
struct Raw8 {
    uint4 a, b;
};

template <bool F16>
__device__ __forceinline__ Raw8 load8_raw(const void* kv, int64_t e) {
    Raw8 r{};
    if constexpr (F16) {
        r.a = *reinterpret_cast<const uint4*>(static_cast<const __half*>(kv) + e);
    } else {
        const uint4* p = reinterpret_cast<const uint4*>(static_cast<const float*>(kv) + e);
        r.a = p[0];
        r.b = p[1];
    }
    return r;
}

template <bool F16>
__device__ __forceinline__ void raw8_to_floats(const Raw8& r, float* dst) {
    if constexpr (F16) {
        const __half2* h = reinterpret_cast<const __half2*>(&r.a);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 f = __half22float2(h[i]);
            dst[2 * i] = f.x;
            dst[2 * i + 1] = f.y;
        }
    } else {
        const float* x = reinterpret_cast<const float*>(&r.a);
        const float* y = reinterpret_cast<const float*>(&r.b);
#pragma unroll
        for (int i = 0; i < 4; ++i) dst[i] = x[i], dst[4 + i] = y[i];
    }
}

// The split's K (or V) rows into tile[j][d]. A tile is at most kTileUnits units of 8 values per
// thread; all of a thread's loads are issued (into registers) before the first is used, so a
// tile costs one memory latency, not one per unit. Entries not seen are zero rows.
constexpr int kTileUnits = kAttnSplit * kMaxHeadDim / 8 / kThreads;

// A block's walk over a grid of rows of `width` units: unit u = threadIdx.x + t * kThreads of
// step t is (row, col) = (u / width, u % width), stepped without a division.
struct GridWalk {
    int row, col, drow, dcol, width;
    __device__ __forceinline__ explicit GridWalk(int w)
        : row(threadIdx.x / w), col(threadIdx.x % w), drow(kThreads / w), dcol(kThreads % w), width(w) {}
    __device__ __forceinline__ void next() {
        row += drow, col += dcol;
        if (col >= width) col -= width, ++row;
    }
};

// Unit u is (entry row, column 8 * col) of the tile: issue_tile's loads (into registers, all in
// flight at once), commit_tile's conversion into the tile. Apart, so that other work runs while
// they are in flight.
template <bool F16>
__device__ __forceinline__ void issue_tile(const AttentionArgs& a, const int* slot_s, int n, int64_t col,
                                           Raw8 (&r)[kTileUnits]) {
    const int per_row = a.head_dim / 8, total = n * per_row;
    GridWalk w(per_row);
#pragma unroll
    for (int t = 0; t < kTileUnits; ++t, w.next()) {
        r[t] = Raw8{};
        if (threadIdx.x + t * kThreads < total && slot_s[w.row] >= 0)
            r[t] = load8_raw<F16>(a.kv, static_cast<int64_t>(slot_s[w.row]) * a.slot_stride + col + 8 * w.col);
    }
}

template <bool F16>
__device__ __forceinline__ void commit_tile(const AttentionArgs& a, int n, const Raw8 (&r)[kTileUnits],
                                            float (*tile)[kMaxHeadDim + 1]) {
    const int per_row = a.head_dim / 8, total = n * per_row;
    GridWalk w(per_row);
#pragma unroll
    for (int t = 0; t < kTileUnits; ++t, w.next())  // zero bits: 0.0 in F16 and F32
        if (threadIdx.x + t * kThreads < total) raw8_to_floats<F16>(r[t], &tile[w.row][8 * w.col]);
}

// The query rows of one block: ROWS (token, head) pairs of consecutive tokens times the block's
// heads. One token (and any batch of a GQA model) takes one token per block (ROWS = kHeads: the
// most blocks in flight); batches of models with at most two query heads per KV head (MHA) take
// kPromptRows rows, so each K/V tile is read once for up to kPromptRows / heads tokens.
constexpr int kPromptRows = 16;
constexpr int kMaxTileTokens = kPromptRows;

// Query heads of one KV head per block. Batches take the whole group (up to kHeads): their
// tokens already make many blocks. One token takes at most as many as keep a thread's serial
// work to one (row, entry) score and one (row, dimension) value, so that a GQA group of 6-8 heads
// is several short blocks rather than one long one (a decode step at a short context is a
// handful of blocks per layer: their latency is the layer's). A head's arithmetic is the same in
// any chunk, so its result is too (batches of 9-16 tokens with the small chunks were slower:
// SmolLM2 1.49x -> 1.81x a step, H100).
template <int ROWS>
__host__ __device__ constexpr int heads_per_block(int group, int head_dim, int n_tok) {
    const int cap = ROWS > kHeads || n_tok > 1 ? kHeads : max(1, min(kThreads / head_dim, kThreads / kAttnSplit));
    return min(group, cap);
}

template <int ROWS>
__host__ __device__ constexpr int tokens_per_block(int n_head, int n_head_kv) {
    const int heads = n_head / n_head_kv < kHeads ? n_head / n_head_kv : kHeads;  // rows per token
    return ROWS == kHeads || ROWS <= heads ? 1 : ROWS / heads;
}

// Scores: kRowGroups threads per entry, each taking kScoreRows<ROWS> rows.
constexpr int kRowGroups = kThreads / kAttnSplit;
template <int ROWS>
constexpr int kScoreRows = (ROWS + kRowGroups - 1) / kRowGroups;
static_assert(kThreads % kAttnSplit == 0 && kMaxHeadDim <= kThreads, "thread layouts of attend_split");

template <int ROWS>
struct SplitShared {
    alignas(16) float qs[ROWS * kMaxHeadDim];  // row r at r * head_dim; read as float4
    float tile[kAttnSplit][kMaxHeadDim + 1];  // K, then V, of the split's entries (+1: no bank conflicts)
    alignas(16) float sc[ROWS][kAttnSplit];   // read as float4
    float mx[ROWS], sm[ROWS];
    int slot[kAttnSplit];  // cache slot of each entry, -1 = seen by no token of the run (not loaded)
    uint8_t seen[ROWS > kHeads ? kMaxTileTokens : 1][kAttnSplit];  // per token of the run
};

// A split's scores: S.sc[r][j] = (q_r . k_j) * scale, the dot product in dimension order, or
// -inf where row r's token does not see entry j. Two thread layouts, the same operations per
// (row, entry), so a row's bits do not depend on the kernel that computed it:
// one thread per (row, entry) — the shortest chains, for one token, where latency rules;
template <int ROWS>
__device__ __forceinline__ void scores_by_pair(SplitShared<ROWS>& S, int rows, int n, int nh, int hd, float scale) {
    for (int u = threadIdx.x; u < rows * n; u += blockDim.x) {
        const int r = u / n, j = u % n;
        float s = 0.0f;
        for (int d = 0; d < hd; ++d) s = fmaf(S.qs[r * hd + d], S.tile[j][d], s);
        S.sc[r][j] = S.seen[ROWS > kHeads ? r / nh : 0][j] ? s * scale : -INFINITY;
    }
}

// thread (entry j, row group rg) for the rows rg, rg + kRowGroups, ... — each K value read once
// for all of them, the queries four dimensions at a time: for batches, where shared-memory
// traffic rules (7B verify of 9 tokens: 2 LDS per FMA before).
template <int ROWS>
__device__ __forceinline__ void scores_by_entry(SplitShared<ROWS>& S, int rows, int n, int nh, int hd, float scale) {
    const int j = threadIdx.x % kAttnSplit, rg = threadIdx.x / kAttnSplit;
    if (j >= n) return;
    float s[kScoreRows<ROWS>] = {};
    for (int d = 0; d < hd; d += 4) {
        const float k0 = S.tile[j][d], k1 = S.tile[j][d + 1], k2 = S.tile[j][d + 2], k3 = S.tile[j][d + 3];
#pragma unroll
        for (int i = 0; i < kScoreRows<ROWS>; ++i) {
            const int r = rg + i * kRowGroups;
            if (r >= rows) break;
            const float4 qv = *reinterpret_cast<const float4*>(&S.qs[r * hd + d]);
            s[i] = fmaf(qv.w, k3, fmaf(qv.z, k2, fmaf(qv.y, k1, fmaf(qv.x, k0, s[i]))));
        }
    }
#pragma unroll
    for (int i = 0; i < kScoreRows<ROWS>; ++i) {
        const int r = rg + i * kRowGroups;
        if (r >= rows) break;
        S.sc[r][j] = S.seen[ROWS > kHeads ? r / nh : 0][j] ? s[i] * scale : -INFINITY;
    }
}

// Index of row r's (token ia + r / nh, head h0 + r % nh) partial result for this split, in
// part_acc (times head_dim) and part_ml (times 2).
__device__ __forceinline__ int64_t split_part(const AttentionArgs& a, int ia, int h0, int nh, int r, int split) {
    return (static_cast<int64_t>(ia + r / nh) * a.n_head + h0 + r % nh) * a.max_splits + split;
}

// A split's values: acc[r][d] = sum_j p[r][j] v_j[d], entries in order. Again two layouts with
// the same operations per (row, dimension): one thread per (row, dimension);
template <int ROWS>
__device__ __forceinline__ void values_by_pair(const AttentionArgs& a, SplitShared<ROWS>& S, int rows, int n, int nh,
                                               int hd, int ia, int h0, int split) {
    for (int u = threadIdx.x; u < rows * hd; u += blockDim.x) {
        const int r = u / hd, d = u % hd;
        float o = 0.0f;
        for (int j = 0; j < n; ++j) o = fmaf(S.sc[r][j], S.tile[j][d], o);
        a.part_acc[split_part(a, ia, h0, nh, r, split) * hd + d] = o;
    }
}

// thread (dimension d, row group rg) for the rows rg, rg + groups, ... — each V value read once
// for all of them, the probabilities four entries at a time.
template <int ROWS>
__device__ __forceinline__ void values_by_dim(const AttentionArgs& a, SplitShared<ROWS>& S, int rows, int n, int nh,
                                              int hd, int ia, int h0, int split) {
    const int groups = kThreads / hd, d = threadIdx.x % hd, rg = threadIdx.x / hd;  // groups >= 1
    if (rg >= groups) return;
    float o[ROWS] = {};
    const int n4 = n & ~3;
    for (int j = 0; j < n4; j += 4) {
        const float v0 = S.tile[j][d], v1 = S.tile[j + 1][d], v2 = S.tile[j + 2][d], v3 = S.tile[j + 3][d];
#pragma unroll
        for (int i = 0; i < ROWS; ++i) {
            const int r = rg + i * groups;
            if (r >= rows) break;
            const float4 p = *reinterpret_cast<const float4*>(&S.sc[r][j]);
            o[i] = fmaf(p.w, v3, fmaf(p.z, v2, fmaf(p.y, v1, fmaf(p.x, v0, o[i]))));
        }
    }
    for (int j = n4; j < n; ++j) {
        const float v = S.tile[j][d];
#pragma unroll
        for (int i = 0; i < ROWS; ++i) {
            const int r = rg + i * groups;
            if (r >= rows) break;
            o[i] = fmaf(S.sc[r][j], v, o[i]);
        }
    }
#pragma unroll
    for (int i = 0; i < ROWS; ++i) {
        const int r = rg + i * groups;
        if (r >= rows) break;
        a.part_acc[split_part(a, ia, h0, nh, r, split) * hd + d] = o[i];
    }
}

// The split's entries for the tokens [ia, ib), which share an entry list (same off): whether
// each token sees entry j (S.seen) and its cache slot (S.slot; -1: seen by none, not loaded).
// Only step inputs are read (uploaded before the forward; no kernel writes them), so a
// one-token block takes them before waiting for the previous kernel. Returns the split's
// entries (> 0: the caller skips empty splits).
template <int ROWS, bool kTree>
__device__ __forceinline__ int split_entries(const AttentionArgs& a, int ia, int ib, int split, SplitShared<ROWS>& S) {
    const int e0 = split * kAttnSplit;
    int end = 0;  // the longest entry list among the tokens
    for (int i = ia; i < ib; ++i) end = max(end, walk_end<kTree>(a, i));
    const int n = min(kAttnSplit, end - e0);
    const int off = a.off[ia];
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        // A tree batch runs one token per block (attention() below): its walk maps the index.
        const int ej = walk_entry<kTree>(a, ia, e0 + j);
        const int p = a.entry_pos[off + ej];
        bool any = false;
        for (int i = ia; i < ib; ++i) {
            const bool v = e0 + j < walk_end<kTree>(a, i) && visible(a, i, ej, p);
            S.seen[ROWS > kHeads ? i - ia : 0][j] = v;
            any = any || v;
        }
        S.slot[j] = any ? a.entry_slot[off + ej] : -1;
    }
    return n;
}

// The split's n entries (split_entries, in S) for the tokens [ia, ib): K and V tiles loaded
// once, then per (token, head) row exactly the single-token arithmetic — scores in dimension
// order, the split's softmax, values in entry order. A row's bits do not depend on the tile: an
// entry it does not see has probability 0 and adds fmaf(0, v, o) = o, the same as the zero row a
// one-token block holds there (cache values are finite: only written entries are loaded). The
// queries and the K tile are loaded together, the V tile while the softmax runs, where a block
// takes one token (batches of MHA models keep them apart: their tiles and queries in registers
// at once would cost blocks per SM).
template <int ROWS, bool F16, bool kTree>
__device__ __forceinline__ void attend_split(const AttentionArgs& a, int ia, int ib, int split, int g, int h0, int nh,
                                             int n, SplitShared<ROWS>& S) {
    const int hd = a.head_dim, rows = (ib - ia) * nh;
    const int64_t kv_col = static_cast<int64_t>(g) * hd;
    Raw8 r[kTileUnits];
    {  // the queries and the K tile, all loads in flight at once: query element u = (token ia +
       // row) * seg + col of the rows (token, head h0 ..) in order.
        constexpr int per = (ROWS * kMaxHeadDim + kThreads - 1) / kThreads;
        const int seg = nh * hd;
        const float* q = a.q + (static_cast<int64_t>(ia) * a.n_head + h0) * hd;
        float qv[per];
        GridWalk w(seg);
#pragma unroll
        for (int t = 0; t < per; ++t, w.next())
            qv[t] =
                threadIdx.x + t * kThreads < rows * hd ? q[static_cast<int64_t>(w.row) * a.n_head * hd + w.col] : 0.0f;
        if constexpr (ROWS == kHeads) issue_tile<F16>(a, S.slot, n, a.k_offset + kv_col, r);
#pragma unroll
        for (int t = 0; t < per; ++t) {
            const int u = threadIdx.x + t * kThreads;
            if (u < rows * hd) S.qs[u] = qv[t];
        }
        if constexpr (ROWS > kHeads) issue_tile<F16>(a, S.slot, n, a.k_offset + kv_col, r);
        commit_tile<F16>(a, n, r, S.tile);
    }
    __syncthreads();

    const float scale = rsqrtf(static_cast<float>(hd));
    if constexpr (ROWS > kHeads) scores_by_entry(S, rows, n, nh, hd, scale);
    else scores_by_pair(S, rows, n, nh, hd, scale);
    __syncthreads();
    if constexpr (ROWS == kHeads) issue_tile<F16>(a, S.slot, n, a.v_offset + kv_col, r);  // K is no longer read

    // Softmax numerator per row over this split (warp w handles rows w, w + kWarps, ...).
    const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    for (int rr = warp; rr < rows; rr += kWarps) {
        float m = -INFINITY;
        for (int j = lane; j < n; j += 32) m = fmaxf(m, S.sc[rr][j]);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        float l = 0.0f;
        for (int j = lane; j < n; j += 32) {
            const float p = m == -INFINITY ? 0.0f : expf(S.sc[rr][j] - m);
            S.sc[rr][j] = p;
            l += p;
        }
        l = warp_sum(l);
        if (lane == 0) S.mx[rr] = m, S.sm[rr] = l;
    }
    if constexpr (ROWS > kHeads) issue_tile<F16>(a, S.slot, n, a.v_offset + kv_col, r);
    commit_tile<F16>(a, n, r, S.tile);
    __syncthreads();

    if constexpr (ROWS > kHeads) values_by_dim(a, S, rows, n, nh, hd, ia, h0, split);
    else values_by_pair(a, S, rows, n, nh, hd, ia, h0, split);
    for (int rr = threadIdx.x; rr < rows; rr += blockDim.x) {
        const int64_t part = split_part(a, ia, h0, nh, rr, split);
        a.part_ml[2 * part] = S.mx[rr];
        a.part_ml[2 * part + 1] = S.sm[rr];
    }
    __syncthreads();  // the shared arrays are reused by the next run
}

// Before waiting for the previous kernel: the K and V rows of the split's entries (of the
// block's first token) toward L2. The entry list and n_end/off are step inputs (uploaded before
// the forward; no kernel writes them), so reading them here is safe; the cache rows are only
// prefetched (a row this step's RoPE + store writes is read after the wait, from L2).
template <bool F16, bool kTree>
__device__ __forceinline__ void prefetch_split(const AttentionArgs& a, int i, int split, int g) {
    if (i >= a.n_tok || threadIdx.x >= kAttnSplit) return;
    const int e = split * kAttnSplit + static_cast<int>(threadIdx.x);
    if (e >= walk_end<kTree>(a, i)) return;
    const int ej = walk_entry<kTree>(a, i, e);
    constexpr int es = F16 ? 2 : 4;  // bytes per cache value
    const char* kv = static_cast<const char*>(a.kv);
    const int64_t row = a.entry_slot[a.off[i] + ej] * a.slot_stride + static_cast<int64_t>(g) * a.head_dim;
    for (int b = 0; b < a.head_dim * es; b += 128) {  // 128-byte lines
        prefetch_l2(kv + (row + a.k_offset) * es + b);
        prefetch_l2(kv + (row + a.v_offset) * es + b);
    }
}

// Grid: (split, KV head x chunk of query heads, tile of tokens_per_block<ROWS> tokens). The
// one-token kernel is held to five blocks per SM on an F16 cache (96 registers, no spills; free
// it takes more and fits four, which cost GQA prompts 8%: docs/CUDA.md), four on an F32 cache
// (its tile loads hold twice the registers).
template <int ROWS, bool F16, bool kTree>
__global__ void __launch_bounds__(kThreads, ROWS == kHeads ? (F16 ? 5 : 4) : 1) attn_split_kernel(AttentionArgs a) {
    pdl_trigger();
    __shared__ SplitShared<ROWS> S;
    const int split = blockIdx.x;
    const int group = a.n_head / a.n_head_kv, hb = heads_per_block<ROWS>(group, a.head_dim, a.n_tok);
    const int chunks = (group + hb - 1) / hb;
    const int g = blockIdx.y / chunks, h0 = g * group + (blockIdx.y % chunks) * hb;
    const int nh = min(hb, g * group + group - h0);
    const int per = tokens_per_block<ROWS>(a.n_head, a.n_head_kv);
    const int i0 = blockIdx.z * per, i1 = min(i0 + per, a.n_tok);
    const int e0 = split * kAttnSplit;
    // A token past its last entry has nothing here: the merge reads the splits
    // [0, ceil(n_end / kAttnSplit)) of a token only.
    if constexpr (ROWS == kHeads) {  // one token a block: its entries before the wait
        if (e0 >= walk_end<kTree>(a, i0)) return;
        prefetch_split<F16, kTree>(a, i0, split, g);
        const int n = split_entries<ROWS, kTree>(a, i0, i0 + 1, split, S);
        __syncthreads();
        pdl_wait();
        attend_split<ROWS, F16, kTree>(a, i0, i0 + 1, split, g, h0, nh, n, S);
        return;
    }
    prefetch_split<F16, kTree>(a, i0, split, g);
    pdl_wait();
    // Runs of consecutive tokens sharing an entry list (one sequence), one pass over the split
    // per run.
    for (int ia = i0; ia < i1;) {
        if (e0 >= walk_end<kTree>(a, ia)) {
            ++ia;
            continue;
        }
        int ib = ia + 1;
        while (ib < i1 && a.off[ib] == a.off[ia] && e0 < walk_end<kTree>(a, ib)) ++ib;
        const int n = split_entries<ROWS, kTree>(a, ia, ib, split, S);
        __syncthreads();
        attend_split<ROWS, F16, kTree>(a, ia, ib, split, g, h0, nh, n, S);
        ia = ib;
    }
}

// out[i, h, :] = sum_s acc_s * exp(m_s - M) / sum_s l_s * exp(m_s - M), splits in order. Up to
// kMergeHeld splits (512 entries), a thread's loads (the splits' m, l and its dimension's acc)
// are all in flight at once; longer rows load as they go. The same operations either way.
constexpr int kMergeHeld = 8;

template <bool kTree>
__global__ void attn_merge_kernel(AttentionArgs a) {
    pdl_enter();
    const int h = blockIdx.x, i = blockIdx.y, hd = a.head_dim;
    const int n_split = (walk_end<kTree>(a, i) + kAttnSplit - 1) / kAttnSplit;
    const int64_t part = (static_cast<int64_t>(i) * a.n_head + h) * a.max_splits;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {  // out_q: hd % 32 == 0, whole warps
        float M = -INFINITY, L = 0.0f, o = 0.0f;
        if (n_split <= kMergeHeld) {
            float m[kMergeHeld], l[kMergeHeld], v[kMergeHeld];
#pragma unroll
            for (int s = 0; s < kMergeHeld; ++s)
                if (s < n_split) {
                    m[s] = a.part_ml[2 * (part + s)];
                    l[s] = a.part_ml[2 * (part + s) + 1];
                    v[s] = a.part_acc[(part + s) * hd + d];
                }
#pragma unroll
            for (int s = 0; s < kMergeHeld; ++s)
                if (s < n_split) M = fmaxf(M, m[s]);
#pragma unroll
            for (int s = 0; s < kMergeHeld; ++s)
                if (s < n_split && m[s] != -INFINITY) {
                    const float e = expf(m[s] - M);
                    L = fmaf(l[s], e, L);
                    o = fmaf(v[s], e, o);
                }
        } else {
            for (int s = 0; s < n_split; ++s) M = fmaxf(M, a.part_ml[2 * (part + s)]);
            for (int s = 0; s < n_split; ++s) {
                const float m = a.part_ml[2 * (part + s)];
                if (m == -INFINITY) continue;
                const float e = expf(m - M);
                L = fmaf(a.part_ml[2 * (part + s) + 1], e, L);
                o = fmaf(a.part_acc[(part + s) * hd + d], e, o);
            }
        }
        const int64_t e = (static_cast<int64_t>(i) * a.n_head + h) * hd + d;
        const float r = L > 0.0f ? o / L : 0.0f;
        a.out[e] = r;
        if (a.out_q.qs) quantize32(r, a.out_q.qs + (e & ~int64_t{31}), a.out_q.d + e / 32, a.out_q.s + e / 32);
    }
}

// attn_split_kernel for the cache's element type (a run-time flag) at compile-time ROWS and TREE.
template <int ROWS, bool TREE>
void launch_split(const AttentionArgs& a, dim3 grid, dim3 block, cudaStream_t stream) {
    if (a.kv_f16) launch_kernel(attn_split_kernel<ROWS, true, TREE>, grid, block, 0, stream, a);
    else launch_kernel(attn_split_kernel<ROWS, false, TREE>, grid, block, 0, stream, a);
}

}  // namespace

void attention(const AttentionArgs& a, cudaStream_t stream) {
    if (a.head_dim > kMaxHeadDim || a.head_dim % 8 != 0)
        fail(APLS_STATUS_UNSUPPORTED, "CUDA attention: head_dim ", a.head_dim, " (supported: multiples of 8 up to ",
             kMaxHeadDim, ")");
    if (a.out_q.qs && a.head_dim % 32 != 0)
        fail(APLS_STATUS_INTERNAL, "CUDA attention: Q8 output needs head_dim % 32 == 0, not ", a.head_dim);
    const int group = a.n_head / a.n_head_kv;
    const dim3 block(kThreads);
    // Decode and draft (one token): one token per block. (A prompt of one sequence usually
    // takes prompt_attention.h; this serves the rest.) Verify batches and prompts share K/V
    // tiles when a token has at most two query heads per KV head (MHA, as Llama-2): there each
    // K/V row serves one query row per token and the traffic dominates; for GQA groups of 4
    // (Llama-3.2-1B) the longer serial work per block lost more than the traffic saved
    // (docs/CUDA.md), so they keep one token per block.
    const int heads = std::min(kHeads, group);
    const bool tree = a.anc != nullptr;
    if (a.n_tok == 1 || heads > 2 || tree) {  // a tree: one token per block (its own walk)
        const int hb = heads_per_block<kHeads>(group, a.head_dim, a.n_tok), chunks = (group + hb - 1) / hb;
        const dim3 grid(a.max_splits, a.n_head_kv * chunks, a.n_tok);
        if (tree) launch_split<kHeads, true>(a, grid, block, stream);
        else launch_split<kHeads, false>(a, grid, block, stream);
    } else {  // prompts: K/V tiles shared by the tokens of a tile
        const int per = tokens_per_block<kPromptRows>(a.n_head, a.n_head_kv);
        const int hb = heads_per_block<kPromptRows>(group, a.head_dim, a.n_tok), chunks = (group + hb - 1) / hb;
        const dim3 grid(a.max_splits, a.n_head_kv * chunks, (a.n_tok + per - 1) / per);
        launch_split<kPromptRows, false>(a, grid, block, stream);
    }
    const dim3 merge(a.n_head, a.n_tok);
    if (tree) launch_kernel(attn_merge_kernel<true>, merge, 128, 0, stream, a);
    else launch_kernel(attn_merge_kernel<false>, merge, 128, 0, stream, a);
}

}  // namespace apls::cuda
