// cpu/kernels_avx2.cpp — AVX2 + FMA + F16C kernels. Compiled with those flags only for this file
// (cmake/sources.cmake); dispatch.cpp calls in only when the CPU has them.
//
// Same scheme as kernels_avx512.cpp at half the width (see kernels_x86.inc for the activation
// layout): 2 weight blocks per 256-bit vector, groups of 8 blocks. Without VNNI the byte products
// use vpmaddubsw (u8 x s8 -> pairs summed to i16) and vpmaddwd with ones (-> i32):
//   Q4: nibbles (<= 15) x activations (|q| <= 127): |pair| <= 3810, lo + hi halves <= 7620, and
//       the first two levels of the reduction over a group's 4 sub-groups stay in 16 bits
//       (<= 4 * 7620 = 30480 < 2^15): one vpmaddwd per group instead of 4 (Zen 2 has one pipe
//       for vector multiplies, which the 8 vpmaddubsw per group already keep busy);
//   Q8_0: |w| x (activation with w's sign), |pair| <= 2 * 128 * 127 = 32512: no saturation,
//         so no 128 * sum(q) correction is needed here.
// Float part per group of 8 blocks, in one float accumulator per row:
//   Q4_0: acc += (dw * dx) * (isum - 8 * qsum);  Q4_1: acc += (dw * dx) * isum; acc += mw * s;
//   Q8_0: acc += (dw * dx) * isum
// then a fixed reduction tree: the operations for an element depend only on k (batch invariance).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu/kernels.h"

namespace apls::cpu {
namespace {

constexpr int SUB = 2;
constexpr int64_t kBatchMin = 2;  // tokens from which matmul_q_batch decodes each group once for all
#include "cpu/kernels_x86.inc"

// Batches read arrange_act's layout here.
void arrange_batch_act(const BlockQ8A* x, int64_t nb, uint8_t* out) { arrange_act(x, nb, out); }

inline float hsum(__m256 v) {
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

inline int hsum_i32(__m256i v) {
    __m128i b = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    b = _mm_add_epi32(b, _mm_unpackhi_epi64(b, b));
    b = _mm_add_epi32(b, _mm_shuffle_epi32(b, 1));
    return _mm_cvtsi128_si32(b);
}

void quantize_act(const float* x, BlockQ8A* y, int64_t k) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (int64_t b = 0; b < k / QK; ++b) {
        __m256 v[4];
        for (int i = 0; i < 4; ++i) v[i] = _mm256_loadu_ps(x + b * QK + 8 * i);
        __m256 a = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v[0], abs_mask), _mm256_and_ps(v[1], abs_mask)),
                                 _mm256_max_ps(_mm256_and_ps(v[2], abs_mask), _mm256_and_ps(v[3], abs_mask)));
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float d = _mm_cvtss_f32(m) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        // cvtps rounds in the current mode (nearest-even), as nearbyint does in the generic code.
        __m256i q[4];
        for (int i = 0; i < 4; ++i) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], _mm256_set1_ps(id)));
        // |q| <= 127: the saturating packs are exact; they interleave 4-lane pieces, undone below.
        const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        const __m256i qs = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs), qs);
        const int sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
        y[b].d = d;
        y[b].s = d * static_cast<float>(sum);
    }
}

// ---- quantized weights ----

// The scales d (and Q4_1's offsets m) of a group's blocks in lane order (lane L: block
// lane_block(L); 0 past the nv valid blocks). A full group: the blocks' first 16 bytes, blocks
// 2i and 2i + 1 in the halves of one vector, their first words brought together by unpacks
// (lane L = block lane_block(L)) and their 16-bit halves sorted by a byte shuffle: ~10 vector
// operations instead of ~60 scalar ones (vpgatherdd is microcoded and slow on Zen 2). The last
// 16 bytes read, from block 7's start, stay inside the group (bs >= 18).
template <TensorType T>
APLS_KERNEL_INLINE void lane_scales_full(const uint8_t* p, __m256& dw, __m256& mw) {
    constexpr int bs = QTraits<T>::bs;
    __m256i v[4];  // dword 0 of each 128-bit half: block 2i's first word | block 2i + 1's
    for (int i = 0; i < 4; ++i)
        v[i] = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(p + (2 * i + 1) * bs),
                                   reinterpret_cast<const __m128i*>(p + 2 * i * bs));
    // dwords (b0, b2, b4, b6 | b1, b3, b5, b7): lane L holds block lane_block(L)'s first word
    const __m256i w = _mm256_unpacklo_epi64(_mm256_unpacklo_epi32(v[0], v[1]), _mm256_unpacklo_epi32(v[2], v[3]));
    // per half: the 4 d (low words), then the 4 m (high words); then the d of both halves first
    const __m256i dm = _mm256_permute4x64_epi64(
        _mm256_shuffle_epi8(w, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9,
                                                12, 13, 2, 3, 6, 7, 10, 11, 14, 15)),
        0xD8);
    dw = _mm256_cvtph_ps(_mm256_castsi256_si128(dm));
    if constexpr (T == TensorType::Q4_1) mw = _mm256_cvtph_ps(_mm256_extracti128_si256(dm, 1));
}

