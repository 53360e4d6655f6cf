// cuda/ops.cu — the row operations of the forward pass: embedding, RMSNorm, RoPE + KV store,
// SwiGLU, parallel-group arithmetic, greedy selection. Each is one launch over the batch.
#include <cfloat>
#include <cmath>

#include "cuda/block_reduce.cuh"
#include "cuda/dequant.cuh"
#include "cuda/launch.h"
#include "cuda/pdl.cuh"

namespace apls::cuda {

namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n, int per_block = kThreads) {
    return static_cast<unsigned>((n + per_block - 1) / per_block);
}

__global__ void embed_kernel(int type, const uint8_t* table, size_t row_bytes, int64_t d, const int32_t* tokens,
                             float* x) {
    pdl_enter();
    const int i = blockIdx.y;
    const uint8_t* row = table + static_cast<int64_t>(tokens[i]) * row_bytes;
    for (int64_t j = blockIdx.x * blockDim.x + threadIdx.x; j < d; j += static_cast<int64_t>(gridDim.x) * blockDim.x)
        x[i * d + j] = dequant_elem(type, row, d, j);
}

// One block per row. The row is read in chunks of kNormPer elements per thread, all loads of a
// chunk issued before their use (one memory latency per chunk, not per element): a 4096-wide row
// with 1024 threads is one chunk. With q.qs set (d % 32 == 0, blockDim % 32 == 0: each warp holds
// whole blocks of 32), the output is also quantized for the next products (fused quantize_q8).
constexpr int kNormPer = 4;

__global__ void rms_norm_kernel(const float* x, const int32_t* rows, const float* w, float* y, int d, float eps,
                                QActs q) {
    pdl_trigger();
    for (int j = threadIdx.x * 32; j < d; j += static_cast<int>(blockDim.x) * 32)
        prefetch_l2(w + j);  // one 128-byte line per thread; the weights depend on no kernel
    pdl_wait();
    __shared__ float red[32];
    const int i = blockIdx.x;
    const float* xr = x + static_cast<int64_t>(rows ? rows[i] : i) * d;
    const int step = static_cast<int>(blockDim.x) * kNormPer;
    float ss = 0.0f;
    for (int j0 = threadIdx.x; j0 < d; j0 += step) {
        float v[kNormPer];
#pragma unroll
        for (int u = 0; u < kNormPer; ++u) {
            const int j = j0 + u * static_cast<int>(blockDim.x);
            v[u] = j < d ? xr[j] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < kNormPer; ++u) ss = fmaf(v[u], v[u], ss);
    }
    ss = block_sum(ss, red);
    const float scale = rsqrtf(ss / static_cast<float>(d) + eps);
    for (int j0 = threadIdx.x; j0 < d; j0 += step) {
        float v[kNormPer], g[kNormPer];
#pragma unroll
        for (int u = 0; u < kNormPer; ++u) {
            const int j = j0 + u * static_cast<int>(blockDim.x);
            v[u] = j < d ? xr[j] : 0.0f;
            g[u] = j < d ? w[j] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < kNormPer; ++u) {
            const int j = j0 + u * static_cast<int>(blockDim.x);
            if (j >= d) break;  // warp-uniform when q.qs is set (d % 32 == 0)
            const int64_t e = static_cast<int64_t>(i) * d + j;
            const float o = v[u] * scale * g[u];
            y[e] = o;
            if (q.qs) quantize32(o, q.qs + (e & ~int64_t{31}), q.d + e / 32, q.s + e / 32);
        }
    }
}

// The two dimensions of a head that thread j handles: rotation pair j (j < n_rot/2) as `neox`
// lays pairs out, then the unrotated rest two by two.
__device__ __forceinline__ int2 pair_dims(int j, int n_rot, bool neox) {
    if (!neox) return make_int2(2 * j, 2 * j + 1);
    const int half = n_rot / 2;
    if (j < half) return make_int2(j, j + half);
    return make_int2(n_rot + 2 * (j - half), n_rot + 2 * (j - half) + 1);
}

