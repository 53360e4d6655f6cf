// cuda/attention.cu — attention over the block KV cache (flash-decoding).
//
// Grid: (split, KV head x chunk of query heads, token). A block scores the entries
// [split * kAttnSplit, ...) of its token's sequence for up to kHeads query heads of one KV head
// (GQA: each K/V row is read once for the chunk), takes the softmax numerator with the split's own
// max, and accumulates V; a second kernel merges the splits of each (token, head) in order. The
// split size is fixed, so a token's result depends only on its own entries and view, never on
// the batch or the grid (blocks past a token's last entry write an empty split and stop).
#include <cfloat>

#include "cuda/dequant.cuh"
#include "cuda/launch.h"
#include "cuda/pdl.cuh"

namespace apls::cuda {

namespace {

constexpr int kHeads = 8;     // query heads per block (a GQA group, or a chunk of it)
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kMaxHeadDim = 128;

__device__ __forceinline__ bool visible(const AttentionArgs& a, int i, int j, int p_entry) {
    const int p = a.pos[i];
    if (p_entry < 0 || p_entry > p) return false;
    if (!a.n_old || j >= a.n_old[i]) return true;
    if (a.view_mask) return a.view_mask[a.off[i] + j] != 0;
    return p_entry < a.n_sink || a.n_window < 0 || p_entry > p - a.n_window;
}

// 8 cache values (F16 or F32) from element e, as raw bits: one 16-byte load (F16) or two (F32).
struct Raw8 {
    uint4 a, b;
};

__device__ __forceinline__ Raw8 load8_raw(const void* kv, bool f16, int64_t e) {
    Raw8 r{};
    if (f16) {
        r.a = *reinterpret_cast<const uint4*>(static_cast<const __half*>(kv) + e);
    } else {
        const uint4* p = reinterpret_cast<const uint4*>(static_cast<const float*>(kv) + e);
        r.a = p[0];
        r.b = p[1];
    }
    return r;
}

__device__ __forceinline__ void raw8_to_floats(const Raw8& r, bool f16, float* dst) {
    if (f16) {
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

__device__ __forceinline__ void load_tile(const AttentionArgs& a, const int* slot_s, int n, int64_t col,
                                          float (*tile)[kMaxHeadDim + 1]) {
    const int per_row = a.head_dim / 8, total = n * per_row;
    Raw8 r[kTileUnits];
#pragma unroll
    for (int t = 0; t < kTileUnits; ++t) {
        const int u = threadIdx.x + t * kThreads, j = u / per_row, c = (u % per_row) * 8;
        r[t] = Raw8{};
        if (u < total && slot_s[j] >= 0)
            r[t] = load8_raw(a.kv, a.kv_f16, static_cast<int64_t>(slot_s[j]) * a.slot_stride + col + c);
    }
#pragma unroll
    for (int t = 0; t < kTileUnits; ++t) {
        const int u = threadIdx.x + t * kThreads, j = u / per_row, c = (u % per_row) * 8;
        if (u < total) raw8_to_floats(r[t], a.kv_f16, &tile[j][c]);  // zero bits: 0.0 in F16 and F32
    }
}

__global__ void __launch_bounds__(kThreads) attn_split_kernel(AttentionArgs a) {
    pdl_enter();
    const int split = blockIdx.x, i = blockIdx.z;
    const int group = a.n_head / a.n_head_kv;
    const int chunks = (group + kHeads - 1) / kHeads;
    const int g = blockIdx.y / chunks, h0 = g * group + (blockIdx.y % chunks) * kHeads;
    const int nh = min(kHeads, g * group + group - h0);
    const int hd = a.head_dim;
    const int n_end = a.n_end[i];
    const int e0 = split * kAttnSplit, e1 = min(e0 + kAttnSplit, n_end);
    const int64_t part = (static_cast<int64_t>(i) * a.n_head) * a.max_splits;

    __shared__ float qs[kHeads][kMaxHeadDim];
    __shared__ float tile[kAttnSplit][kMaxHeadDim + 1];  // K, then V, of the split's entries (+1: no bank conflicts)
    __shared__ float sc[kHeads][kAttnSplit];
    __shared__ float mx[kHeads], sm[kHeads];
    __shared__ int slot_s[kAttnSplit];  // cache slot of each entry, -1 = not seen

    if (e0 >= n_end) {  // past this token's entries: an empty split
        for (int h = threadIdx.x; h < nh; h += blockDim.x) {
            float* ml = a.part_ml + 2 * (part + static_cast<int64_t>(h0 + h) * a.max_splits + split);
            ml[0] = -INFINITY;
            ml[1] = 0.0f;
        }
        return;
    }
    const int n = e1 - e0;
    const float scale = rsqrtf(static_cast<float>(hd));
    const int64_t kv_col = static_cast<int64_t>(g) * hd;
    {  // the queries: all loads in flight at once (nh * hd <= kHeads * kMaxHeadDim)
        float qv[kHeads * kMaxHeadDim / kThreads];
#pragma unroll
        for (int t = 0; t < kHeads * kMaxHeadDim / kThreads; ++t) {
            const int u = threadIdx.x + t * kThreads;
            qv[t] = u < nh * hd ? a.q[(static_cast<int64_t>(i) * a.n_head + h0) * hd + u] : 0.0f;
        }
#pragma unroll
        for (int t = 0; t < kHeads * kMaxHeadDim / kThreads; ++t) {
            const int u = threadIdx.x + t * kThreads;
            if (u < nh * hd) qs[u / hd][u % hd] = qv[t];
        }
    }
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const int off = a.off[i] + e0 + j;
        slot_s[j] = visible(a, i, e0 + j, a.entry_pos[off]) ? a.entry_slot[off] : -1;
    }
    __syncthreads();
    load_tile(a, slot_s, n, a.k_offset + kv_col, tile);
    __syncthreads();

    // Scores: one thread per (head, entry), the dot product in dimension order.
    for (int u = threadIdx.x; u < nh * n; u += blockDim.x) {
        const int h = u / n, j = u % n;
        float s = 0.0f;
        for (int d = 0; d < hd; ++d) s = fmaf(qs[h][d], tile[j][d], s);
        sc[h][j] = slot_s[j] >= 0 ? s * scale : -INFINITY;
    }
    __syncthreads();

    // Softmax numerator per head over this split (warp w handles heads w, w + kWarps, ...).
    const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    for (int h = warp; h < nh; h += kWarps) {
        float m = -INFINITY;
        for (int j = lane; j < n; j += 32) m = fmaxf(m, sc[h][j]);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        float l = 0.0f;
        for (int j = lane; j < n; j += 32) {
            const float p = m == -INFINITY ? 0.0f : expf(sc[h][j] - m);
            sc[h][j] = p;
            l += p;
        }
        l = warp_sum(l);
        if (lane == 0) mx[h] = m, sm[h] = l;
    }
    load_tile(a, slot_s, n, a.v_offset + kv_col, tile);  // the K tile is no longer read
    __syncthreads();

    // Values: one thread per (head, dimension), entries in order.
    for (int u = threadIdx.x; u < nh * hd; u += blockDim.x) {
        const int h = u / hd, d = u % hd;
        float o = 0.0f;
        for (int j = 0; j < n; ++j) o = fmaf(sc[h][j], tile[j][d], o);
        a.part_acc[(part + static_cast<int64_t>(h0 + h) * a.max_splits + split) * hd + d] = o;
    }
    for (int h = threadIdx.x; h < nh; h += blockDim.x) {
        float* ml = a.part_ml + 2 * (part + static_cast<int64_t>(h0 + h) * a.max_splits + split);
        ml[0] = mx[h];
        ml[1] = sm[h];
    }
}

// out[i, h, :] = sum_s acc_s * exp(m_s - M) / sum_s l_s * exp(m_s - M), splits in order.
__global__ void attn_merge_kernel(AttentionArgs a) {
    pdl_enter();
    const int h = blockIdx.x, i = blockIdx.y, hd = a.head_dim;
    const int n_split = (a.n_end[i] + kAttnSplit - 1) / kAttnSplit;
    const int64_t part = (static_cast<int64_t>(i) * a.n_head + h) * a.max_splits;
    float M = -INFINITY;
    for (int s = 0; s < n_split; ++s) M = fmaxf(M, a.part_ml[2 * (part + s)]);
    float L = 0.0f;
    for (int s = 0; s < n_split; ++s) {
        const float m = a.part_ml[2 * (part + s)];
        if (m != -INFINITY) L = fmaf(a.part_ml[2 * (part + s) + 1], expf(m - M), L);
    }
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < n_split; ++s) {
            const float m = a.part_ml[2 * (part + s)];
            if (m != -INFINITY) o = fmaf(a.part_acc[(part + s) * hd + d], expf(m - M), o);
        }
        a.out[(static_cast<int64_t>(i) * a.n_head + h) * hd + d] = L > 0.0f ? o / L : 0.0f;
    }
}

}  // namespace

void attention(const AttentionArgs& a, cudaStream_t stream) {
    if (a.head_dim > kMaxHeadDim || a.head_dim % 8 != 0)
        fail(APLS_STATUS_UNSUPPORTED, "CUDA attention: head_dim ", a.head_dim, " (supported: multiples of 8 up to ", kMaxHeadDim, ")");
    const int group = a.n_head / a.n_head_kv, chunks = (group + kHeads - 1) / kHeads;
    launch_kernel(attn_split_kernel, dim3(a.max_splits, a.n_head_kv * chunks, a.n_tok), kThreads, 0, stream, a);
    launch_kernel(attn_merge_kernel, dim3(a.n_head, a.n_tok), 128, 0, stream, a);
}

}  // namespace apls::cuda