// The same from scalar loads, reading nothing past the nv valid blocks: a row's last group, and
// the one-token path (dot_rows), whose weights stream from DRAM in a real model: there the vector
// form gained hot in cache (22 -> 27 GMAC/s) but not per decoded token (SmolLM2 step 13.1 vs
// 13.4-13.6 ms, within run-to-run noise), so that path is left as it was.
template <TensorType T, bool kFull>
APLS_KERNEL_INLINE void lane_scales(const uint8_t* p, int nv, __m256& dw, __m256& mw) {
    uint64_t d[2] = {0, 0}, m[2] = {0, 0};
    for (int L = 0; L < GRP; ++L) {
        const int b = lane_block(L);
        if (!kFull && b >= nv) continue;
        uint32_t v;  // d in the low half; Q4_1's m in the high half (other types: quants, unused)
        std::memcpy(&v, p + b * QTraits<T>::bs, 4);
        d[L / 4] |= static_cast<uint64_t>(v & 0xFFFFu) << (16 * (L % 4));
        if constexpr (T == TensorType::Q4_1) m[L / 4] |= static_cast<uint64_t>(v >> 16) << (16 * (L % 4));
    }
    dw = _mm256_cvtph_ps(_mm_set_epi64x(static_cast<int64_t>(d[1]), static_cast<int64_t>(d[0])));
    if constexpr (T == TensorType::Q4_1)
        mw = _mm256_cvtph_ps(_mm_set_epi64x(static_cast<int64_t>(m[1]), static_cast<int64_t>(m[0])));
}

// One group of blocks of one row, decoded once for every token of a batch: per sub-group the
// 16-byte halves of its SUB blocks side by side (blocks past nv as zero), and the blocks' scales
// in lane order.
struct GroupW {
    __m256i lo[4], hi[4];  // Q4: low / high nibbles (elements 0-15 / 16-31); Q8_0: |w| of each half
    __m256i slo[4], shi[4];  // Q8_0: the signed weights (their signs go onto the activations)
    __m256 dw, mw;  // d and, for Q4_1, m of each block
};

template <TensorType T, bool kFull>
APLS_KERNEL_INLINE void decode_group(const uint8_t* p, int nv, GroupW& g) {
    using Q = QTraits<T>;
    for (int s = 0; s < 4; ++s) {
        const uint8_t* ps = p + s * SUB * Q::bs;
        const int n = kFull ? SUB : nv - s * SUB;  // valid blocks of this sub-group
        auto pair = [&](int off) {  // (2 blocks, 16 bytes)
            if (n <= 0) return _mm256_setzero_si256();
            const __m128i b0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ps + off));
            const __m128i b1 =
                n > 1 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(ps + Q::bs + off)) : _mm_setzero_si128();
            return _mm256_set_m128i(b1, b0);
        };
        if constexpr (Q::nib) {
            const __m256i raw = pair(Q::off), m4 = _mm256_set1_epi8(0x0F);
            g.lo[s] = _mm256_and_si256(raw, m4);
            g.hi[s] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        } else {
            g.slo[s] = pair(Q::off);
            g.shi[s] = pair(Q::off + 16);
            g.lo[s] = _mm256_abs_epi8(g.slo[s]);
            g.hi[s] = _mm256_abs_epi8(g.shi[s]);
        }
    }
    if constexpr (kFull) lane_scales_full<T>(p, g.dw, g.mw);
    else lane_scales<T, false>(p, nv, g.dw, g.mw);
}

// Four sub-groups' partial sums -> one int32 per block, lane L = block lane_block(L).
APLS_KERNEL_INLINE __m256i reduce4(__m256i v0, __m256i v1, __m256i v2, __m256i v3) {
    const __m256i s01 = _mm256_add_epi32(_mm256_unpacklo_epi32(v0, v1), _mm256_unpackhi_epi32(v0, v1));
    const __m256i s23 = _mm256_add_epi32(_mm256_unpacklo_epi32(v2, v3), _mm256_unpackhi_epi32(v2, v3));
    return _mm256_add_epi32(_mm256_unpacklo_epi64(s01, s23), _mm256_unpackhi_epi64(s01, s23));
}

// The same from 16-bit partial sums (Q4: 8 per block and 128-bit half, each <= 7620): the tree of
// reduce4 on 32-bit units of two int16 of one block, then one vpmaddwd adds each unit's two.
// Same lanes, same exact integers.
APLS_KERNEL_INLINE __m256i reduce4_16(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
    const __m256i s01 = _mm256_add_epi16(_mm256_unpacklo_epi32(p0, p1), _mm256_unpackhi_epi32(p0, p1));
    const __m256i s23 = _mm256_add_epi16(_mm256_unpacklo_epi32(p2, p3), _mm256_unpackhi_epi32(p2, p3));
    const __m256i s = _mm256_add_epi16(_mm256_unpacklo_epi64(s01, s23), _mm256_unpackhi_epi64(s01, s23));
    return _mm256_madd_epi16(s, _mm256_set1_epi16(1));  // units <= 4 * 7620 each half
}

