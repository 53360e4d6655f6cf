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

namespace apls::cuda {

namespace {

constexpr int kHeads = 8;     // query heads per block (a GQA group, or a chunk of it)
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kMaxHeadDim = 128;

__device__ __forceinline__ float kv_at(const void* kv, bool f16, int64_t e) {
    return f16 ? __half2float(static_cast<const __half*>(kv)[e]) : static_cast<const float*>(kv)[e];
}

__device__ __forceinline__ bool visible(const AttentionArgs& a, int i, int j, int p_entry) {
    const int p = a.pos[i];
    if (p_entry < 0 || p_entry > p) return false;
    if (!a.n_old || j >= a.n_old[i]) return true;
    if (a.view_mask) return a.view_mask[a.off[i] + j] != 0;
    return p_entry < a.n_sink || a.n_window < 0 || p_entry > p - a.n_window;
}

// A row of hd cache values (F16 or F32) to floats in shared memory, 8 at a time (16- or
// 32-byte loads; rows start at multiples of 8 elements).
__device__ __forceinline__ void load8_kv(const void* kv, bool f16, int64_t e, float* dst) {
    if (f16) {
        const uint4 u = *reinterpret_cast<const uint4*>(static_cast<const __half*>(kv) + e);
        const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 f = __half22float2(h[i]);
            dst[2 * i] = f.x;
            dst[2 * i + 1] = f.y;
        }
    } else {
        const float4* p = reinterpret_cast<const float4*>(static_cast<const float*>(kv) + e);
        const float4 x = p[0], y = p[1];
        dst[0] = x.x; dst[1] = x.y; dst[2] = x.z; dst[3] = x.w;
        dst[4] = y.x; dst[5] = y.y; dst[6] = y.z; dst[7] = y.w;
    }
}

// The split's K (or V) rows into tile[j][d]: every thread issues its loads at once, so a tile
// costs one memory latency (not one per entry). Entries not seen are zero rows.
__device__ __forceinline__ void load_tile(const AttentionArgs& a, const int* slot_s, int n, int64_t col,
                                          float (*tile)[kMaxHeadDim + 1]) {
    const int hd = a.head_dim, per_row = hd / 8;
    for (int u = threadIdx.x; u < n * per_row; u += blockDim.x) {
        const int j = u / per_row, c = (u % per_row) * 8;
        if (slot_s[j] >= 0) {
            load8_kv(a.kv, a.kv_f16, static_cast<int64_t>(slot_s[j]) * a.slot_stride + col + c, &tile[j][c]);
        } else {
#pragma unroll
            for (int i = 0; i < 8; ++i) tile[j][c + i] = 0.0f;
        }
    }
}

__global__ void __launch_bounds__(kThreads) attn_split_kernel(AttentionArgs a) {
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
    for (int u = threadIdx.x; u < nh * hd; u += blockDim.x) {
        const int h = u / hd, d = u % hd;
        qs[h][d] = a.q[(static_cast<int64_t>(i) * a.n_head + h0 + h) * hd + d];
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
    attn_split_kernel<<<dim3(a.max_splits, a.n_head_kv * chunks, a.n_tok), kThreads, 0, stream>>>(a);
    APLS_CUDA_LAUNCHED();
    attn_merge_kernel<<<dim3(a.n_head, a.n_tok), 128, 0, stream>>>(a);
    APLS_CUDA_LAUNCHED();
}

}  // namespace apls::cuda
