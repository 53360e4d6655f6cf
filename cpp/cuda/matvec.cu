// cuda/matvec.cu — matrix times a few vectors (decode, draft, verify: t <= 64 tokens, in groups of 16).
//
// Float rows: a block computes R rows (1 for one token, 4 for batches); its kWarps warps split
// each row (split-K). Thread (warp w, lane i) walks the row in units of 8 elements (16 bytes)
// w*32 + i, + kWarps*32, ...: a warp's loads are consecutive (coalesced). Quantized rows (a
// block of 32 is only 16-34 bytes): lane i of a warp takes blocks i, i + 32, ..., so that each
// thread has several loads in flight; one token runs matvec_q1 (a warp per row), batches
// matvec_q (a warp per R rows, the same 32 streams per row). Each unit is read once and
// multiplied with all t activation rows (read through the cache) — or, for small matrices, with
// a group of them, the batch split over the grid's y (token_warps: latency, not bytes, decides
// there). Per (token, row) the arithmetic is the same sequence of operations for any batch size
// T and split (per thread in unit order, then a butterfly over lanes, then warps in order), so
// results are batch invariant: tokens beyond n_tok are skipped by a predicate, never change the
// order.
#include <algorithm>
#include <type_traits>

#include "cuda/dequant.cuh"
#include "cuda/launch.h"
#include "cuda/pdl.cuh"

namespace apls::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kMaxJobs = 8;
constexpr int kPrefetchUnits = 8;  // per thread and row, before the wait for the previous kernel

// Several products in one launch (q, k and v; gate and up; the layers of a parallel group):
// same weight type and k, each with its own weight, input and output. Blocks [begin, end) of
// the grid belong to job j.
struct Job {
    const uint8_t* w;
    const float* x;
    QActs xq;
    float* y;
    int64_t rows, ldy;
    int begin;
    bool accumulate;
    const float* bias;  // (rows) added last (the q/k/v biases of qwen2), or nullptr
};
struct Jobs {
    Job job[kMaxJobs];
    int n;
    size_t row_bytes;
    int64_t k;
};

// Row r of a one-token output: y = s, or y + s (accumulate), then + bias[r] where the job has a
// bias (matvec_multi allows one for one token only) — the same two roundings as the product
// followed by a separate bias kernel, without its launch. Batch epilogues store s (or y + s).
__device__ __forceinline__ void finish(const Job& job, float* o, int64_t r, float s) {
    float v = job.accumulate ? *o + s : s;
    if (job.bias) v = v + job.bias[r];
    *o = v;
}

// Float kernels, rows per block: one for a single token (more blocks in flight); four for
// batches, so that each activation load (the batch's cost: T loads per weight unit) serves four
// rows (two or one: slower, measured).
__host__ __device__ constexpr int float_rows_per_block(int T) { return T == 1 ? 1 : 4; }
// Quantized kernels, rows per warp (a block has kWarps warps): the same trade, but two for 16
// tokens, where four would hold 64 accumulators per thread (verify of 9 tokens on a 7B Q4_0:
// 2.81x -> 2.57x of one token with the L1 bypass, docs/BENCHMARKS.md).
// Units of several sub-blocks (S = 2, 4: the K-quants) already hold 16-32 weight registers per
// row: one row per warp (with four, the Q6_K batch kernels spilled).
__host__ __device__ constexpr int q_rows_per_warp(int T, int S = 1) {
    return S > 1 || T == 1 ? 1 : T == 2 || T == 16 ? 2 : 4;
}

// This block's job and first row (rows r .. r + R - 1). The block's kWarps warps split the row
// (split-K): warp w takes units w*32 + lane, + kWarps*32, ...; their sums are added in warp order.
template <int R>
__device__ __forceinline__ const Job* locate(const Jobs& jobs, int64_t& r) {
    int j = 0;
    while (j + 1 < jobs.n && static_cast<int>(blockIdx.x) >= jobs.job[j + 1].begin) ++j;
    const Job* job = &jobs.job[j];
    r = static_cast<int64_t>(blockIdx.x - job->begin) * R;
    return job;
}

// Before waiting for the previous kernel (weights depend on none): this thread's first units of
// each of its rows toward L2, so that the block's loads after the wait hit L2 (pdl.cuh).
template <int R>
__device__ __forceinline__ void prefetch_units(const uint8_t* const (&wr)[R], int64_t first, int64_t n_units,
                                               int64_t unit_bytes, int stride = kWarps * 32) {
#pragma unroll
    for (int q = 0; q < R; ++q)
#pragma unroll
        for (int i = 0; i < kPrefetchUnits; ++i) {
            const int64_t u = first + static_cast<int64_t>(i) * stride;
            if (u < n_units) prefetch_l2(wr[q] + u * unit_bytes);
        }
}

// Lanes' sums (butterfly), then the warps' sums in warp order, then out (+)= the total.
template <int T, int R>
__device__ __forceinline__ void store(float (&acc)[R][T], int n_tok, int64_t r0, const Job& job) {
    __shared__ float part[kWarps][R][T];
    const int warp = threadIdx.x / 32;
#pragma unroll
    for (int q = 0; q < R; ++q)
#pragma unroll
        for (int t = 0; t < T; ++t) {  // every slot (zeros past the batch): chains that interleave
            const float s = warp_sum(acc[q][t]);
            if ((threadIdx.x & 31) == 0) part[warp][q][t] = s;
        }
    __syncthreads();
    for (int u = threadIdx.x; u < R * T; u += blockDim.x) {
        const int q = u / T, t = u % T;
        if (t >= n_tok || r0 + q >= job.rows) continue;
        float s = part[0][q][t];
#pragma unroll
        for (int w = 1; w < kWarps; ++w) s += part[w][q][t];
        float* o = job.y + t * job.ldy + r0 + q;
        if constexpr (T == 1) finish(job, o, r0 + q, s);
        else *o = job.accumulate ? *o + s : s;
    }
}

// 16 bytes of weights. A block reads each weight once, so they are loaded without allocating in
// L1: a batch's activations, read again for every row of the block, stay there.
__device__ __forceinline__ uint4 load_weights16(const void* p) {
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    return r;
}

// Bit 4 of each byte from the low 4 bits of x (element 4i + c takes bit c): Q5_0/Q5_1 high bits.
__device__ __forceinline__ unsigned spread_bit4(unsigned x) {
    return ((x & 1u) << 4) | ((x & 2u) << 11) | ((x & 4u) << 18) | ((x & 8u) << 25);
}