// The float step of a group for one token (the file's header): acc += the contribution of exact
// integer block sums isum with weight scales dw (and Q4_1's mw); ga: the token's arranged group.
template <TensorType T>
APLS_KERNEL_INLINE __m256 scale_add(__m256 acc, __m256i isum, __m256 dw, __m256 mw, const uint8_t* ga) {
    const float* xd = reinterpret_cast<const float*>(ga + 4 * kSubBytes);
    const __m256 dwx = _mm256_mul_ps(dw, _mm256_loadu_ps(xd));
    if constexpr (T == TensorType::Q4_1) {
        acc = _mm256_fmadd_ps(dwx, _mm256_cvtepi32_ps(isum), acc);
        return _mm256_fmadd_ps(mw, _mm256_loadu_ps(xd + GRP), acc);
    } else {
        if constexpr (T == TensorType::Q4_0) {
            const __m256i qsum = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xd + 2 * GRP));
            isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(qsum, 3));
        }
        return _mm256_fmadd_ps(dwx, _mm256_cvtepi32_ps(isum), acc);
    }
}

// acc += a decoded group times one token's arranged activations ga (the float step in the
// file's header); the same operations for every token, alone or in a batch. Sub-groups from ns
// on are known to be all zero (a row's last, short group): their products are skipped and the
// zero partial sums they would give taken instead (the same exact integers).
template <TensorType T>
APLS_KERNEL_INLINE __m256 apply_group(const GroupW& g, const uint8_t* ga, __m256 acc, int ns = 4) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i v[4];  // Q4: 16-bit partial sums (reduce4_16); Q8_0: 32-bit (reduce4)
    for (int s = 0; s < 4; ++s) {
        if (s >= ns) {
            v[s] = _mm256_setzero_si256();
            continue;
        }
        const __m256i alo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ga + s * kSubBytes));
        const __m256i ahi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ga + s * kSubBytes + 32));
        if constexpr (QTraits<T>::nib) {
            v[s] = _mm256_add_epi16(_mm256_maddubs_epi16(g.lo[s], alo), _mm256_maddubs_epi16(g.hi[s], ahi));
        } else {
            const __m256i plo = _mm256_maddubs_epi16(g.lo[s], _mm256_sign_epi8(alo, g.slo[s]));
            const __m256i phi = _mm256_maddubs_epi16(g.hi[s], _mm256_sign_epi8(ahi, g.shi[s]));
            v[s] = _mm256_add_epi32(_mm256_madd_epi16(plo, ones), _mm256_madd_epi16(phi, ones));
        }
    }
    const __m256i isum = QTraits<T>::nib ? reduce4_16(v[0], v[1], v[2], v[3]) : reduce4(v[0], v[1], v[2], v[3]);
    return scale_add<T>(acc, isum, g.dw, g.mw, ga);
}

// One token (matmul_q_t's path for single tokens and small batches): the integer sums of R rows
// fused with their loads; the same exact sums and float steps as the batch path below.

// Integer dot of one sub-group (2 blocks from p) with arranged activations a (lo at a, hi at
// a + 32): 128-bit lane j holds partial sums of block j, 8 in 16 bits (Q4, for reduce4_16) or 4
// in 32 bits (Q8_0, for reduce4). Block 1 reads as zero when nv < 2.
template <TensorType T, bool kFull>
APLS_KERNEL_INLINE __m256i sub_dot(const uint8_t* p, const uint8_t* a, int nv) {
    using Q = QTraits<T>;
    auto pair = [&](int off) {  // (2 blocks, 16 bytes)
        const __m128i b0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + off));
        const __m128i b1 = (kFull || nv > 1) ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + Q::bs + off))
                                             : _mm_setzero_si128();
        return _mm256_set_m128i(b1, b0);
    };
    const __m256i alo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
    const __m256i ahi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 32));
    const __m256i ones = _mm256_set1_epi16(1);
    if constexpr (Q::nib) {
        const __m256i raw = pair(Q::off), m4 = _mm256_set1_epi8(0x0F);
        const __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        return _mm256_add_epi16(_mm256_maddubs_epi16(lo, alo), _mm256_maddubs_epi16(hi, ahi));
    } else {
        const __m256i lo = pair(Q::off), hi = pair(Q::off + 16);
        const __m256i plo = _mm256_maddubs_epi16(_mm256_abs_epi8(lo), _mm256_sign_epi8(alo, lo));
        const __m256i phi = _mm256_maddubs_epi16(_mm256_abs_epi8(hi), _mm256_sign_epi8(ahi, hi));
        return _mm256_add_epi32(_mm256_madd_epi16(plo, ones), _mm256_madd_epi16(phi, ones));
    }
}

