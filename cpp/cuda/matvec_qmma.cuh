// cuda/matvec_qmma.cuh — quantized rows times 2..64 tokens on the tensor cores (mma.sync
// m16n8k32 on 8-bit integers), included by matvec.cu (Job, Jobs, locate, Unit, sub_part).
//
// Why: in matvec_q a lane does each (row, token, sub-block)'s 8 dp4a and its float part in
// series, so a small model's batch product costs its lanes' serial work, not its bytes (SmolLM2,
// 9 tokens: 5.5 us a launch against 2.2 for one token; docs/BENCHMARKS.md). Here one mma gives
// the exact integer dot products of one sub-block of 32 for 16 rows x 8 tokens.
//
// Same bits as matvec_q1 and matvec_q: there lane i sums, in order, the float parts (sub_part)
// of its stream — units i, i + 32, ..., each unit's sub-blocks in order — and a butterfly (xor
// 16, 8, 4, 2, 1) adds the 32 streams. The butterfly is a fixed tree: subtree(i, o) =
// subtree(i, 2o) + subtree(i + o, 2o) for i < o, a leaf (o = 32) is stream i, the total is
// subtree(0, 1) (a + b and b + a are the same bits). Warp w of the block's W sums streams w,
// w + W, ..., each from 0 as a lane there, into shared memory (the tree's 32 leaves for every
// row and token), and the block adds them by the tree (leaves_tree): one stream's registers a
// warp whatever W, so 8 warps a block take no more registers than 32. The integer dots are exact
// and each float part is sub_part's expression, so every (row, token) sees the same operations
// in the same order as there.
//
// Fragments (PTX ISA, mma.m16n8k32 on 8-bit integers): thread (g = lane / 4, q = lane % 4)
// holds A's rows g (a0, a2) and g + 8 (a1, a3) — weight rows —, B's column g (b0, b1) — a
// token — and D's rows g (d0, d1) and g + 8 (d2, d3) at columns 2q, 2q + 1. K is a sum index:
// any assignment of a sub-block's 32 elements to its slots works as long as A and B agree per
// thread, so thread q feeds elements 4q..4q+3 through a0, a1 and b0 and 16+4q..16+4q+3 through
// a2, a3 and b1 (4 bytes each: for Q4 the nibbles of one word, for Q8_0 its words q and q + 4).
// Q6_K's two halves of 16 have their own integer scales: two mmas, each with the other half's
// A registers zero.
#pragma once