// ---- one packed word of quants (4 elements as int8x4), as every kernel decodes it ----
// load_unit (a lane's whole unit) and load_qmma_unit (a thread's words of an mma tile) both
// decode through these, so the kernels see the same element values.
constexpr unsigned kLowNibbles = 0x0F0F0F0Fu;

// Q4_0/Q4_1: word i of a block's 16 quant bytes x holds elements 4i..4i+3 (low nibbles, s = 0)
// and 16+4i.. (high nibbles, s = 1), unsigned.
__device__ __forceinline__ unsigned q4_word(unsigned x, int s) { return (x >> (4 * s)) & kLowNibbles; }

// Q5_0/Q5_1: word i of the 16 low-bit bytes x and the block's 32 high bits qh: elements 4i..
// (s = 0) or 16+4i.. (s = 1); Q5_0's q - 16 signed, Q5_1's unsigned.
template <int TY>
__device__ __forceinline__ unsigned q5_word(unsigned x, unsigned qh, int i, int s) {
    const unsigned v = q4_word(x, s) | spread_bit4(qh >> (16 * s + 4 * i));
    return TY == 6 ? __vsub4(v, 0x10101010u) : v;
}

// Q4_K/Q5_K: word v of a 32-byte group of low bits (sub-block 2p + s: s = 0 its low nibbles, 1
// its high) and, for Q5_K, the matching word h of the high-bit bytes (bit 2p + s), unsigned.
__device__ __forceinline__ unsigned k45_word(unsigned v, unsigned h, int p, int s) {
    return q4_word(v, s) | (((h >> (2 * p + s)) & 0x01010101u) << 4);
}

// Q6_K: sub-block c of a half block: its low-bit word l (nibble c / 2) and high-bit word hb
// (bits 2c, 2c + 1), q - 32 signed.
__device__ __forceinline__ unsigned q6k_word(unsigned l, unsigned hb, int c) {
    const unsigned lo = (l >> (4 * (c / 2))) & kLowNibbles;
    const unsigned hi = ((hb >> (2 * c)) & 0x03030303u) << 4;
    return __vsub4(lo | hi, 0x20202020u);
}

// Block ib of a quantized device row of nb blocks (weight_layout.h) as 8 packed int8x4 words
// (w[i] holds elements 4i..4i+3), its scale and offset: the quants in one (Q4) or two (Q8)
// aligned 128-bit loads. Q4 nibbles stay unsigned (0..15); the -8 of Q4_0 is applied in floats.
template <int TY>
__device__ __forceinline__ void load_block(const uint8_t* row, int64_t nb, int64_t ib, int (&w)[8], float& d,
                                           float& m) {
    const uint4* q = reinterpret_cast<const uint4*>(row + ib * quant_bytes<TY>());
    const uint8_t* dm = row + scale_at<TY>(nb, ib);
    d = half_at(dm);
    m = TY == 3 ? half_at(dm + 2) : 0.0f;
    const uint4 a = load_weights16(q);
    if (TY == 8) {
        const uint4 b = load_weights16(q + 1);
        w[0] = static_cast<int>(a.x), w[1] = static_cast<int>(a.y), w[2] = static_cast<int>(a.z),
        w[3] = static_cast<int>(a.w);
        w[4] = static_cast<int>(b.x), w[5] = static_cast<int>(b.y), w[6] = static_cast<int>(b.z),
        w[7] = static_cast<int>(b.w);
    } else {
        const unsigned v[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            w[i] = static_cast<int>(q4_word(v[i], 0));  // elements 4i..4i+3
            w[i + 4] = static_cast<int>(q4_word(v[i], 1));  // elements 16+4i..
        }
    }
}

// The CPU kernels' float expression for block b of a quantized row (Q8_0 = 8, Q4_0 = 2,
// Q4_1 = 3) and one token: isum = the exact integer dot product of the block's quants with the
// token's Q8 activations (scale xd, xs = xd * their sum); d, m: the block's scale and offset.
template <int TY>
__device__ __forceinline__ float block_part(float d, float m, float xd, float xs, int isum) {
    if (TY == 8) return __fmul_rn(__fmul_rn(d, xd), static_cast<float>(isum));
    if (TY == 2) return __fmul_rn(d, __fsub_rn(__fmul_rn(xd, static_cast<float>(isum)), __fmul_rn(8.0f, xs)));
    return __fadd_rn(__fmul_rn(__fmul_rn(d, xd), static_cast<float>(isum)), __fmul_rn(m, xs));
}

// ---- units: what one lane reads per step ----
// A unit is unit_subs<TY>() sub-blocks of 32 elements that share their loads: one block of
// Q8_0/Q4_0/Q4_1/Q5_0/Q5_1, two sub-blocks of Q4_K/Q5_K (the low and high nibbles of 32 bytes),
// four of Q6_K (half a block: 64 bytes of low bits, 32 of high bits). Per sub-block the exact
// integer dot product with the token's Q8 activations, then one float part added to the lane's
// sum, sub-blocks in order: the same operations for a token alone or in a batch.
template <int TY>
__host__ __device__ constexpr int unit_subs() {
    return TY == 12 || TY == 13 ? 2 : TY == 14 ? 4 : 1;
}

template <int TY>
struct Unit {
    static constexpr int S = unit_subs<TY>();
    int w[S][8];  // sub-block s, elements 4i..4i+3 as int8x4: unsigned (Q4, Q5_1, Q4_K, Q5_K) or signed
    float a[S], b[S];  // float scale and offset of each sub-block (see unit_accum)
    int sc[S][2];  // Q6_K: the integer scales of each sub-block's two halves of 16
};

__device__ __forceinline__ unsigned u32_at(const uint8_t* p) {  // 2-byte aligned
    const unsigned short* h = reinterpret_cast<const unsigned short*>(p);
    return static_cast<unsigned>(h[0]) | static_cast<unsigned>(h[1]) << 16;
}