// One group of blocks (nv valid, 8 when kFull) of R rows: acc[i] += the group's contribution.
// The same group of the next R rows is prefetched: the R rows are R streams through adjacent
// memory that the hardware prefetchers follow poorly on one thread (a large Q8_0 head streams from
// DRAM), and the next band's bytes at this position are needed about one band from now.
template <TensorType T, int R, bool kFull>
APLS_KERNEL_INLINE void group(const uint8_t* w, uint64_t rb, const uint8_t* ga, int nv, __m256* acc) {
    using Q = QTraits<T>;
    for (int i = 0; i < R; ++i) {
        const uint8_t* p = w + i * rb;
        for (int c = 0; c < GRP * Q::bs + 64; c += 64)
            _mm_prefetch(reinterpret_cast<const char*>(p + R * rb + c), _MM_HINT_T0);
        __m256i v[4];
        for (int s = 0; s < 4; ++s) {
            const uint8_t* ps = p + s * SUB * Q::bs;
            const uint8_t* as = ga + s * kSubBytes;
            if (kFull) {
                v[s] = sub_dot<T, true>(ps, as, SUB);
            } else {
                const int n = nv - s * SUB;
                v[s] = n >= SUB ? sub_dot<T, true>(ps, as, SUB)
                       : n > 0  ? sub_dot<T, false>(ps, as, n)
                                : _mm256_setzero_si256();
            }
        }
        const __m256i isum = Q::nib ? reduce4_16(v[0], v[1], v[2], v[3]) : reduce4(v[0], v[1], v[2], v[3]);
        __m256 dw, mw = _mm256_setzero_ps();
        lane_scales<T, kFull>(p, nv, dw, mw);
        acc[i] = scale_add<T>(acc[i], isum, dw, mw, ga);
    }
}

template <TensorType T, int R>
void dot_rows(const uint8_t* w, uint64_t rb, const uint8_t* act, int64_t nb, float* out) {
    using Q = QTraits<T>;
    __m256 acc[R];
    for (int i = 0; i < R; ++i) acc[i] = _mm256_setzero_ps();
    const int64_t nfull = nb / GRP;
    for (int64_t g = 0; g < nfull; ++g) group<T, R, true>(w + g * GRP * Q::bs, rb, act + g * kGroupBytes, GRP, acc);
    if (const int nv = static_cast<int>(nb - nfull * GRP); nv > 0)
        group<T, R, false>(w + nfull * GRP * Q::bs, rb, act + nfull * kGroupBytes, nv, acc);
    for (int i = 0; i < R; ++i) out[i] = hsum(acc[i]);
}

// One row times NT tokens (activations at act + t * stride): each group decoded once for all of
// them, then dot_rows' operations per token.
template <TensorType T, int NT>
void row_tokens(const uint8_t* w, const uint8_t* act, int64_t stride, int64_t nb, float* y, int64_t ldy) {
    using Q = QTraits<T>;
    __m256 acc[NT];
    APLS_UNROLL_TILE
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
    GroupW g;
    const int64_t nfull = nb / GRP;
    for (int64_t gi = 0; gi < nfull; ++gi) {
        decode_group<T, true>(w + gi * GRP * Q::bs, GRP, g);
        for (int t = 0; t < NT; ++t) acc[t] = apply_group<T>(g, act + t * stride + gi * kGroupBytes, acc[t]);
    }
    if (const int nv = static_cast<int>(nb - nfull * GRP); nv > 0) {
        decode_group<T, false>(w + nfull * GRP * Q::bs, nv, g);
        const int ns = (nv + SUB - 1) / SUB;  // sub-groups with a valid block
        for (int t = 0; t < NT; ++t) acc[t] = apply_group<T>(g, act + t * stride + nfull * kGroupBytes, acc[t], ns);
    }
    for (int t = 0; t < NT; ++t) y[t * ldy] = hsum(acc[t]);
}

// Batches: per block of kBatchTokens tokens (their activations stay in L1/L2), every row
// decoded once per tile of up to 8 tokens (with_tile).
constexpr int64_t kBatchTokens = 8;

template <TensorType T>
void matmul_q_batch(const uint8_t* w, uint64_t rb, int64_t nb, const uint8_t* act, int64_t stride, int64_t n_tok,
                    float* y, int64_t ldy, int64_t r0, int64_t r1) {
    for (int64_t t0 = 0; t0 < n_tok; t0 += kBatchTokens)
        with_tile(std::min(kBatchTokens, n_tok - t0), [&](auto nt) {
            for (int64_t r = r0; r < r1; ++r)
                row_tokens<T, nt>(w + r * rb, act + t0 * stride, stride, nb, y + t0 * ldy + r, ldy);
        });
}