// One block per (head of q or k, token), one thread per pair of dimensions: pairs below n_rot/2
// rotated (in place), then for a K head the pair of K and of V written to the KV slot. Every
// element is one thread's work, so a token costs one memory latency, not one per head.
__global__ void rope_store_kernel(RopeStoreArgs a) {
    pdl_trigger();
    const int h = blockIdx.x, i = blockIdx.y, j = threadIdx.x;  // j: pair j (pair_dims)
    // The rotation depends only on the position (a step input) and the frequencies (weights):
    // its cos and sin (double precision, the longest part) are taken before the wait.
    const bool rotates = 2 * j < a.head_dim && j < a.n_rot / 2;
    float c = 1.0f, s = 0.0f;
    if (rotates) {
        const double theta = static_cast<double>(a.pos[i]) * a.freq_scale * a.inv_freq[j];
        c = static_cast<float>(cos(theta)), s = static_cast<float>(sin(theta));
    }
    pdl_wait();
    if (2 * j >= a.head_dim) return;
    const bool is_k = h >= a.n_head;
    const int2 dd = pair_dims(j, a.n_rot, a.style == RopeStyle::NEOX);
    float* v = is_k ? a.k + (static_cast<int64_t>(i) * a.n_head_kv + (h - a.n_head)) * a.head_dim
                    : a.q + (static_cast<int64_t>(i) * a.n_head + h) * a.head_dim;
    float x0 = v[dd.x], x1 = v[dd.y];
    if (rotates) {
        const float r0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
        const float r1 = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
        x0 = r0;
        x1 = r1;
        v[dd.x] = x0;
        v[dd.y] = x1;
    }
    if (!is_k) return;
    const int64_t head = static_cast<int64_t>(h - a.n_head) * a.head_dim;  // within the layer's K (V) row
    const int64_t c0 = head + dd.x, c1 = head + dd.y;
    const int64_t base = static_cast<int64_t>(a.slots[i]) * a.slot_stride;
    const float* vr = a.v + static_cast<int64_t>(i) * a.n_head_kv * a.head_dim;
    const float v0 = vr[c0], v1 = vr[c1];
    if (a.kv_f16) {
        __half* kv = static_cast<__half*>(a.kv) + base;
        kv[a.k_offset + c0] = __float2half_rn(x0);
        kv[a.k_offset + c1] = __float2half_rn(x1);
        kv[a.v_offset + c0] = __float2half_rn(v0);
        kv[a.v_offset + c1] = __float2half_rn(v1);
    } else {
        float* kv = static_cast<float*>(a.kv) + base;
        kv[a.k_offset + c0] = x0;
        kv[a.k_offset + c1] = x1;
        kv[a.v_offset + c0] = v0;
        kv[a.v_offset + c1] = v1;
    }
}

// Grid (chunks of the widest row, token, which of q/k/v): row i of each += its bias.
__global__ void qkv_bias_kernel(float* q, float* k, float* v, const float* bq, const float* bk, const float* bv, int qd,
                                int kvd) {
    pdl_enter();
    const int i = blockIdx.y, which = blockIdx.z;
    const int width = which == 0 ? qd : kvd;
    float* y = (which == 0 ? q : which == 1 ? k : v) + static_cast<int64_t>(i) * width;
    const float* b = which == 0 ? bq : which == 1 ? bk : bv;
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j < width) y[j] = y[j] + b[j];
}

__global__ void add_bias_kernel(float* y, const float* b, int d) {
    pdl_enter();
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j < d) y[static_cast<int64_t>(blockIdx.y) * d + j] += b[j];
}

// n % 32 == 0 when q.qs is set (then the result is quantized too, as rms_norm_kernel does).
__global__ void silu_mul_kernel(float* g, const float* u, int64_t n, QActs q) {
    pdl_enter();
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const float v = g[i];
        const float r = v / (1.0f + expf(-v)) * u[i];
        g[i] = r;
        if (q.qs) quantize32(r, q.qs + (i & ~int64_t{31}), q.d + i / 32, q.s + i / 32);
    }
}

__global__ void group_delta_kernel(float* acc, const float* x, const float* x0, int64_t n, bool first) {
    pdl_enter();
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        acc[i] = first ? x[i] - x0[i] : acc[i] + (x[i] - x0[i]);
}