// Unit u of a device row of nb blocks.
template <int TY>
__device__ __forceinline__ void load_unit(const uint8_t* row, int64_t nb, int64_t u, Unit<TY>& U) {
    if constexpr (TY == 2 || TY == 3 || TY == 8) {
        load_block<TY>(row, nb, u, U.w[0], U.a[0], U.b[0]);
    } else if constexpr (TY == 6 || TY == 7) {
        const uint4 a = load_weights16(row + u * 16);
        const uint8_t* sf = row + scale_at<TY>(nb, u);
        const unsigned qh = u32_at(sf + (TY == 6 ? 2 : 4));
        U.a[0] = half_at(sf);
        U.b[0] = TY == 7 ? half_at(sf + 2) : 0.0f;
        const unsigned v[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            U.w[0][i] = static_cast<int>(q5_word<TY>(v[i], qh, i, 0));
            U.w[0][i + 4] = static_cast<int>(q5_word<TY>(v[i], qh, i, 1));
        }
    } else if constexpr (TY == 12 || TY == 13) {
        const int64_t b = u / 4;
        const int p = static_cast<int>(u % 4);  // sub-blocks 2p (low nibbles), 2p + 1 (high)
        const uint8_t* q = row + b * quant_bytes<TY>();
        const uint4* qs = reinterpret_cast<const uint4*>(q + (TY == 13 ? 32 : 0) + 32 * p);
        const uint4 r0 = load_weights16(qs), r1 = load_weights16(qs + 1);
        const unsigned v[8] = {r0.x, r0.y, r0.z, r0.w, r1.x, r1.y, r1.z, r1.w};
        unsigned h[8] = {};
        if (TY == 13) {
            const uint4 h0 = load_weights16(q), h1 = load_weights16(q + 16);
            h[0] = h0.x, h[1] = h0.y, h[2] = h0.z, h[3] = h0.w, h[4] = h1.x, h[5] = h1.y, h[6] = h1.z, h[7] = h1.w;
        }
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            U.w[0][i] = static_cast<int>(k45_word(v[i], h[i], p, 0));
            U.w[1][i] = static_cast<int>(k45_word(v[i], h[i], p, 1));
        }
        const uint8_t* sf = row + scale_at<TY>(nb, b);
#pragma unroll
        for (int s = 0; s < 2; ++s) k4_sub_scales(sf, 2 * p + s, U.a[s], U.b[s]);
    } else {  // Q6_K
        const int64_t b = u / 2;
        const int h = static_cast<int>(u % 2);
        const uint8_t* q = row + b * quant_bytes<14>();
        const uint4* ql = reinterpret_cast<const uint4*>(q + 64 * h);
        const uint4* qh = reinterpret_cast<const uint4*>(q + 128 + 32 * h);
        unsigned l[16], hb[8];
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const uint4 r = load_weights16(ql + c);
            l[4 * c] = r.x, l[4 * c + 1] = r.y, l[4 * c + 2] = r.z, l[4 * c + 3] = r.w;
        }
#pragma unroll
        for (int c = 0; c < 2; ++c) {
            const uint4 r = load_weights16(qh + c);
            hb[4 * c] = r.x, hb[4 * c + 1] = r.y, hb[4 * c + 2] = r.z, hb[4 * c + 3] = r.w;
        }
        const uint8_t* sf = row + scale_at<14>(nb, b);
        const float d = half_at(sf + 16);
#pragma unroll
        for (int c = 0; c < 4; ++c) {  // sub-block 4h + c: element e: ql[e + 32 (c & 1)] >> 4 (c / 2), qh[e] >> 2c
#pragma unroll
            for (int i = 0; i < 8; ++i) U.w[c][i] = static_cast<int>(q6k_word(l[i + 8 * (c & 1)], hb[i], c));
            const int j = 4 * h + c;
            U.sc[c][0] = static_cast<int8_t>(sf[2 * j]);
            U.sc[c][1] = static_cast<int8_t>(sf[2 * j + 1]);
            U.a[c] = d;
        }
    }
}

// Sub-block s's float part for one token, as the CPU kernels compute it from the exact integer
// dot product isum with the token's Q8 activations (scale xd, xs = xd * their sum) and the
// sub-block's float scale a and offset b (Unit's): Q8_0, Q4_0, Q4_1 block_part; Q5_0 (a xd) isum
// with signed q - 16; Q5_1 (a xd) isum + b xs; Q4_K, Q5_K (a xd) isum - b xs with a = d sc and
// b = dmin m; Q6_K (a xd) isum, isum = sc_lo isum_lo + sc_hi isum_hi with signed q - 32. One
// expression for every kernel (matvec_q1, matvec_q, matvec_qmma), so each has the same bits.
template <int TY>
__device__ __forceinline__ float sub_part(float a, float b, float xd, float xs, int isum) {
    if (TY == 2 || TY == 3 || TY == 8) return block_part<TY>(a, b, xd, xs, isum);
    if (TY == 6 || TY == 14) return __fmul_rn(__fmul_rn(a, xd), static_cast<float>(isum));
    if (TY == 7) return __fadd_rn(__fmul_rn(__fmul_rn(a, xd), static_cast<float>(isum)), __fmul_rn(b, xs));
    return __fsub_rn(__fmul_rn(__fmul_rn(a, xd), static_cast<float>(isum)), __fmul_rn(b, xs));
}

// Whether sub_part reads xs (the activations' sums).
template <int TY>
__host__ __device__ constexpr bool uses_xs() {
    return TY == 2 || TY == 3 || TY == 7 || TY == 12 || TY == 13;
}

// acc += unit U times one token's activations of the same elements (qs: 32 * S int8, xd, xs: S):
// per sub-block its exact integer dot product, then sub_part added to acc, sub-blocks in order.
template <int TY>
__device__ __forceinline__ float unit_accum(const Unit<TY>& U, const int8_t* qs, const float* xd, const float* xs,
                                            float acc) {
#pragma unroll
    for (int s = 0; s < Unit<TY>::S; ++s) {
        const int4* xv = reinterpret_cast<const int4*>(qs + 32 * s);
        const int4 a = __ldg(xv), b = __ldg(xv + 1);
        int lo = 0, hi = 0;
        lo = __dp4a(U.w[s][0], a.x, lo);
        lo = __dp4a(U.w[s][1], a.y, lo);
        lo = __dp4a(U.w[s][2], a.z, lo);
        lo = __dp4a(U.w[s][3], a.w, lo);
        hi = __dp4a(U.w[s][4], b.x, hi);
        hi = __dp4a(U.w[s][5], b.y, hi);
        hi = __dp4a(U.w[s][6], b.z, hi);
        hi = __dp4a(U.w[s][7], b.w, hi);
        const int isum = TY == 14 ? U.sc[s][0] * lo + U.sc[s][1] * hi : lo + hi;
        acc = __fadd_rn(acc, sub_part<TY>(U.a[s], U.b[s], __ldg(xd + s), uses_xs<TY>() ? __ldg(xs + s) : 0.0f, isum));
    }
    return acc;
}