// ---- float weights ----

template <TensorType T>
inline __m256 load_w(const uint8_t* w, int64_t j) {
    if constexpr (T == TensorType::F32) {
        return _mm256_loadu_ps(reinterpret_cast<const float*>(w) + j);
    } else {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * j));
        if constexpr (T == TensorType::F16) return _mm256_cvtph_ps(h);
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));  // BF16
    }
}

// The last k % 8 elements, zero-padded to 8 (AVX2 has no masked 16-bit loads).
template <TensorType T>
inline __m256 load_w_tail(const uint8_t* w, int64_t j, int64_t n) {
    alignas(32) uint8_t buf[32] = {};
    std::memcpy(buf, w + j * (T == TensorType::F32 ? 4 : 2), static_cast<size_t>(n) * (T == TensorType::F32 ? 4 : 2));
    return load_w<T>(buf, 0);
}

inline __m256 load_x_tail(const float* x, int64_t n) {
    alignas(32) float buf[8] = {};
    std::memcpy(buf, x, static_cast<size_t>(n) * 4);
    return _mm256_load_ps(buf);
}

// Two accumulators per row (even / odd 8-float chunks), the tail in the second; fixed by k.
template <TensorType T, int R>
void fdot_rows(const uint8_t* w, uint64_t rb, const float* x, int64_t k, float* out) {
    __m256 a0[R], a1[R];
    for (int i = 0; i < R; ++i) a0[i] = a1[i] = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= k; j += 16) {
        const __m256 x0 = _mm256_loadu_ps(x + j), x1 = _mm256_loadu_ps(x + j + 8);
        for (int i = 0; i < R; ++i) {
            a0[i] = _mm256_fmadd_ps(load_w<T>(w + i * rb, j), x0, a0[i]);
            a1[i] = _mm256_fmadd_ps(load_w<T>(w + i * rb, j + 8), x1, a1[i]);
        }
    }
    if (j + 8 <= k) {
        const __m256 x0 = _mm256_loadu_ps(x + j);
        for (int i = 0; i < R; ++i) a0[i] = _mm256_fmadd_ps(load_w<T>(w + i * rb, j), x0, a0[i]);
        j += 8;
    }
    if (j < k) {
        const __m256 x1 = load_x_tail(x + j, k - j);
        for (int i = 0; i < R; ++i) a1[i] = _mm256_fmadd_ps(load_w_tail<T>(w + i * rb, j, k - j), x1, a1[i]);
    }
    for (int i = 0; i < R; ++i) out[i] = hsum(_mm256_add_ps(a0[i], a1[i]));
}

// ---- attention ----

APLS_KERNEL_INLINE __m256 load_kv(const void* p, int64_t i, bool f16) {
    if (f16)
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i)));
    return _mm256_loadu_ps(static_cast<const float*>(p) + i);
}

inline __m256 load_kv_tail(const void* p, int64_t i, int64_t n, bool f16) {
    if (f16) return load_w_tail<TensorType::F16>(static_cast<const uint8_t*>(p), i, n);
    return load_x_tail(static_cast<const float*>(p) + i, n);
}

float dot_kv(const float* q, const void* k, int64_t n, bool kv_f16) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_kv(k, i, kv_f16), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), load_kv(k, i + 8, kv_f16), a1);
    }
    if (i + 8 <= n) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_kv(k, i, kv_f16), a0);
        i += 8;
    }
    if (i < n) a0 = _mm256_fmadd_ps(load_x_tail(q + i, n - i), load_kv_tail(k, i, n - i, kv_f16), a0);
    return hsum(_mm256_add_ps(a0, a1));
}

// y += a * v with a separate multiply and add, as the generic code (same results).
void axpy_kv(float a, const void* v, float* y, int64_t n, bool kv_f16) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, load_kv(v, i, kv_f16))));
    if (i < n) {
        alignas(32) float buf[8];
        _mm256_store_ps(buf,
                        _mm256_add_ps(load_x_tail(y + i, n - i), _mm256_mul_ps(va, load_kv_tail(v, i, n - i, kv_f16))));
        std::memcpy(y + i, buf, static_cast<size_t>(n - i) * 4);
    }
}

// ---- grouped attention (see KernelTable::attn_scores) ----

// 8 values from d of a row of hd (zero-padded past hd).
inline __m256 ld_kv(const void* p, int64_t d, int64_t hd, bool f16) {
    return d + 8 <= hd ? load_kv(p, d, f16) : load_kv_tail(p, d, hd - d, f16);
}
inline __m256 ld_f(const float* p, int64_t d, int64_t hd) {
    return d + 8 <= hd ? _mm256_loadu_ps(p + d) : load_x_tail(p + d, hd - d);
}
inline void st_f(float* p, int64_t d, int64_t hd, __m256 x) {
    if (d + 8 <= hd) return _mm256_storeu_ps(p + d, x);
    alignas(32) float buf[8];
    _mm256_store_ps(buf, x);
    std::memcpy(p + d, buf, static_cast<size_t>(hd - d) * 4);
}

