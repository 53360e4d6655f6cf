// cuda/matvec_tc.cuh — F16 rows times 1..16 tokens on the tensor cores (mma.sync m16n8k16),
// included by matvec.cu (Job, Jobs, locate, store's order, load_weights16).
//
// One of the two F16 kernels (the device picks: f16_on_tensor_cores in matvec.cu). On the FMA
// units (matvec_f) a verify batch of 9 tokens on a 7B F16 costs 2.0-2.3x one token: the
// batch's activation loads and FMAs, not the weights, bound it. Here the products of a weight
// tile with 16 token rows are one instruction: 9 tokens cost 1.2-1.26x one token; one token
// costs 3.4% more than matvec_f's on an H100 and less on an H200 (docs/CUDA.md).
//
// One mma: D (16 x 8) += A (16 x 16) · B (16 x 8), A = activation rows (tokens), B = 8 weight
// rows, K = 16 elements. Thread (g = lane / 4, q = lane % 4) holds weight row g of the tile,
// loaded 16 bytes (8 elements) at a time: the chunk 4*s + q of step s (a warp reads 8 rows x
// 64 consecutive bytes per step). A warp holds kTcTiles such tiles (rows g, g + 8, ...), so
// each activation fragment it loads serves 16 weight rows. The mma's K index is a sum index,
// so any assignment of elements to it works as long as A and B use the same one per thread:
// thread q feeds the K slots {2q, 2q+1, 2q+8, 2q+9} of two mmas with elements 0-3 and 4-7 of
// its chunk, and loads the activations of the same elements into its A slots.
//
// Precision: each activation x is split into x_hi = f16(x) and x_lo = f16(x - x_hi) (exact
// difference): x_hi + x_lo carries 22 bits; products with f16 weights are exact, sums are in
// f32. Up to 8 tokens, A's rows 0-7 hold the tokens' x_hi and rows 8-15 their x_lo (one mma per
// 16 elements); 9-16 tokens take two mmas (x_hi, x_lo), each of 16 token rows. Every output
// element of an mma depends only on its own row of A and column of B, and the hi and lo parts
// are accumulated apart and added last, so a token's result is the same bits in any batch.
#pragma once

#include <cuda_fp16.h>