// Bytes of weights a unit stands for (for the prefetch before the wait): its share of the row.
template <int TY>
constexpr int unit_bytes() {
    return quant_bytes<TY>() * 32 * unit_subs<TY>() / block_elems<TY>();
}

// The sum of a float over each group of G consecutive lanes (a butterfly; G = 32: warp_sum).
template <int G>
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
    for (int o = G / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Lanes per row of the one-token kernel: 32, or 16 / 8 where a row has at most that many units
// (Q6_K rows of k <= 2048, as Qwen2.5-Coder-1.5B's head and attn_v; K-quant rows of k <= 1024),
// so a warp takes 2 or 4 rows instead of leaving most lanes idle. The same bits as a whole warp
// per row: there the lanes >= G hold zeros, and the butterfly's first steps add only those.
__host__ __device__ constexpr int q1_lanes(int64_t n_units) { return n_units <= 8 ? 8 : n_units <= 16 ? 16 : 32; }

// One token times quantized rows: G lanes per row (a warp per row, or 2 or 4 rows per warp:
// q1_lanes); lane i sums the parts of units i, i + G, ... in order (stream i), then a butterfly
// over the lanes adds the streams. The batch kernel (matvec_q) keeps exactly this order (its 32
// streams, those past the row's units zeros), so a token's result is the same bits alone or in
// a batch.
template <int TY, int G>
__global__ void __launch_bounds__(kWarps * 32) matvec_q1(Jobs jobs, int n_tok) {
    constexpr int S = unit_subs<TY>();
    pdl_trigger();
    const int lane = threadIdx.x & (G - 1);
    int64_t r0;
    const Job* job = locate<kWarps * (32 / G)>(jobs, r0);
    const int64_t r = r0 + threadIdx.x / G;
    const int64_t k = jobs.k, nb = k / block_elems<TY>(), nu = k / (32 * S);
    const QActs xq = job->xq;
    const uint8_t* wr[1] = {job->w + min(r, job->rows - 1) * jobs.row_bytes};  // past the end: reread, not stored
    prefetch_units<1>(wr, lane, nu, unit_bytes<TY>(), G);
    pdl_wait();
    float acc = 0.0f;
#pragma unroll 4
    for (int64_t u = lane; u < nu; u += G) {
        Unit<TY> U;
        load_unit<TY>(wr[0], nb, u, U);
        acc = unit_accum<TY>(U, xq.qs + u * 32 * S, xq.d + u * S, xq.s + u * S, acc);
    }
    acc = group_sum<G>(acc);
    if (lane == 0 && r < job->rows) finish(*job, job->y + r, r, acc);
}

// A warp's R x TW sums (row q, token t; slots past the batch hold zeros) added over its lanes and
// stored. Up to 8 slots: a reduce-scatter (warp_sums, N - 1 + log2(32 / N) shuffles), each slot's
// sum left in one lane, which stores it; more (the head's 16 tokens a warp): a butterfly per slot
// and lane 0 stores them — the same bits either way. Measured on the H200 (SmolLM2 after a
// 512-token prompt, kernel time): the 9-token Q4_1 products 516 -> 450 us a step with the
// reduce-scatter, but the head's 16 slots 47 -> 61 us, so wider warps keep the butterflies.
template <int R, int TW>
__device__ __forceinline__ void store_sums(const Job& job, float (&acc)[R][TW], int lane, int64_t r0, int t0,
                                           int n_mine) {
    constexpr int N = R * TW;
    if constexpr (N <= 8) {
        float v[N];
#pragma unroll
        for (int q = 0; q < R; ++q)
#pragma unroll
            for (int t = 0; t < TW; ++t) v[q * TW + t] = acc[q][t];
        const float sum = warp_sums<N>(v);
        if (lane % (32 / N) != 0) return;
        const int slot = warp_slot<N>(lane), q = slot / TW, t = slot % TW;
        if (r0 + q >= job.rows || t >= n_mine) return;
        float* o = job.y + (t0 + t) * job.ldy + r0 + q;
        *o = job.accumulate ? *o + sum : sum;  // no bias: matvec_multi takes it for one token
    } else {
        float sum[R][TW];
#pragma unroll
        for (int q = 0; q < R; ++q)
#pragma unroll
            for (int t = 0; t < TW; ++t) sum[q][t] = warp_sum(acc[q][t]);
        if (lane != 0) return;
#pragma unroll
        for (int q = 0; q < R; ++q) {
            if (r0 + q >= job.rows) break;
#pragma unroll
            for (int t = 0; t < TW; ++t) {
                if (t >= n_mine) break;
                float* o = job.y + (t0 + t) * job.ldy + r0 + q;
                *o = job.accumulate ? *o + sum[q][t] : sum[q][t];
            }
        }
    }
}

// Batches (2 <= t <= 16) of quantized rows: warp w of the block computes rows r0 + w*R .. + R-1
// for TW tokens from blockIdx.y * TW (T = TW = 1: one token a block row, any batch size); lane i
// takes units i, i + 32, ... (matvec_q1's streams, then its butterfly); each unit is loaded once
// for the TW tokens (TW < T: token_warps()).
template <int TY, int T, int TW = T>
__global__ void __launch_bounds__(kWarps * 32) matvec_q(Jobs jobs, int n_tok) {
    static_assert(T % TW == 0, "token groups split the batch evenly");
    constexpr int S = unit_subs<TY>();
    constexpr int R = q_rows_per_warp(TW, S);
    constexpr int kUnroll = S == 1 ? 4 : S == 2 ? 2 : 1;  // the K-quant units hold 2-4 times the registers
    pdl_trigger();
    const int lane = threadIdx.x & 31, t0 = blockIdx.y * TW;
    int64_t r0;
    const Job* job = locate<kWarps * R>(jobs, r0);
    r0 += (threadIdx.x / 32) * R;
    const int n_mine = min(TW, n_tok - t0);
    const int64_t k = jobs.k;
    const QActs xq = job->xq;
    const int64_t nb = k / block_elems<TY>(), nu = k / (32 * S), n32 = k / 32;
    const uint8_t* wr[R];
#pragma unroll
    for (int q = 0; q < R; ++q)
        wr[q] = job->w + min(r0 + q, job->rows - 1) * jobs.row_bytes;  // past the end: row reread, not stored
    prefetch_units<R>(wr, lane, nu, unit_bytes<TY>(), 32);
    pdl_wait();
    float acc[R][TW];
#pragma unroll
    for (int q = 0; q < R; ++q)
#pragma unroll
        for (int t = 0; t < TW; ++t) acc[q][t] = 0.0f;
#pragma unroll kUnroll
    for (int64_t u = lane; u < nu; u += 32) {
        Unit<TY> U[R];
#pragma unroll
        for (int q = 0; q < R; ++q) load_unit<TY>(wr[q], nb, u, U[q]);
#pragma unroll
        for (int t = 0; t < TW; ++t) {
            if (t >= n_mine) break;
            const int8_t* qs = xq.qs + (t0 + t) * k + u * 32 * S;
            const float* xd = xq.d + (t0 + t) * n32 + u * S;
            const float* xs = xq.s + (t0 + t) * n32 + u * S;
#pragma unroll
            for (int q = 0; q < R; ++q) acc[q][t] = unit_accum<TY>(U[q], qs, xd, xs, acc[q][t]);
        }
    }
    store_sums<R, TW>(*job, acc, lane, r0, t0, n_mine);
}

// One warp per block of 32 activations (lane = element).
__global__ void quantize_q8_kernel(const float* __restrict__ x, int64_t n_blocks, QActs out) {
    pdl_enter();
    const int64_t b = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;  // over (t, k/32)
    if (b >= n_blocks) return;
    quantize32(x[b * 32 + (threadIdx.x & 31)], out.qs + b * 32, out.d + b, out.s + b);
}

// 8 consecutive weights as floats. TY: F32 = 0, F16 = 1, BF16 = 30.
template <int TY>
__device__ __forceinline__ void load8(const uint8_t* p, float (&v)[8]) {
    if (TY == 0) {
        const uint4 a = load_weights16(p), b = load_weights16(p + 16);
        v[0] = __uint_as_float(a.x);
        v[1] = __uint_as_float(a.y);
        v[2] = __uint_as_float(a.z);
        v[3] = __uint_as_float(a.w);
        v[4] = __uint_as_float(b.x);
        v[5] = __uint_as_float(b.y);
        v[6] = __uint_as_float(b.z);
        v[7] = __uint_as_float(b.w);
    } else {
        const uint4 u = load_weights16(p);
        const unsigned int w4[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const unsigned short lo = static_cast<unsigned short>(w4[i] & 0xFFFF),
                                 hi = static_cast<unsigned short>(w4[i] >> 16);
            if (TY == 1) {
                v[2 * i] = __half2float(__ushort_as_half(lo));
                v[2 * i + 1] = __half2float(__ushort_as_half(hi));
            } else {
                v[2 * i] = bf16_bits_to_float(lo);
                v[2 * i + 1] = bf16_bits_to_float(hi);
            }
        }
    }
}

// Float rows; k % 8 == 0 (the launcher checks; other k use matvec_scalar).
template <int TY, int T>
__global__ void __launch_bounds__(kWarps * 32) matvec_f(Jobs jobs, int n_tok) {
    constexpr int esize = TY == 0 ? 4 : 2;
    constexpr int R = float_rows_per_block(T);
    pdl_trigger();
    const int lane = threadIdx.x & 31;
    int64_t r0;
    const Job* job = locate<R>(jobs, r0);
    const int64_t k = jobs.k;
    const float* __restrict__ x = job->x;
    const uint8_t* wr[R];
#pragma unroll
    for (int q = 0; q < R; ++q) wr[q] = job->w + min(r0 + q, job->rows - 1) * jobs.row_bytes;
    const int64_t nc = k / 8;
    prefetch_units<R>(wr, (threadIdx.x / 32) * 32 + lane, nc, 8 * esize);
    pdl_wait();
    float acc[R][T];
#pragma unroll
    for (int q = 0; q < R; ++q)
#pragma unroll
        for (int t = 0; t < T; ++t) acc[q][t] = 0.0f;
#pragma unroll 4
    for (int64_t c = (threadIdx.x / 32) * 32 + lane; c < nc; c += kWarps * 32) {
        float wv[R][8];
#pragma unroll
        for (int q = 0; q < R; ++q) load8<TY>(wr[q] + c * 8 * esize, wv[q]);
#pragma unroll
        for (int t = 0; t < T; ++t) {
            if (t >= n_tok) break;
            const float4* xv = reinterpret_cast<const float4*>(x + t * k + c * 8);
            const float4 a = __ldg(xv), b = __ldg(xv + 1);
#pragma unroll
            for (int q = 0; q < R; ++q) {
                float s = acc[q][t];
                s = fmaf(wv[q][0], a.x, s);
                s = fmaf(wv[q][1], a.y, s);
                s = fmaf(wv[q][2], a.z, s);
                s = fmaf(wv[q][3], a.w, s);
                s = fmaf(wv[q][4], b.x, s);
                s = fmaf(wv[q][5], b.y, s);
                s = fmaf(wv[q][6], b.z, s);
                s = fmaf(wv[q][7], b.w, s);
                acc[q][t] = s;
            }
        }
    }
    store<T, R>(acc, n_tok, r0, *job);
}

}  // namespace
}  // namespace apls::cuda