namespace apls::cuda {
namespace {

constexpr int kQmmaRows = 16;  // weight rows of a block: one mma tile
// Warps per block W (8, 16 or 32: qmma_warps()): warp w takes streams w, w + W, ...

// D += A · B (m16n8k32; A unsigned (Q4_0, Q4_1, Q5_1, Q4_K, Q5_K) or signed, B signed; s32 accumulators).
template <bool kSignedA>
__device__ __forceinline__ void mma_i8(int (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if constexpr (kSignedA)
        asm volatile(
            "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};"
            : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    else
        asm volatile(
            "mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};"
            : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    __trap();  // not launched: the host checks the kernel's PTX version (qmma_enabled)
#endif
}

__device__ __forceinline__ unsigned u32_ldg(const uint8_t* p) { return __ldg(reinterpret_cast<const unsigned*>(p)); }

// Whether a type's quants are signed (q - 16 of Q5_0, q - 32 of Q6_K, Q8_0) or unsigned nibbles.
template <int TY>
constexpr bool signed_quants() {
    return TY == 8 || TY == 6 || TY == 14;
}

// This thread's share of one unit (matvec.cu's Unit) of rows g and g + 8 (h = 0, 1): per
// sub-block s its A fragment (a[s][h]: elements 4q..4q+3, a[s][2 + h]: 16+4q..16+4q+3, 4 bytes
// each), float scale and offset (fa, fb: Unit's a, b) and, for Q6_K, the integer scales of its
// two halves of 16 (sc[s][h]).
template <int TY>
struct QmmaUnit {
    static constexpr int S = unit_subs<TY>();
    unsigned a[S][4];
    float fa[S][2], fb[S][2];
    int sc[S][2][2];
};

// Unit u of the thread's two rows, decoded as load_unit decodes it (the same element values).
template <int TY>
__device__ __forceinline__ void load_qmma_unit(const uint8_t* const (&w)[2], int64_t nb, int64_t u, int q,
                                               QmmaUnit<TY>& U) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const uint8_t* row = w[h];
        if constexpr (TY == 2 || TY == 3 || TY == 8) {
            const uint8_t* blk = row + u * quant_bytes<TY>();
            if (TY == 8) {
                U.a[0][h] = u32_ldg(blk + 4 * q);
                U.a[0][2 + h] = u32_ldg(blk + 16 + 4 * q);
            } else {
                const unsigned x = u32_ldg(blk + 4 * q);
                U.a[0][h] = q4_word(x, 0);      // elements 4q..4q+3
                U.a[0][2 + h] = q4_word(x, 1);  // elements 16+4q..
            }
            const uint8_t* dm = row + scale_at<TY>(nb, u);
            U.fa[0][h] = half_at(dm);
            U.fb[0][h] = TY == 3 ? half_at(dm + 2) : 0.0f;
        } else if constexpr (TY == 6 || TY == 7) {
            const unsigned x = u32_ldg(row + u * 16 + 4 * q);
            const uint8_t* sf = row + scale_at<TY>(nb, u);
            const unsigned qh = u32_at(sf + (TY == 6 ? 2 : 4));
            U.a[0][h] = q5_word<TY>(x, qh, q, 0);
            U.a[0][2 + h] = q5_word<TY>(x, qh, q, 1);
            U.fa[0][h] = half_at(sf);
            U.fb[0][h] = TY == 7 ? half_at(sf + 2) : 0.0f;
        } else if constexpr (TY == 12 || TY == 13) {
            const int64_t b = u / 4;
            const int p = static_cast<int>(u % 4);  // sub-blocks 2p (low nibbles), 2p + 1 (high)
            const uint8_t* qb = row + b * quant_bytes<TY>();
            const uint8_t* qs = qb + (TY == 13 ? 32 : 0) + 32 * p;
            const unsigned v0 = u32_ldg(qs + 4 * q), v1 = u32_ldg(qs + 16 + 4 * q);
            const unsigned h0 = TY == 13 ? u32_ldg(qb + 4 * q) : 0u, h1 = TY == 13 ? u32_ldg(qb + 16 + 4 * q) : 0u;
#pragma unroll
            for (int s = 0; s < 2; ++s) {
                U.a[s][h] = k45_word(v0, h0, p, s);
                U.a[s][2 + h] = k45_word(v1, h1, p, s);
            }
            const uint8_t* sf = row + scale_at<TY>(nb, b);
#pragma unroll
            for (int s = 0; s < 2; ++s) k4_sub_scales(sf, 2 * p + s, U.fa[s][h], U.fb[s][h]);
        } else {  // Q6_K: half hh of block b, sub-blocks c = 0..3 (see load_unit)
            const int64_t b = u / 2;
            const int hh = static_cast<int>(u % 2);
            const uint8_t* qb = row + b * quant_bytes<14>();
            const uint8_t* ql = qb + 64 * hh;
            const uint8_t* qh = qb + 128 + 32 * hh;
            unsigned l[4], hb[2];  // ql words q, q+4, q+8, q+12; qh words q, q+4
#pragma unroll
            for (int j = 0; j < 4; ++j) l[j] = u32_ldg(ql + 4 * (q + 4 * j));
            hb[0] = u32_ldg(qh + 4 * q);
            hb[1] = u32_ldg(qh + 16 + 4 * q);
            const uint8_t* sf = row + scale_at<14>(nb, b);
            const float d = half_at(sf + 16);
#pragma unroll
            for (int c = 0; c < 4; ++c) {
#pragma unroll
                for (int i2 = 0; i2 < 2; ++i2)  // word q + 4 i2 of the sub-block
                    U.a[c][2 * i2 + h] = q6k_word(l[i2 + 2 * (c & 1)], hb[i2], c);
                const int j = 4 * hh + c;
                U.sc[c][h][0] = static_cast<int8_t>(sf[2 * j]);
                U.sc[c][h][1] = static_cast<int8_t>(sf[2 * j + 1]);
                U.fa[c][h] = d;
                U.fb[c][h] = 0.0f;
            }
        }
    }
}

// The lines load_qmma_unit will read for this thread (its quant words, the scales) toward L1.
template <int TY>
__device__ __forceinline__ void prefetch_qmma_unit(const uint8_t* row, int64_t nb, int64_t u, int q) {
    if constexpr (TY == 2 || TY == 3 || TY == 8 || TY == 6 || TY == 7) {
        prefetch_l1(row + u * quant_bytes<TY>() + 4 * q);
        prefetch_l1(row + scale_at<TY>(nb, u));
    } else if constexpr (TY == 12 || TY == 13) {
        const uint8_t* qb = row + (u / 4) * quant_bytes<TY>();
        prefetch_l1(qb + (TY == 13 ? 32 : 0) + 32 * (u % 4) + 4 * q);
        if (TY == 13) prefetch_l1(qb + 4 * q);
        prefetch_l1(row + scale_at<TY>(nb, u / 4));
    } else {
        const uint8_t* qb = row + (u / 2) * quant_bytes<14>();
        prefetch_l1(qb + 64 * (u % 2) + 4 * q);
        prefetch_l1(qb + 64 * (u % 2) + 32 + 4 * q);
        prefetch_l1(qb + 128 + 32 * (u % 2) + 4 * q);
        prefetch_l1(row + scale_at<14>(nb, u / 2));
    }
}

// What a warp needs for its streams: the two weight rows this thread holds, the batch.
struct QmmaRows {
    const uint8_t* w[2];  // rows g and g + 8 of the tile (past the end: reread, not stored)
    const QActs* xq;
    int64_t nb, nu, k, n32;
    int n_tok, g, q;
};

// Stream s (units s, s + 32, ..., their sub-blocks in order): v[n][e] = the sum of the float
// parts of D element e of token tile n, from 0, as matvec_q's lane s sums them.
template <int TY, int NT>
__device__ __forceinline__ void stream_sum(const QmmaRows& c, int s, float (&v)[NT][4]) {
    constexpr int S = unit_subs<TY>();
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) v[n][e] = 0.0f;
    for (int64_t u = s; u < c.nu; u += 32) {
        QmmaUnit<TY> U;
        load_qmma_unit<TY>(c.w, c.nb, u, c.q, U);
#pragma unroll
        for (int s2 = 0; s2 < S; ++s2) {
            const int64_t sb = u * S + s2;  // the sub-block's index in the row (32 elements each)
#pragma unroll
            for (int n = 0; n < NT; ++n) {
                if (n * 8 >= c.n_tok) break;  // the same for the whole warp
                const int tb = n * 8 + c.g;  // B's column: token tb
                unsigned b0 = 0, b1 = 0;
                if (tb < c.n_tok) {
                    const unsigned* x = reinterpret_cast<const unsigned*>(c.xq->qs + tb * c.k + sb * 32);
                    b0 = __ldg(x + c.q);
                    b1 = __ldg(x + c.q + 4);
                }
                int isum[4] = {0, 0, 0, 0};
                if constexpr (TY == 14) {  // the halves apart: sc_lo isum_lo + sc_hi isum_hi
                    int lo[4] = {0, 0, 0, 0}, hi[4] = {0, 0, 0, 0};
                    const unsigned al[4] = {U.a[s2][0], U.a[s2][1], 0u, 0u}, ah[4] = {0u, 0u, U.a[s2][2], U.a[s2][3]};
                    mma_i8<true>(lo, al, b0, 0u);
                    mma_i8<true>(hi, ah, 0u, b1);
#pragma unroll
                    for (int e = 0; e < 4; ++e) isum[e] = U.sc[s2][e / 2][0] * lo[e] + U.sc[s2][e / 2][1] * hi[e];
                } else {
                    mma_i8<signed_quants<TY>()>(isum, U.a[s2], b0, b1);
                }
                // D's columns 2q, 2q + 1: tokens t0, t0 + 1 (absent tokens: zeros, never stored).
                const int t0 = n * 8 + 2 * c.q;
                float xd[2] = {0.0f, 0.0f}, xs[2] = {0.0f, 0.0f};
#pragma unroll
                for (int j = 0; j < 2; ++j)
                    if (t0 + j < c.n_tok) {
                        xd[j] = __ldg(c.xq->d + (t0 + j) * c.n32 + sb);
                        if (uses_xs<TY>()) xs[j] = __ldg(c.xq->s + (t0 + j) * c.n32 + sb);
                    }
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int h = e / 2, j = e % 2;
                    v[n][e] = __fadd_rn(v[n][e], sub_part<TY>(U.fa[s2][h], U.fb[s2][h], xd[j], xs[j], isum[e]));
                }
            }
        }
    }
}

// subtree(i, O) of the butterfly's tree (see the top of this file) from its leaves, the 32
// streams' sums leaf[s * stride].
template <int O>
__device__ __forceinline__ float leaves_tree(const float* leaf, int stride, int i) {
    if constexpr (O == 32) return leaf[i * stride];
    else return leaves_tree<2 * O>(leaf, stride, i) + leaves_tree<2 * O>(leaf, stride, i + O);
}

// T tokens (T = 8: 2..8, T = 16: 9..16 or a group of 16 of a larger batch: tokens from
// blockIdx.y * T) times kQmmaRows rows a block.
template <int TY, int T, int W>
__global__ void __launch_bounds__(W * 32, 32 / W) matvec_qmma(Jobs jobs, int n_batch) {
    static_assert(T == 8 || T == 16, "batch sizes share the 8- and 16-token kernels");
    static_assert(W == 8 || W == 16 || W == 32, "warps take the 32 streams in equal shares");
    static_assert(W * 32 >= kQmmaRows * T, "a thread stores at most one output");
    constexpr int NT = T / 8;
    __shared__ float leaf[32][kQmmaRows * T];  // (stream, row * T + token): the butterfly's leaves
    pdl_trigger();
    const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    int64_t r0;
    const Job* job = locate<kQmmaRows>(jobs, r0);
    QmmaRows c;
    c.g = lane / 4;
    c.q = lane % 4;
    c.k = jobs.k;
    c.nb = jobs.k / block_elems<TY>();
    c.nu = jobs.k / (32 * unit_subs<TY>());
    c.n32 = jobs.k / 32;
    const int t0 = blockIdx.y * T, n_tok = min(T, n_batch - t0);
    QActs xq = job->xq;  // the group's tokens
    xq.qs += t0 * c.k;
    xq.d += t0 * c.n32;
    xq.s += t0 * c.n32;
    c.n_tok = n_tok;
    c.xq = &xq;
#pragma unroll
    for (int h = 0; h < 2; ++h) c.w[h] = job->w + min(r0 + c.g + 8 * h, job->rows - 1) * jobs.row_bytes;
    // Before the wait (weights depend on no kernel): this thread's words of the first two units
    // of each of the warp's streams into L1, so that the streams' loads do not wait on memory one
    // stream after another.
    for (int s = warp; s < 32 && s < c.nu; s += W)
        for (int64_t u = s; u < c.nu && u < s + 64; u += 32)
            for (int h = 0; h < 2; ++h) prefetch_qmma_unit<TY>(c.w[h], c.nb, u, c.q);
    pdl_wait();
    // Thread u stores output u = (row u / T, token u % T) of the tile (W * 32 >= kQmmaRows * T);
    // the value it adds to (accumulate) is loaded now, its trip to L2 beside the weights' rather
    // than after the barrier (no other thread writes it).
    const int orow = threadIdx.x / T, ot = threadIdx.x % T;
    const bool stores = threadIdx.x < kQmmaRows * T && ot < n_tok && r0 + orow < job->rows;
    float* o = job->y + (t0 + ot) * job->ldy + r0 + orow;
    const float prev = stores && job->accumulate ? *o : 0.0f;
    // Warp w sums streams w, w + W, ... one at a time (a leaf's registers only, whatever W).
    for (int st = warp; st < 32; st += W) {
        float v[NT][4];
        stream_sum<TY, NT>(c, st, v);
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) leaf[st][(c.g + 8 * (e / 2)) * T + n * 8 + 2 * c.q + e % 2] = v[n][e];
    }
    __syncthreads();
    if (!stores) return;
    const float s = leaves_tree<1>(&leaf[0][threadIdx.x], kQmmaRows * T, 0);
    *o = job->accumulate ? prev + s : s;  // no bias: matvec_multi takes it for one token
}

}  // namespace
}  // namespace apls::cuda