__global__ void group_finish_kernel(float* x, const float* x0, const float* acc, int64_t n) {
    pdl_enter();
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        x[i] = x0[i] + acc[i];
}

// Online softmax denominators: (m1, s1) + (m2, s2) with s_i = sum exp(x - m_i).
__device__ __forceinline__ void merge_exp_sums(float& m, float& s, float m2, float s2) {
    const float M = fmaxf(m, m2);
    if (M == -INFINITY) return;  // both empty
    s = (m == -INFINITY ? 0.0f : s * expf(m - M)) + (m2 == -INFINITY ? 0.0f : s2 * expf(m2 - M));
    m = M;
}

// The better of two (value, id) candidates: larger value, then lower id.
__device__ __forceinline__ void merge_best(float& v, int& i, float v2, int i2) {
    if (v2 > v || (v2 == v && i2 < i)) v = v2, i = i2;
}

// One block per row, one pass: kArgPer elements per thread at a time (all loads issued before
// use), keeping the first maximum (lowest id on ties) and sum exp(x - running max), rescaled
// when the maximum grows; then warps and the block combine in a fixed order.
constexpr int kArgPer = 16;

__global__ void argmax_kernel(float* logits, int n_vocab, int n_valid, int32_t* ids, float* top_p) {
    pdl_enter();
    __shared__ float s_best[32], s_m[32], s_s[32];
    __shared__ int s_id[32];
    float* x = logits + static_cast<int64_t>(blockIdx.x) * n_vocab;
    float best = -FLT_MAX, m = -INFINITY, s = 0.0f;
    int bi = 0x7fffffff;
    const int step = kArgPer * blockDim.x;
    for (int j0 = threadIdx.x; j0 < n_valid; j0 += step) {
        float v[kArgPer];
#pragma unroll
        for (int i = 0; i < kArgPer; ++i) {
            const int j = j0 + i * blockDim.x;
            v[i] = j < n_valid ? x[j] : -INFINITY;
        }
        float pm = -INFINITY;
#pragma unroll
        for (int i = 0; i < kArgPer; ++i) {
            if (v[i] > best) best = v[i], bi = j0 + i * blockDim.x;  // ascending: this thread's first max
            pm = fmaxf(pm, v[i]);
        }
        float ps = 0.0f;
        if (pm != -INFINITY) {
#pragma unroll
            for (int i = 0; i < kArgPer; ++i) ps += expf(v[i] - pm);
        }
        merge_exp_sums(m, s, pm, ps);
    }
    for (int j = n_valid + threadIdx.x; j < n_vocab; j += blockDim.x) x[j] = -INFINITY;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        merge_best(best, bi, __shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, bi, o));
        merge_exp_sums(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    if (lane == 0) s_best[warp] = best, s_id[warp] = bi, s_m[warp] = m, s_s[warp] = s;
    __syncthreads();
    if (warp != 0) return;
    best = lane < n_warps ? s_best[lane] : -FLT_MAX;
    bi = lane < n_warps ? s_id[lane] : 0x7fffffff;
    m = lane < n_warps ? s_m[lane] : -INFINITY;
    s = lane < n_warps ? s_s[lane] : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        merge_best(best, bi, __shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, bi, o));
        merge_exp_sums(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
    }
    if (lane == 0) {
        ids[blockIdx.x] = bi == 0x7fffffff ? 0 : bi;  // all NaN: 0, as the CPU argmax
        top_p[blockIdx.x] = 1.0f / s;                 // m is the row's maximum: exp(best - m) = 1
    }
}

// (v, i) ranks before (hv, hi): a larger value, or the same value and a lower id.
__device__ __forceinline__ bool ranks_before(float v, int i, float hv, int hi) { return v > hv || (v == hv && i < hi); }