#include "cuda/matvec_qmma.cuh"
#include "cuda/matvec_tc.cuh"

namespace apls::cuda {

// Whether F16 rows take matvec_tc (see matvec_tc.cuh) rather than matvec_f: APLS_CUDA_TC "1" or
// "0" decides; otherwise the tensor cores where the device's peak memory bandwidth is at least
// 4 TB/s. There matvec_f's one-token walk falls behind and matvec_tc is faster at every batch
// size (H200: 7B F16 decode +2%); below it matvec_f keeps the bandwidth and matvec_tc costs the
// single token 3.4% (H100), so it is the choice for verify-heavy work only (docs/CUDA.md). Either
// way the kernel needs the f16 mma (compute capability >= 8.0). Decided once per process.
bool f16_on_tensor_cores() {
    static const bool on = [] {
        cudaFuncAttributes fa{};
        if (cudaFuncGetAttributes(&fa, matvec_tc<8>) != cudaSuccess || fa.ptxVersion < 80) return false;
        const char* env = std::getenv("APLS_CUDA_TC");
        if (env && std::strcmp(env, "0") == 0) return false;
        if (env && std::strcmp(env, "1") == 0) return true;
        int dev = 0, khz = 0, bits = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&bits, cudaDevAttrGlobalMemoryBusWidth, dev) != cudaSuccess) {
            cudaGetLastError();
            return false;
        }
        const double peak = 2.0 * khz * 1e3 * bits / 8;  // bytes/s (double data rate)
        return peak >= 4e12;
    }();
    return on;
}