// G heads (G <= 4) against E rows at a time: one K load per 8 dims feeds every head, one query
// load every row. A head's score is one FMA chain over its dims in order and the same horizontal
// sum, whatever G and E are; the E x G chains are independent, so the FMA latency (a chain of 8
// dependent FMAs for hd = 64) is hidden instead of paid per row.
template <int G, int E>
APLS_KERNEL_INLINE void scores_rows(const float* q, int64_t hd, const uint8_t* k, int64_t stride, bool f16, float scale,
                                    float* s, int64_t lds) {
    __m256 acc[E][G];
    for (int e = 0; e < E; ++e)
        for (int g = 0; g < G; ++g) acc[e][g] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; d += 8) {
        __m256 qd[G];
        for (int g = 0; g < G; ++g) qd[g] = ld_f(q + g * hd, d, hd);
        for (int e = 0; e < E; ++e) {
            const __m256 kv = ld_kv(k + e * stride, d, hd, f16);
            for (int g = 0; g < G; ++g) acc[e][g] = _mm256_fmadd_ps(qd[g], kv, acc[e][g]);
        }
    }
    for (int e = 0; e < E; ++e)
        for (int g = 0; g < G; ++g) s[g * lds + e] = hsum(acc[e][g]) * scale;
}

// Rows a step where hd is not a multiple of 8 (scores_whole below otherwise): 12 chains in
// flight (E x G accumulators, G query and one K register: <= 16 ymm).
template <int G>
constexpr int kScoreRows = G <= 2   ? 4
                           : G == 3 ? 3
                                    : 2;

// Horizontal sums of 8 vectors at once: lane r of the result is the sum of v[r]'s lanes, by
// hsum()'s tree for every r (v_k + v_k+4, then pairs 0+2 and 1+3, then 0+1), so a score does
// not depend on whether it was reduced alone or with others; ~3 instructions a vector, not ~6.
APLS_KERNEL_INLINE __m256 hsum8(const __m256* v) {
    __m256 w[4], z[2];
    for (int j = 0; j < 4; ++j)  // halves: [v_2j lo + hi | v_2j+1 lo + hi]
        w[j] = _mm256_add_ps(_mm256_permute2f128_ps(v[2 * j], v[2 * j + 1], 0x20),
                             _mm256_permute2f128_ps(v[2 * j], v[2 * j + 1], 0x31));
    for (int m = 0; m < 2; ++m)  // per half: [b0 + b2, b1 + b3] of w[2m], then of w[2m + 1]
        z[m] = _mm256_add_ps(_mm256_shuffle_ps(w[2 * m], w[2 * m + 1], 0x44),
                             _mm256_shuffle_ps(w[2 * m], w[2 * m + 1], 0xEE));
    // Lanes: half 0 holds v0, v2, v4, v6; half 1 holds v1, v3, v5, v7.
    const __m256 f = _mm256_add_ps(_mm256_shuffle_ps(z[0], z[1], 0x88), _mm256_shuffle_ps(z[0], z[1], 0xDD));
    return _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// G heads x E rows of whole chunks of 8 dims: the same FMA chains as scores_rows, reduced 8
// at a time by hsum8 instead of one hsum per score.
template <int G, int E, bool F16>
APLS_KERNEL_INLINE void scores_block(const float* q, int64_t hd, const uint8_t* k, int64_t stride, __m256 scale,
                                     float* s, int64_t lds) {
    constexpr int N = (G * E + 7) / 8 * 8;
    __m256 acc[N];  // (G, E), row-major; the rest zero
    for (int j = 0; j < N; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; d += 8) {
        __m256 qd[G];
        for (int g = 0; g < G; ++g) qd[g] = _mm256_loadu_ps(q + g * hd + d);
        for (int e = 0; e < E; ++e) {
            const __m256 kv = load_kv(k + e * stride, d, F16);
            for (int g = 0; g < G; ++g) acc[g * E + e] = _mm256_fmadd_ps(qd[g], kv, acc[g * E + e]);
        }
    }
    alignas(32) float r[N];
    for (int j = 0; j < N; j += 8) _mm256_store_ps(r + j, _mm256_mul_ps(hsum8(acc + j), scale));
    for (int g = 0; g < G; ++g)
        for (int e = 0; e < E; ++e) s[g * lds + e] = r[g * E + e];
}

// Rows a block: G x E accumulators (8, or 12 for three heads: two hsum8, the second one a third
// full), G query and one K register within 16 ymm.
template <int G>
constexpr int kBlockRows = G <= 1   ? 8
                           : G <= 3 ? 4
                                    : 2;

template <int G, bool F16>
void scores_whole(const float* q, int64_t hd, const uint8_t* k, int64_t stride, int64_t n, float scale, float* s,
                  int64_t lds) {
    constexpr int E = kBlockRows<G>;
    const __m256 vs = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + E <= n; i += E) scores_block<G, E, F16>(q, hd, k + i * stride, stride, vs, s + i, lds);
    for (; i < n; ++i) scores_rows<G, 1>(q, hd, k + i * stride, stride, F16, scale, s + i, lds);
}