namespace apls::cuda {
namespace {

constexpr int kTcRows = 8;  // weight rows of one mma tile
// Tiles per warp: the activations (t rows of 4 bytes per element, from L1/L2) cost 2t/R of the
// weights' bytes for R rows per block. 7B F16 on an H200 (docs/CUDA.md): 1 tile, decode 210
// tok/s, verify k=8 1.48x; 2 tiles 224 and 1.45x; 4 tiles 216 and 1.33x; 3 tiles 200.
constexpr int kTcTiles = 2;
constexpr int kTcBlockRows = kTcRows * kTcTiles;  // the block's warps split K
// Warps per block (split-K), the same for every batch size (it fixes the order of the sums). A
// warp's weight loads wait for memory in series, so a row is split among many warps: at 16, a
// 4096-wide row is 8 steps per warp. Measured against 8 warps, 4 steps per iteration and L2
// prefetch ahead (docs/CUDA.md): all slower.
constexpr int kTcWarps = 16;

// D += A · B (m16n8k16, f16 inputs, f32 accumulators); fragments as the PTX ISA lays them out.
__device__ __forceinline__ void mma_f16(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    __trap();  // not launched: the host checks the kernel's PTX version (tc_enabled in matvec.cu)
#endif
}

__device__ __forceinline__ unsigned half2_bits(__half2 h) { return *reinterpret_cast<unsigned*>(&h); }

// Two activations as (hi, lo) f16 pairs: x = hi + lo to 22 bits.
__device__ __forceinline__ void split2(float x0, float x1, unsigned& hi, unsigned& lo) {
    const __half2 h = __floats2half2_rn(x0, x1);
    const float2 hf = __half22float2(h);
    hi = half2_bits(h);
    lo = half2_bits(__floats2half2_rn(x0 - hf.x, x1 - hf.y));
}

// Elements e .. e+7 of token row xt (zeros past k or for absent tokens) as hi/lo pairs:
// hi[i], lo[i] hold elements 2i, 2i+1.
__device__ __forceinline__ void load_split8(const float* xt, int e, bool live, unsigned (&hi)[4], unsigned (&lo)[4]) {
    float4 a = make_float4(0.f, 0.f, 0.f, 0.f), b = a;
    if (live) {
        const float4* p = reinterpret_cast<const float4*>(xt + e);
        a = __ldg(p);
        b = __ldg(p + 1);
    }
    split2(a.x, a.y, hi[0], lo[0]);
    split2(a.z, a.w, hi[1], lo[1]);
    split2(b.x, b.y, hi[2], lo[2]);
    split2(b.z, b.w, hi[3], lo[3]);
}

// F16 weights, T tokens (T <= 8: packed hi/lo, one mma per 16 elements; T == 16: two), NT
// mma tiles of 8 rows per warp (the A fragment, the activations, loaded once for all of them).
// Block: kTcBlockRows rows; warp w takes steps w, w + kTcWarps, ...; each warp's hi and lo sums
// are added, then the warps' totals in warp order.
template <int T>
__global__ void __launch_bounds__(kTcWarps * 32, 2) matvec_tc(Jobs jobs, int n_tok) {
    static_assert(T <= 8 || T == 16, "batch sizes share the 8- and 16-token kernels");
    constexpr int kAcc = T <= 8 ? 1 : 2;  // accumulator tiles: (hi|lo) or hi, lo
    constexpr int kUnroll = 2;  // steps per iteration (loads in flight per thread: kUnroll * NT)
    constexpr int NT = kTcTiles, R = kTcBlockRows;
    pdl_trigger();
    const int lane = threadIdx.x & 31, warp = threadIdx.x / 32, g = lane / 4, q = lane % 4;
    int64_t r0;
    const Job* job = locate<R>(jobs, r0);
    const int n_chunks = static_cast<int>(jobs.k / 8);  // 16-byte chunks per row
    constexpr int kStride = 4 * kTcWarps;                 // chunks between a thread's steps
    const uint8_t* wr[NT];  // row g of each tile; past the end: reread, not stored
#pragma unroll
    for (int j = 0; j < NT; ++j) wr[j] = job->w + min(r0 + kTcRows * j + g, job->rows - 1) * jobs.row_bytes;
    // Before the wait: this thread's first chunks toward L2.
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int i = 0; i < kUnroll; ++i) {
            const int c = 4 * warp + q + i * kStride;
            if (c < n_chunks) prefetch_l2(wr[j] + c * 16);
        }
    pdl_wait();
    const float* xa = job->x + g * jobs.k;  // token g (rows g and g + 8 of A when T <= 8)
    const float* xb = xa + 8 * jobs.k;      // token g + 8 (T == 16)
    const bool live_a = g < n_tok, live_b = T == 16 && g + 8 < n_tok;  // this thread's A rows hold tokens
    float acc[NT][kAcc][4] = {};
    for (int c0 = 4 * warp + q; c0 - q < n_chunks; c0 += kStride * kUnroll) {
        uint4 wv[kUnroll][NT];
#pragma unroll
        for (int i = 0; i < kUnroll; ++i)
#pragma unroll
            for (int j = 0; j < NT; ++j) {
                const int c = c0 + i * kStride;
                wv[i][j] = c < n_chunks ? load_weights16(wr[j] + c * 16) : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
        for (int i = 0; i < kUnroll; ++i) {
            const int c = c0 + i * kStride;
            const bool in = c < n_chunks;
            unsigned hi[4], lo[4];
            load_split8(xa, c * 8, in && live_a, hi, lo);
            if constexpr (T <= 8) {
                // Rows g (x_hi) and g + 8 (x_lo) of token g; K slots {2q,2q+1} and {2q+8,2q+9}.
                const unsigned a0[4] = {hi[0], lo[0], hi[1], lo[1]}, a1[4] = {hi[2], lo[2], hi[3], lo[3]};
#pragma unroll
                for (int j = 0; j < NT; ++j) {
                    mma_f16(acc[j][0], a0, wv[i][j].x, wv[i][j].y);
                    mma_f16(acc[j][0], a1, wv[i][j].z, wv[i][j].w);
                }
            } else {
                unsigned hi8[4], lo8[4];  // token g + 8
                load_split8(xb, c * 8, in && live_b, hi8, lo8);
                const unsigned h0[4] = {hi[0], hi8[0], hi[1], hi8[1]}, h1[4] = {hi[2], hi8[2], hi[3], hi8[3]};
                const unsigned l0[4] = {lo[0], lo8[0], lo[1], lo8[1]}, l1[4] = {lo[2], lo8[2], lo[3], lo8[3]};
#pragma unroll
                for (int j = 0; j < NT; ++j) {
                    mma_f16(acc[j][0], h0, wv[i][j].x, wv[i][j].y);
                    mma_f16(acc[j][0], h1, wv[i][j].z, wv[i][j].w);
                    mma_f16(acc[j][1], l0, wv[i][j].x, wv[i][j].y);
                    mma_f16(acc[j][1], l1, wv[i][j].z, wv[i][j].w);
                }
            }
        }
    }
    // part[w][token][row] = the warp's hi + lo: D's element (m, n) is token m's sum for row n.
    constexpr int kTok = T <= 8 ? 8 : 16;
    __shared__ float part[kTcWarps][kTok][R];
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        const int n = kTcRows * j + 2 * q;
        if constexpr (T <= 8) {
            part[warp][g][n] = acc[j][0][0] + acc[j][0][2];
            part[warp][g][n + 1] = acc[j][0][1] + acc[j][0][3];
        } else {
            part[warp][g][n] = acc[j][0][0] + acc[j][1][0];
            part[warp][g][n + 1] = acc[j][0][1] + acc[j][1][1];
            part[warp][g + 8][n] = acc[j][0][2] + acc[j][1][2];
            part[warp][g + 8][n + 1] = acc[j][0][3] + acc[j][1][3];
        }
    }
    __syncthreads();
    for (int u = threadIdx.x; u < kTok * R; u += blockDim.x) {
        const int t = u / R, rr = u % R;
        if (t >= n_tok || r0 + rr >= job->rows) continue;
        float v = part[0][t][rr];
#pragma unroll
        for (int w = 1; w < kTcWarps; ++w) v += part[w][t][rr];
        float* o = job->y + t * job->ldy + r0 + rr;
        if (n_tok == 1) finish(*job, o, r0 + rr, v);
        else *o = job->accumulate ? *o + v : v;
    }
}

}  // namespace
}  // namespace apls::cuda