// Whether batches of quantized rows take matvec_qmma (matvec_qmma.cuh) rather than
// matvec_q: APLS_CUDA_QMMA "0" or "1" decides; otherwise wherever the kernel's integer mma exists
// (compute capability >= 8.0). Same bits either way. Decided once per process.
// The smallest batch of a type that takes matvec_qmma: APLS_CUDA_QMMA_MIN (2..17; 17: only
// batches of more than 16 tokens) for every type. By default (a verify batch's cost a step on an
// H100, matvec_q / matvec_qmma): 12 for Q4_0, Q4_1 and Q8_0 (SmolLM2 Q4_1: 9 tokens 1.25x / 1.31x;
// 12 tokens 1.38x / 1.34x, 16 tokens 1.52x / 1.37x, 32 tokens 2.53x / 1.81x, matvec_q's from an
// earlier build, docs/BENCHMARKS.md); 8 for Q5_0, Q4_K and Q6_K (Qwen2.5-Coder Q4_K_M, whose
// 0.5B has Q5_0 and Q8_0 where rows of 896 cannot take K-quants; 0.5B: 4 tokens 1.32x / 1.45x,
// 8 tokens 1.66x / 1.50x, 16 tokens 2.36x / 1.76x; 1.5B: 8 tokens 2.42x / 1.62x, 16 tokens
// 4.03x / 1.95x); 17 for the types not measured (Q5_1, Q5_K): their batches of 17-64 take it
// rather than one launch of matvec_q per 16 tokens.
int qmma_min_tokens(TensorType type) {
    static const int forced = [] {
        const char* env = std::getenv("APLS_CUDA_QMMA_MIN");
        const int v = env && *env ? std::atoi(env) : 0;
        return v >= 2 && v <= kMatvecGroup + 1 ? v : 0;
    }();
    if (forced) return forced;
    switch (type) {
        case TensorType::Q4_0:
        case TensorType::Q4_1:
        case TensorType::Q8_0:
            return 12;
        case TensorType::Q5_0:
        case TensorType::Q4_K:
        case TensorType::Q6_K:
            return 8;
        default:
            return kMatvecGroup + 1;
    }
}

bool qmma_enabled() {
    static const bool on = [] {
        cudaFuncAttributes fa{};
        if (cudaFuncGetAttributes(&fa, matvec_qmma<3, 8, 32>) != cudaSuccess || fa.ptxVersion < 80) {
            cudaGetLastError();
            return false;
        }
        const char* env = std::getenv("APLS_CUDA_QMMA");
        return !(env && std::strcmp(env, "0") == 0);
    }();
    return on;
}

namespace {

// Any float type and k (slow path: element by element).
template <int T>
__global__ void matvec_scalar(int type, Jobs jobs, int n_tok) {
    pdl_enter();
    const int lane = threadIdx.x & 31;
    int64_t r;
    const Job* job = locate<1>(jobs, r);
    const int64_t k = jobs.k;
    const float* __restrict__ x = job->x;
    const uint8_t* wr = job->w + r * jobs.row_bytes;
    float acc[1][T];
#pragma unroll
    for (int t = 0; t < T; ++t) acc[0][t] = 0.0f;
    for (int64_t j = (threadIdx.x / 32) * 32 + lane; j < k; j += kWarps * 32) {
        const float wv = dequant_elem(type, wr, k, j);
#pragma unroll
        for (int t = 0; t < T; ++t) {
            if (t >= n_tok) break;
            acc[0][t] = fmaf(wv, x[t * k + j], acc[0][t]);
        }
    }
    store<T, 1>(acc, n_tok, r, *job);
}

// f(std::integral_constant<int, TY>{}) for a quantized type's kernel id TY (the ggml type number:
// Q8_0 8, Q4_0 2, Q4_1 3, Q5_0 6, Q5_1 7, Q4_K 12, Q5_K 13, Q6_K 14); is_quantized(t) holds.
template <class F>
void with_quant_type(TensorType t, F&& f) {
    switch (t) {
        case TensorType::Q8_0:
            return f(std::integral_constant<int, 8>{});
        case TensorType::Q4_0:
            return f(std::integral_constant<int, 2>{});
        case TensorType::Q4_1:
            return f(std::integral_constant<int, 3>{});
        case TensorType::Q5_0:
            return f(std::integral_constant<int, 6>{});
        case TensorType::Q5_1:
            return f(std::integral_constant<int, 7>{});
        case TensorType::Q4_K:
            return f(std::integral_constant<int, 12>{});
        case TensorType::Q5_K:
            return f(std::integral_constant<int, 13>{});
        case TensorType::Q6_K:
            return f(std::integral_constant<int, 14>{});
        default:
            fail(APLS_STATUS_UNSUPPORTED, "CUDA: no quantized matrix kernel for type ", type_name(t));
    }
}

int subs_of(TensorType t) {
    return t == TensorType::Q4_K || t == TensorType::Q5_K ? unit_subs<12>()
           : t == TensorType::Q6_K                        ? unit_subs<14>()
                                                          : 1;
}

// Tokens per warp of a quantized batch product of T <= 16 tokens: T (each unit loaded once for
// the whole batch) or, where the launch's weights are small (at most APLS_CUDA_TOKEN_GROUPS bytes,
// default 8 MiB: they stay in L2 for the warps that read them again; 0 turns this off), 1 for
// batches of 2 tokens (matvec_q1's work for each token, in one launch) and 2 for 3-16. Small
// products of SmolLM2's size are latency-bound: a lane's serial work, T tokens long, decides their
// time, not the bytes (H100, docs/BENCHMARKS.md: a 16-token verify batch of SmolLM2 2.12x -> 1.47x
// a step with 4 tokens a warp; with 2, a 9-token step's products 653 -> 508 us). Chosen per launch
// from its shape only; no choice changes a result.
int token_warps(int T, const Jobs& jobs) {
    static const int64_t limit = [] {
        const char* env = std::getenv("APLS_CUDA_TOKEN_GROUPS");
        return env && *env ? std::strtoll(env, nullptr, 10) : int64_t{8} << 20;
    }();
    // APLS_CUDA_TOKEN_WARPS=1|2|4: that many tokens a warp for every small product (measurements).
    static const int forced = [] {
        const char* env = std::getenv("APLS_CUDA_TOKEN_WARPS");
        const int v = env && *env ? std::atoi(env) : 0;
        return v == 1 || v == 2 || v == 4 ? v : 0;
    }();
    int64_t bytes = 0;
    for (int j = 0; j < jobs.n; ++j) bytes += jobs.job[j].rows * static_cast<int64_t>(jobs.row_bytes);
    if (T == 1 || bytes > limit) return T;
    if (forced) return std::min(forced, T);
    return T >= 4 ? 2 : 1;
}

// Quantized rows of ggml type TY: matvec_q1 for one token, matvec_q for batches (tw tokens a
// warp; the grid's y the batch's groups of tw).
template <int TY, int T>
void launch_q(dim3 grid, dim3 block, cudaStream_t stream, const Jobs& jobs, int n_tok, int tw) {
    if constexpr (T == 1) {
        const int g = q1_lanes(jobs.k / (32 * unit_subs<TY>()));
        if (g == 8) launch_kernel(matvec_q1<TY, 8>, grid, block, 0, stream, jobs, n_tok);
        else if (g == 16) launch_kernel(matvec_q1<TY, 16>, grid, block, 0, stream, jobs, n_tok);
        else launch_kernel(matvec_q1<TY, 32>, grid, block, 0, stream, jobs, n_tok);
    } else if (tw == 1) {
        launch_kernel(matvec_q<TY, 1, 1>, grid, block, 0, stream, jobs, n_tok);
    } else if (tw == 2) {
        launch_kernel(matvec_q<TY, T, 2>, grid, block, 0, stream, jobs, n_tok);
    } else if constexpr (T >= 4) {
        if (tw == 4) launch_kernel(matvec_q<TY, T, 4>, grid, block, 0, stream, jobs, n_tok);
        else launch_kernel(matvec_q<TY, T>, grid, block, 0, stream, jobs, n_tok);
    } else {
        launch_kernel(matvec_q<TY, T>, grid, block, 0, stream, jobs, n_tok);
    }
}

// The GPU's SM count, once per process. The queries below leave an error where they fail (it may
// be an earlier launch's) for the next launch's check to report; the choice falls back to 1.
int sm_count() {
    static const int n = [] {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev);
        return v > 0 ? v : 1;
    }();
    return n;
}