template <int G>
void scores_g(const float* q, int64_t hd, const uint8_t* k, int64_t stride, int64_t n, bool f16, float scale, float* s,
              int64_t lds) {
    if (hd % 8 == 0) {
        if (f16) return scores_whole<G, true>(q, hd, k, stride, n, scale, s, lds);
        return scores_whole<G, false>(q, hd, k, stride, n, scale, s, lds);
    }
    constexpr int E = kScoreRows<G>;
    int64_t i = 0;
    for (; i + E <= n; i += E) scores_rows<G, E>(q, hd, k + i * stride, stride, f16, scale, s + i, lds);
    for (; i < n; ++i) scores_rows<G, 1>(q, hd, k + i * stride, stride, f16, scale, s + i, lds);
}

void attn_scores(const float* q, int64_t n_q, int64_t hd, const void* k, int64_t stride, int64_t n, bool kv_f16,
                 float scale, float* s, int64_t lds) {
    const uint8_t* kb = static_cast<const uint8_t*>(k);
    for (int64_t h = 0; h < n_q; h += 4) {
        const float* qh = q + h * hd;
        float* sh = s + h * lds;
        switch (std::min<int64_t>(4, n_q - h)) {
            case 1:
                scores_g<1>(qh, hd, kb, stride, n, kv_f16, scale, sh, lds);
                break;
            case 2:
                scores_g<2>(qh, hd, kb, stride, n, kv_f16, scale, sh, lds);
                break;
            case 3:
                scores_g<3>(qh, hd, kb, stride, n, kv_f16, scale, sh, lds);
                break;
            default:
                scores_g<4>(qh, hd, kb, stride, n, kv_f16, scale, sh, lds);
                break;
        }
    }
}

// G heads x S chunks of 8 dims in registers across all rows (S = 4 for up to two heads, 3 for
// three, 2 for four: G x S accumulators, G weights and one V register within 16 ymm, and enough
// independent chains to hide the FMA latency); each output element is its own FMA chain over i
// in order, so the slab and head grouping never change a result.
template <int G>
constexpr int kAccumChunks = G <= 2   ? 4
                             : G == 3 ? 3
                                      : 2;

// One slab: C whole chunks of 8 dims from d0. C and the row type are known at compile time, so
// the G x C accumulators stay in registers across the rows (with runtime tails in the loop
// they went through the stack, a store and a reload per FMA).
template <int G, int C, bool F16>
APLS_KERNEL_INLINE void accum_slab(const float* w, int64_t ldw, int64_t hd, const uint8_t* v, int64_t stride, int64_t n,
                                   float* out, int64_t d0) {
    __m256 acc[G][C];
    for (int c = 0; c < C; ++c)
        for (int g = 0; g < G; ++g) acc[g][c] = _mm256_loadu_ps(out + g * hd + d0 + 8 * c);
    for (int64_t i = 0; i < n; ++i) {
        const uint8_t* vr = v + i * stride;
        __m256 wg[G];
        for (int g = 0; g < G; ++g) wg[g] = _mm256_set1_ps(w[g * ldw + i]);
        for (int c = 0; c < C; ++c) {
            const __m256 x = load_kv(vr, d0 + 8 * c, F16);
            for (int g = 0; g < G; ++g) acc[g][c] = _mm256_fmadd_ps(wg[g], x, acc[g][c]);
        }
    }
    for (int c = 0; c < C; ++c)
        for (int g = 0; g < G; ++g) _mm256_storeu_ps(out + g * hd + d0 + 8 * c, acc[g][c]);
}

// The whole chunks of every row: slabs of S chunks, then one of the rest.
template <int G, bool F16>
void accum_whole(const float* w, int64_t ldw, int64_t hd, const uint8_t* v, int64_t stride, int64_t n, float* out) {
    constexpr int S = kAccumChunks<G>;
    const int64_t whole = hd / 8;
    int64_t c0 = 0;
    for (; c0 + S <= whole; c0 += S) accum_slab<G, S, F16>(w, ldw, hd, v, stride, n, out, 8 * c0);
    switch (whole - c0) {
        case 1:
            return accum_slab<G, 1, F16>(w, ldw, hd, v, stride, n, out, 8 * c0);
        case 2:
            return accum_slab<G, 2, F16>(w, ldw, hd, v, stride, n, out, 8 * c0);
        case 3:
            return accum_slab<G, 3, F16>(w, ldw, hd, v, stride, n, out, 8 * c0);
        default:
            return;
    }
}