// One block per row. Each thread keeps the best kTopKMax of its elements (j = thread, + blockDim,
// ...) as a sorted list in registers; then k rounds pick the block's best head (warps, then
// the block, in a fixed order) and its thread drops it.
__global__ void top_k_kernel(const float* logits, int n_vocab, int k, int32_t* ids) {
    pdl_enter();
    __shared__ float s_v[32];
    __shared__ int s_i[32], s_win;
    const float* x = logits + static_cast<int64_t>(blockIdx.x) * n_vocab;
    float hv[kTopKMax];
    int hi[kTopKMax];
#pragma unroll
    for (int j = 0; j < kTopKMax; ++j) hv[j] = -INFINITY, hi[j] = 0x7fffffff;
    constexpr int kPer = 8;  // loads in flight per thread
    for (int e0 = threadIdx.x; e0 < n_vocab; e0 += kPer * blockDim.x) {
        float xs[kPer];
#pragma unroll
        for (int u = 0; u < kPer; ++u) {
            const int e = e0 + u * blockDim.x;
            xs[u] = e < n_vocab ? x[e] : NAN;  // NaN: never taken
        }
#pragma unroll
        for (int u = 0; u < kPer; ++u) {
            float v = xs[u];
            int i = e0 + u * blockDim.x;  // ascending: a tie keeps the lower id held
            if (!ranks_before(v, i, hv[kTopKMax - 1], hi[kTopKMax - 1])) continue;
#pragma unroll
            for (int j = 0; j < kTopKMax; ++j)  // insert: what it displaces moves down
                if (ranks_before(v, i, hv[j], hi[j])) {
                    const float tv = hv[j];
                    const int ti = hi[j];
                    hv[j] = v, hi[j] = i, v = tv, i = ti;
                }
        }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    for (int r = 0; r < k; ++r) {
        float v = hv[0];
        int i = hi[0];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float v2 = __shfl_xor_sync(0xffffffffu, v, o);
            const int i2 = __shfl_xor_sync(0xffffffffu, i, o);
            if (ranks_before(v2, i2, v, i)) v = v2, i = i2;
        }
        if (lane == 0) s_v[warp] = v, s_i[warp] = i;
        __syncthreads();
        if (warp == 0) {
            v = lane < n_warps ? s_v[lane] : -INFINITY;
            i = lane < n_warps ? s_i[lane] : 0x7fffffff;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) {
                const float v2 = __shfl_xor_sync(0xffffffffu, v, o);
                const int i2 = __shfl_xor_sync(0xffffffffu, i, o);
                if (ranks_before(v2, i2, v, i)) v = v2, i = i2;
            }
            if (lane == 0) {
                s_win = i;
                ids[static_cast<int64_t>(blockIdx.x) * k + r] = i == 0x7fffffff ? 0 : i;
            }
        }
        __syncthreads();
        if (hi[0] == s_win) {  // ids are unique: one thread's head won; the list moves up
#pragma unroll
            for (int j = 0; j + 1 < kTopKMax; ++j) hv[j] = hv[j + 1], hi[j] = hi[j + 1];
            hv[kTopKMax - 1] = -INFINITY, hi[kTopKMax - 1] = 0x7fffffff;
        }
    }
}

__global__ void rerotate_kernel(void* kv, bool kv_f16, int64_t slot_stride, int n_layer, int kv_dim,
                                const int32_t* slots, const float* cos_sin, int n_head_kv, int head_dim, int n_rot,
                                bool neox) {
    pdl_enter();
    const int s = blockIdx.x, layer = blockIdx.y;
    const int pairs = n_rot / 2;
    const int64_t base = static_cast<int64_t>(slots[s]) * slot_stride + static_cast<int64_t>(layer) * 2 * kv_dim;
    for (int u = threadIdx.x; u < n_head_kv * pairs; u += blockDim.x) {
        const int h = u / pairs, j = u % pairs;
        const int2 dd = pair_dims(j, n_rot, neox);
        const int64_t e0 = base + h * head_dim + dd.x, e1 = base + h * head_dim + dd.y;
        const float c = cos_sin[2 * j], sn = cos_sin[2 * j + 1];
        float x0, x1;
        if (kv_f16) {
            x0 = __half2float(static_cast<__half*>(kv)[e0]);
            x1 = __half2float(static_cast<__half*>(kv)[e1]);
        } else {
            x0 = static_cast<float*>(kv)[e0];
            x1 = static_cast<float*>(kv)[e1];
        }
        const float y0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, sn)),
                    y1 = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, c));
        if (kv_f16) {
            static_cast<__half*>(kv)[e0] = __float2half_rn(y0);
            static_cast<__half*>(kv)[e1] = __float2half_rn(y1);
        } else {
            static_cast<float*>(kv)[e0] = y0;
            static_cast<float*>(kv)[e1] = y1;
        }
    }
}