// Blocks of matvec_qmma<TY, TK, W> one SM holds at once (registers, shared memory), once per kernel.
template <int TY, int TK, int W>
int qmma_blocks_per_sm() {
    static const int n = [] {
        int b = 0;
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, matvec_qmma<TY, TK, W>, W * 32, 0);
        return b > 0 ? b : 1;
    }();
    return n;
}

// Warps per matvec_qmma block for a grid of `blocks`: APLS_CUDA_QMMA_WARPS = 8, 16 or 32 for every
// launch; by default, of the block sizes whose grid takes the fewest waves of the blocks the SMs
// hold at once, the one with the most warps (each warp sums 32 / W streams one after another).
// A wave costs more than a longer chain, and no single size does as well (SmolLM2 on an H100, a
// verify's cost a step: 64 tokens 3.05x with 32 warps for every launch, 2.80x with 16, 2.85x with
// 8, 2.70x chosen per launch; 16 tokens 1.45x / 1.50x / 1.71x, 1.37x chosen). Same bits for each.
template <int TY, int TK>
int qmma_warps(int64_t blocks) {
    static const int forced = [] {
        const char* env = std::getenv("APLS_CUDA_QMMA_WARPS");
        const int v = env && *env ? std::atoi(env) : 0;
        return v == 8 || v == 16 || v == 32 ? v : 0;
    }();
    if (forced) return forced;
    const int64_t sms = sm_count();
    const auto waves = [&](int per_sm) { return (blocks + sms * per_sm - 1) / (sms * per_sm); };
    const int64_t w32 = waves(qmma_blocks_per_sm<TY, TK, 32>()), w16 = waves(qmma_blocks_per_sm<TY, TK, 16>()),
                  w8 = waves(qmma_blocks_per_sm<TY, TK, 8>());
    const int64_t fewest = std::min(w32, std::min(w16, w8));
    return w32 == fewest ? 32 : w16 == fewest ? 16 : 8;
}

// Batches of 2..64 tokens on the tensor cores: kQmmaRows rows a block, T tokens (8 or 16) per
// block row of the grid (its y: groups of T).
template <int T>
void launch_qmma(TensorType type, Jobs jobs, int n_tok, cudaStream_t stream) {
    constexpr int TK = T <= 8 ? 8 : 16;
    int blocks = 0;
    for (int j = 0; j < jobs.n; ++j) {
        jobs.job[j].begin = blocks;
        blocks += static_cast<int>((jobs.job[j].rows + kQmmaRows - 1) / kQmmaRows);
    }
    if (blocks == 0) return;
    const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>((n_tok + TK - 1) / TK));
    with_quant_type(type, [&](auto ty) {
        constexpr int TY = decltype(ty)::value;
        const int w = qmma_warps<TY, TK>(static_cast<int64_t>(grid.x) * grid.y);
        if (w == 8) launch_kernel(matvec_qmma<TY, TK, 8>, grid, dim3(8 * 32), 0, stream, jobs, n_tok);
        else if (w == 16) launch_kernel(matvec_qmma<TY, TK, 16>, grid, dim3(16 * 32), 0, stream, jobs, n_tok);
        else launch_kernel(matvec_qmma<TY, TK, 32>, grid, dim3(32 * 32), 0, stream, jobs, n_tok);
    });
}