// The last hd % 8 dims (a partial chunk), with tail loads and stores.
template <int G>
void accum_tail(const float* w, int64_t ldw, int64_t hd, const uint8_t* v, int64_t stride, int64_t n, bool f16,
                float* out) {
    const int64_t d = hd / 8 * 8;
    __m256 acc[G];
    for (int g = 0; g < G; ++g) acc[g] = ld_f(out + g * hd, d, hd);
    for (int64_t i = 0; i < n; ++i) {
        const __m256 x = ld_kv(v + i * stride, d, hd, f16);
        for (int g = 0; g < G; ++g) acc[g] = _mm256_fmadd_ps(_mm256_set1_ps(w[g * ldw + i]), x, acc[g]);
    }
    for (int g = 0; g < G; ++g) st_f(out + g * hd, d, hd, acc[g]);
}

template <int G>
void accum_g(const float* w, int64_t ldw, int64_t hd, const uint8_t* v, int64_t stride, int64_t n, bool f16,
             float* out) {
    if (f16) accum_whole<G, true>(w, ldw, hd, v, stride, n, out);
    else accum_whole<G, false>(w, ldw, hd, v, stride, n, out);
    if (hd % 8 != 0) accum_tail<G>(w, ldw, hd, v, stride, n, f16, out);
}

void attn_accum(const float* w, int64_t ldw, int64_t n_q, int64_t hd, const void* v, int64_t stride, int64_t n,
                bool kv_f16, float* out) {
    const uint8_t* vb = static_cast<const uint8_t*>(v);
    for (int64_t h = 0; h < n_q; h += 4) {
        const float* wh = w + h * ldw;
        float* oh = out + h * hd;
        switch (std::min<int64_t>(4, n_q - h)) {
            case 1:
                accum_g<1>(wh, ldw, hd, vb, stride, n, kv_f16, oh);
                break;
            case 2:
                accum_g<2>(wh, ldw, hd, vb, stride, n, kv_f16, oh);
                break;
            case 3:
                accum_g<3>(wh, ldw, hd, vb, stride, n, kv_f16, oh);
                break;
            default:
                accum_g<4>(wh, ldw, hd, vb, stride, n, kv_f16, oh);
                break;
        }
    }
}

// exp(x) for x <= 0: x = n ln2 + r, |r| <= ln2/2, exp(r) by its degree-7 Taylor polynomial,
// times 2^n built in the exponent field (x clamped to -87 so 2^n stays a normal float; the
// weights it affects are below 1e-37 of the largest).
inline __m256 exp_neg(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

float attn_softmax(float* s, int64_t n) {
    float mx = -INFINITY;
    int64_t i = 0;
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + i));
    alignas(32) float buf[8];
    _mm256_store_ps(buf, vm);
    for (float b : buf) mx = b > mx ? b : mx;
    for (int64_t j = i; j < n; ++j) mx = s[j] > mx ? s[j] : mx;
    const __m256 vmax = _mm256_set1_ps(mx);
    __m256 sum = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(s + i), vmax));
        _mm256_storeu_ps(s + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (i < n) {
        // Tail lanes past n are forced to 0 so they add nothing to the sum.
        _mm256_store_ps(buf, exp_neg(_mm256_sub_ps(load_x_tail(s + i, n - i), vmax)));
        for (int64_t j = n - i; j < 8; ++j) buf[j] = 0.0f;
        std::memcpy(s + i, buf, static_cast<size_t>(n - i) * 4);
        sum = _mm256_add_ps(sum, _mm256_load_ps(buf));
    }
    return hsum(sum);
}

#include "cpu/kernels_avx2_rowoct.inc"
#include "cpu/kernels_x86_q5k.inc"

// The packed layouts (cpu/kernels.h): Q5_0 and Q5_1 in octets, Q4_0, Q4_1 and Q8_0 in row octets.
void matmul_q_packed(TensorType type, const uint8_t* w, int64_t k, const BlockQ8A* x, int64_t n_tok, float* y,
                     int64_t ldy, int64_t r0, int64_t r1) {
    switch (type) {
        case TensorType::Q4_0:
            return matmul_rowoct<TensorType::Q4_0>(w, k, x, n_tok, y, ldy, r0, r1);
        case TensorType::Q4_1:
            return matmul_rowoct<TensorType::Q4_1>(w, k, x, n_tok, y, ldy, r0, r1);
        case TensorType::Q8_0:
            return matmul_rowoct<TensorType::Q8_0>(w, k, x, n_tok, y, ldy, r0, r1);
        default:
            return matmul_q5_packed(type, w, k, x, n_tok, y, ldy, r0, r1);
    }
}

const KernelTable kTable = {"avx2",       quantize_act,    matmul_q,       matmul_f,
                            dot_kv,       axpy_kv,         attn_scores,    attn_accum,
                            attn_softmax, matmul_q_packed, f32_to_f16_row, /*packs_row_octets=*/true};

}  // namespace

const KernelTable* kernels_avx2() { return &kTable; }

}  // namespace apls::cpu