__global__ void dequantize_f16_kernel(int type, const uint8_t* w, size_t row_bytes, int64_t k, int64_t rows,
                                      __half* out) {
    pdl_enter();
    const int64_t n = rows * k;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t r = i / k, j = i % k;
        out[i] = __float2half_rn(dequant_elem(type, w + r * row_bytes, k, j));
    }
}

// Quantized rows, one thread per block of 32: 32 halfs written as four 16-byte stores.
template <int TY>
__global__ void dequantize_blocks_f16_kernel(const uint8_t* w, size_t row_bytes, int64_t nb, int64_t rows,
                                             __half* out) {
    pdl_enter();
    const int64_t n = rows * nb;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t r = i / nb, b = i % nb;
        float v[32];
        dequant_block<TY>(w + r * row_bytes, nb, b, v);
        uint4* o = reinterpret_cast<uint4*>(out + i * 32);  // = out + r * k + b * 32
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            __half2 h[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) h[j] = __floats2half2_rn(v[8 * c + 2 * j], v[8 * c + 2 * j + 1]);
            o[c] = *reinterpret_cast<const uint4*>(h);
        }
    }
}

__global__ void to_f16_kernel(const float* x, int64_t n, __half* out) {
    pdl_enter();
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        out[i] = __float2half_rn(x[i]);
}

unsigned grid_1d(int64_t n) { return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 4096)); }

}  // namespace

void embed(const DeviceWeight& table, const int32_t* tokens, int n_tok, float* x, cudaStream_t stream) {
    const dim3 grid(blocks_for(table.k), n_tok);
    launch_kernel(embed_kernel, grid, kThreads, 0, stream, static_cast<int>(table.type), table.data, table.row_bytes,
                  table.k, tokens, x);
}

void rms_norm(const float* x, const int32_t* rows, const float* w, float* y, int n_rows, int d, float eps,
              cudaStream_t stream, const QActs& q, bool wide) {
    if (n_rows <= 0) return;
    if (q.qs && d % 32 != 0) fail(APLS_STATUS_INTERNAL, "rms_norm: quantized output needs d % 32 == 0");
    // Threads: wide, one per element up to 1024 (each warp then quantizes one block of 32: the
    // quantizations run side by side, not kNormPer after one another; SmolLM2's one-token
    // RMSNorm 2.9 -> 2.3 us, H100), else enough for one chunk of the row (at most 1024); a
    // multiple of 32.
    const int threads = wide && d <= 1024 ? std::max(32, (d + 31) / 32 * 32)
                                          : std::min(1024, std::max(32, (d / kNormPer + 31) / 32 * 32));
    launch_kernel(rms_norm_kernel, n_rows, threads, 0, stream, x, rows, w, y, d, eps, q);
}

std::vector<double> rope_inv_freq(float base, int n_rot) {
    std::vector<double> f(static_cast<size_t>(n_rot / 2));
    for (int i = 0; i < n_rot / 2; ++i)
        f[i] = std::pow(static_cast<double>(base), -2.0 * static_cast<double>(i) / static_cast<double>(n_rot));
    return f;
}

void rope_store(const RopeStoreArgs& a, cudaStream_t stream) {
    if (a.n_tok <= 0) return;
    const int threads = (a.head_dim / 2 + 31) / 32 * 32;  // one per pair
    launch_kernel(rope_store_kernel, dim3(a.n_head + a.n_head_kv, a.n_tok), threads, 0, stream, a);
}