template <int T>
void launch(TensorType type, Jobs jobs, int n_tok, bool vec, cudaStream_t stream) {
    if (T > 1 && is_quantized(type) && qmma_enabled() && n_tok >= qmma_min_tokens(type))
        return launch_qmma<T>(type, jobs, n_tok, stream);
    // Blocks per job for the kernel that will run (rows per warp differ between kernels).
    const bool scalar = !is_quantized(type) && !vec;
    const bool tc = type == TensorType::F16 && vec && f16_on_tensor_cores();
    const int tw = is_quantized(type) ? token_warps(T, jobs) : T;
    const int64_t rows_per_block = is_quantized(type) ? kWarps * (T == 1 ? 32 / q1_lanes(jobs.k / (32 * subs_of(type)))
                                                                         : q_rows_per_warp(tw, subs_of(type)))
                                   : scalar           ? 1
                                   : tc               ? kTcBlockRows
                                                      : float_rows_per_block(T);
    int blocks = 0;
    for (int j = 0; j < jobs.n; ++j) {
        jobs.job[j].begin = blocks;
        blocks += static_cast<int>((jobs.job[j].rows + rows_per_block - 1) / rows_per_block);
    }
    if (blocks == 0) return;
    const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>((n_tok + tw - 1) / tw)),
        block((tc ? kTcWarps : kWarps) * 32);
    if (is_quantized(type))
        return with_quant_type(
            type, [&](auto ty) { launch_q<decltype(ty)::value, T>(grid, block, stream, jobs, n_tok, tw); });
    switch (type) {
        case TensorType::F16:
            // Without PDL: launched early, its blocks wait beside the previous kernel's and the
            // grid no longer fits in one wave (7B F16 decode 172 against 210 tok/s, H200).
            if (tc) launch_kernel_with(false, matvec_tc<(T <= 8 ? 8 : 16)>, grid, block, 0, stream, jobs, n_tok);
            else if (vec) launch_kernel(matvec_f<1, T>, grid, block, 0, stream, jobs, n_tok);
            else launch_kernel(matvec_scalar<T>, grid, block, 0, stream, static_cast<int>(type), jobs, n_tok);
            break;
        case TensorType::BF16:
            if (vec) launch_kernel(matvec_f<30, T>, grid, block, 0, stream, jobs, n_tok);
            else launch_kernel(matvec_scalar<T>, grid, block, 0, stream, static_cast<int>(type), jobs, n_tok);
            break;
        case TensorType::F32:
            if (vec) launch_kernel(matvec_f<0, T>, grid, block, 0, stream, jobs, n_tok);
            else launch_kernel(matvec_scalar<T>, grid, block, 0, stream, static_cast<int>(type), jobs, n_tok);
            break;
        default:
            fail(APLS_STATUS_UNSUPPORTED, "CUDA: no matrix kernel for type ", type_name(type));
    }
}

}  // namespace

void quantize_q8(const float* x, int n_tok, int64_t k, const QActs& out, cudaStream_t stream) {
    const int64_t n_blocks = static_cast<int64_t>(n_tok) * (k / 32);
    if (n_blocks == 0) return;
    launch_kernel(quantize_q8_kernel, static_cast<unsigned>((n_blocks + 7) / 8), 256, 0, stream, x, n_blocks, out);
}

namespace {

// A batch of more than kMatvecGroup tokens as launches of kMatvecGroup: each token's results are
// the same bits as in any other batch, so groups change nothing but the weights' reads.
void in_groups(const MatvecJob* jobs, int n_jobs, int n_tok, cudaStream_t stream) {
    MatvecJob part[kMaxJobs];  // n_jobs <= kMaxJobs (matvec_multi splits larger lists first)
    std::copy(jobs, jobs + n_jobs, part);
    for (int t0 = 0; t0 < n_tok; t0 += kMatvecGroup) {
        for (int j = 0; j < n_jobs; ++j) {
            const MatvecJob& m = jobs[j];
            const int64_t k = m.w->k;
            part[j].x = m.x ? m.x + t0 * k : nullptr;
            if (m.xq.qs) part[j].xq = QActs{m.xq.qs + t0 * k, m.xq.d + t0 * (k / 32), m.xq.s + t0 * (k / 32)};
            part[j].y = m.y + t0 * m.ldy;
        }
        matvec_multi(part, n_jobs, std::min(kMatvecGroup, n_tok - t0), stream);
    }
}

}  // namespace

void matvec_multi(const MatvecJob* jobs, int n_jobs, int n_tok, cudaStream_t stream) {
    if (n_jobs <= 0 || n_tok <= 0) return;
    if (n_jobs > kMaxJobs) {  // more than one launch's worth: split
        matvec_multi(jobs, kMaxJobs, n_tok, stream);
        return matvec_multi(jobs + kMaxJobs, n_jobs - kMaxJobs, n_tok, stream);
    }
    const DeviceWeight& w0 = *jobs[0].w;
    Jobs js{};
    js.n = n_jobs;
    js.row_bytes = w0.row_bytes;
    js.k = w0.k;
    bool vec = w0.k % 8 == 0 && w0.row_bytes % 16 == 0;
    for (int j = 0; j < n_jobs; ++j) {
        const MatvecJob& m = jobs[j];
        if (m.w->type != w0.type || m.w->k != w0.k)
            fail(APLS_STATUS_INTERNAL, "CUDA matvec_multi: jobs differ in type or k");
        if (is_quantized(w0.type) && !m.xq.qs)
            fail(APLS_STATUS_INTERNAL, "CUDA matvec: quantized weights need Q8 activations");
        if (m.bias && n_tok != 1) fail(APLS_STATUS_INTERNAL, "CUDA matvec: a bias is added for one token only");
        vec = vec && reinterpret_cast<uintptr_t>(m.w->data) % 16 == 0;
        js.job[j] = Job{m.w->data, m.x, m.xq, m.y, m.rows, m.ldy, 0, m.accumulate, m.bias};
    }
    if (n_tok > kMaxMatvecTokens)
        fail(APLS_STATUS_INTERNAL, "CUDA matvec called with ", n_tok, " tokens (max ", kMaxMatvecTokens, ")");
    // Batch sizes share instantiations (T = 1, 2, 4, 8, 16): only the predicate t < n_tok differs.
    if (n_tok == 1) launch<1>(w0.type, js, n_tok, vec, stream);
    else if (n_tok == 2) launch<2>(w0.type, js, n_tok, vec, stream);
    else if (n_tok <= 4) launch<4>(w0.type, js, n_tok, vec, stream);
    else if (n_tok <= 8) launch<8>(w0.type, js, n_tok, vec, stream);
    else if (n_tok <= kMatvecGroup) launch<16>(w0.type, js, n_tok, vec, stream);
    else if (is_quantized(w0.type) && qmma_enabled()) launch_qmma<16>(w0.type, js, n_tok, stream);
    else in_groups(jobs, n_jobs, n_tok, stream);
}

void matvec(const DeviceWeight& w, int64_t rows, const float* x, const QActs& xq, int n_tok, float* y, int64_t ldy,
            bool accumulate, cudaStream_t stream) {
    const MatvecJob job{&w, rows, x, xq, y, ldy, accumulate, nullptr};
    matvec_multi(&job, 1, n_tok, stream);
}

}  // namespace apls::cuda