void qkv_bias(float* q, float* k, float* v, const float* bq, const float* bk, const float* bv, int n_tok, int qd,
              int kvd, cudaStream_t stream) {
    if (n_tok <= 0) return;
    const dim3 grid(blocks_for(std::max(qd, kvd)), n_tok, 3);
    launch_kernel(qkv_bias_kernel, grid, kThreads, 0, stream, q, k, v, bq, bk, bv, qd, kvd);
}

void add_bias(float* y, const float* b, int n_tok, int d, cudaStream_t stream) {
    if (n_tok <= 0) return;
    launch_kernel(add_bias_kernel, dim3(blocks_for(d), n_tok), kThreads, 0, stream, y, b, d);
}

void silu_mul(float* g, const float* u, int64_t n, cudaStream_t stream, const QActs& q) {
    if (q.qs && n % 32 != 0) fail(APLS_STATUS_INTERNAL, "silu_mul: quantized output needs n % 32 == 0");
    launch_kernel(silu_mul_kernel, grid_1d(n), kThreads, 0, stream, g, u, n, q);
}

void group_delta(float* acc, const float* x, const float* x0, int64_t n, bool first, cudaStream_t stream) {
    launch_kernel(group_delta_kernel, grid_1d(n), kThreads, 0, stream, acc, x, x0, n, first);
}

void group_finish(float* x, const float* x0, const float* acc, int64_t n, cudaStream_t stream) {
    launch_kernel(group_finish_kernel, grid_1d(n), kThreads, 0, stream, x, x0, acc, n);
}

void copy(float* dst, const float* src, int64_t n, cudaStream_t stream) {
    APLS_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * sizeof(float), cudaMemcpyDeviceToDevice, stream));
}

void argmax_rows(float* logits, int m, int n_vocab, int n_valid, int32_t* ids, float* top_p, cudaStream_t stream) {
    if (m <= 0) return;
    launch_kernel(argmax_kernel, m, 1024, 0, stream, logits, n_vocab, n_valid, ids, top_p);
}

void top_k_rows(const float* logits, int m, int n_vocab, int k, int32_t* ids, cudaStream_t stream) {
    if (m <= 0) return;
    launch_kernel(top_k_kernel, m, 512, 0, stream, logits, n_vocab, k, ids);
}

void kv_rerotate(void* kv, bool kv_f16, int64_t slot_stride, int n_layer, int kv_dim, const int32_t* slots, int n_slots,
                 const float* cos_sin, int n_head_kv, int head_dim, int n_rot, RopeStyle style, cudaStream_t stream) {
    if (n_slots <= 0) return;
    launch_kernel(rerotate_kernel, dim3(n_slots, n_layer), 128, 0, stream, kv, kv_f16, slot_stride, n_layer, kv_dim,
                  slots, cos_sin, n_head_kv, head_dim, n_rot, style == RopeStyle::NEOX);
}

void dequantize_f16(const DeviceWeight& w, int64_t rows, void* out, cudaStream_t stream) {
    __half* h = static_cast<__half*>(out);
    const int64_t nb = w.k / 32;
    const unsigned grid = grid_1d(rows * nb);
    switch (w.type) {  // quantized: a thread per block
        case TensorType::Q8_0:
            launch_kernel(dequantize_blocks_f16_kernel<8>, grid, kThreads, 0, stream, w.data, w.row_bytes, nb, rows, h);
            return;
        case TensorType::Q4_0:
            launch_kernel(dequantize_blocks_f16_kernel<2>, grid, kThreads, 0, stream, w.data, w.row_bytes, nb, rows, h);
            return;
        case TensorType::Q4_1:
            launch_kernel(dequantize_blocks_f16_kernel<3>, grid, kThreads, 0, stream, w.data, w.row_bytes, nb, rows, h);
            return;
        default:
            break;
    }
    launch_kernel(dequantize_f16_kernel, grid_1d(rows * w.k), kThreads, 0, stream, static_cast<int>(w.type), w.data,
                  w.row_bytes, w.k, rows, static_cast<__half*>(out));
}

void to_f16(const float* x, int64_t n, void* out, cudaStream_t stream) {
    launch_kernel(to_f16_kernel, grid_1d(n), kThreads, 0, stream, x, n, static_cast<__half*>(out));
}

}  // namespace apls::cuda
