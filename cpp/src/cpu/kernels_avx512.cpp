// cpu/kernels_avx512.cpp — AVX-512 (F, BW, VL, DQ, VNNI) kernels. Compiled with those flags only
// for this file (cmake/sources.cmake); dispatch.cpp calls in only when the CPU has them.
//
// Quantized products (see kernels_x86.inc for the activation layout): 4 weight blocks per
// 512-bit vector, 16-byte halves side by side; Q4 nibbles are unsigned and feed vpdpbusd
// directly, Q8_0 bytes are made unsigned with XOR 0x80 and 128 * sum(q_act) is taken off again.
// Per group of 16 blocks the integer sums are reduced to one int32 per block (lane order of
// reduce4), then scaled in float, 16 blocks at once, into one float accumulator per row:
//   Q4_0: acc += (dw * dx) * (isum - 8 * qsum)
//   Q4_1: acc += (dw * dx) * isum;  acc += mw * s
//   Q8_0: acc += (dw * dx) * (isum - 128 * qsum)
// and a fixed reduction tree at the end. Every step depends only on k, so an element's value
// does not depend on n_tok, r0, r1 or the row grouping (batch invariance).
// GCC 12 reports its own _mm512_undefined_*() inside the intrinsic headers as uninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#if defined(__GNUC__) && !defined(__clang__)  // clang has no -Wmaybe-uninitialized
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu/kernels.h"

namespace apls::cpu {
namespace {

constexpr int SUB = 4;
constexpr int64_t kBatchMin = 2;  // tokens from which matmul_q_batch takes the batch (the lane form)
#include "cpu/kernels_x86.inc"

inline float hsum(__m512 v) {
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

// Horizontal sums of 16 vectors at once: lane r of the result = sum of v[r]'s 16 lanes. Every
// row goes through the same addition tree (halves of 8, 4, 2, 1 lanes, as hsum()), whatever its
// place among the 16, so a score never depends on which rows share the group (float addition is
// commutative, only the grouping matters). ~3 instructions per row instead of ~8 for hsum().
inline __m512 hsum16(const __m512* v) {
    __m512 w[8], z[4], u[2];
    for (int j = 0; j < 8; ++j)  // 128-bit chunks: [a0 a1 b0 b1] + [a2 a3 b2 b3]
        w[j] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * j], v[2 * j + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * j], v[2 * j + 1], 0xEE));
    for (int m = 0; m < 4; ++m)  // chunk k <- rows 4m + k: [p0 p2 q0 q2] + [p1 p3 q1 q3]
        z[m] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * m], w[2 * m + 1], 0x88),
                             _mm512_shuffle_f32x4(w[2 * m], w[2 * m + 1], 0xDD));
    for (int n = 0; n < 2; ++n)  // within chunks: [p0 p1 q0 q1] + [p2 p3 q2 q3]
        u[n] = _mm512_add_ps(_mm512_shuffle_ps(z[2 * n], z[2 * n + 1], 0x44),
                             _mm512_shuffle_ps(z[2 * n], z[2 * n + 1], 0xEE));
    const __m512 f = _mm512_add_ps(_mm512_shuffle_ps(u[0], u[1], 0x88), _mm512_shuffle_ps(u[0], u[1], 0xDD));
    // f's lane 4k + j holds row k + 4j.
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_ps(idx, f);
}

void quantize_act(const float* x, BlockQ8A* y, int64_t k) {
    const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
    for (int64_t b = 0; b < k / QK; ++b) {
        const __m512 x0 = _mm512_loadu_ps(x + b * QK), x1 = _mm512_loadu_ps(x + b * QK + 16);
        const __m512 a = _mm512_max_ps(_mm512_and_ps(x0, abs_mask), _mm512_and_ps(x1, abs_mask));
        const float amax = _mm512_reduce_max_ps(a);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        // cvtps rounds in the current mode (nearest-even), as nearbyint does in the generic code.
        const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, _mm512_set1_ps(id)));
        const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, _mm512_set1_ps(id)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16), _mm512_cvtepi32_epi8(q1));
        const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        y[b].d = d;
        y[b].s = d * static_cast<float>(sum);
    }
}

// ---- quantized weights ----

// The 16-byte parts at offset off of SUB blocks bs bytes apart from p: chunk m = block m's
// (zero for m >= nv unless kFull).
template <TensorType T, bool kFull>
APLS_KERNEL_INLINE __m512i load_halves(const uint8_t* p, int nv, int off) {
    auto half = [&](int m) {
        if (kFull || m < nv) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + m * QTraits<T>::bs + off));
        return _mm_setzero_si128();
    };
    __m512i v = _mm512_castsi128_si512(half(0));
    v = _mm512_inserti32x4(v, half(1), 1);
    v = _mm512_inserti32x4(v, half(2), 2);
    return _mm512_inserti32x4(v, half(3), 3);
}

// Packed nibbles -> the low ones (elements 0-15 of a Q4 block) and the high ones (16-31).
APLS_KERNEL_INLINE void split_nibbles(__m512i raw, __m512i& lo, __m512i& hi) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    lo = _mm512_and_si512(raw, m4);
    hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
}

// A sub-group's weights (blocks from p, zero past nv) as unsigned vpdpbusd operands in the
// sub-group form: lo chunk m = elements 0-15 of block m, hi = 16-31 (Q4 nibbles split, Q8_0 bytes
// flipped by XOR 0x80).
template <TensorType T, bool kFull>
APLS_KERNEL_INLINE void sub_operands(const uint8_t* p, int nv, __m512i& lo, __m512i& hi) {
    using Q = QTraits<T>;
    if constexpr (Q::nib) {
        split_nibbles(load_halves<T, kFull>(p, nv, Q::off), lo, hi);
    } else {
        const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
        lo = _mm512_xor_si512(load_halves<T, kFull>(p, nv, Q::off), flip);
        hi = _mm512_xor_si512(load_halves<T, kFull>(p, nv, Q::off + 16), flip);
    }
}

// Integer dot of one sub-group (4 blocks from p) with arranged activations a (lo at a, hi at
// a + 64): 128-bit lane j holds 4 partial sums of block j. Blocks j >= nv read as zero.
template <TensorType T, bool kFull>
inline __m512i sub_dot(const uint8_t* p, const uint8_t* a, int nv) {
    __m512i lo, hi;
    sub_operands<T, kFull>(p, nv, lo, hi);
    const __m512i alo = _mm512_loadu_si512(a), ahi = _mm512_loadu_si512(a + 64);
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, alo), hi, ahi);
}

// Four sub-groups' partial sums -> one int32 per block, lane L = block lane_block(L).
inline __m512i reduce4(__m512i v0, __m512i v1, __m512i v2, __m512i v3) {
    const __m512i s01 = _mm512_add_epi32(_mm512_unpacklo_epi32(v0, v1), _mm512_unpackhi_epi32(v0, v1));
    const __m512i s23 = _mm512_add_epi32(_mm512_unpacklo_epi32(v2, v3), _mm512_unpackhi_epi32(v2, v3));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
}

// Constants of the per-row loop.
struct RowConsts {
    __m512i offs;       // byte offsets of the group's (d, m) / d words, lane order (gathers)
    __m512i qs_idx[4];  // Q4_1: dword indices of sub-group s's nibbles in registers (s, s + 1)
    __m512i dm_idx;     // Q4_1: dword index of each lane's (d, m) word (low bits select)
    __mmask16 dm_mid, dm_last;  // Q4_1: lanes whose word is in registers 2-3 / register 4
};

template <TensorType T>
RowConsts row_consts() {
    RowConsts c;
    alignas(64) int32_t o[16], q[16], dmi[16];
    unsigned mid = 0, last = 0;
    for (int L = 0; L < 16; ++L) {
        o[L] = lane_block(L) * QTraits<T>::bs;
        // A Q4_1 group is 16 blocks of 5 dwords = 5 registers: block b has (d, m) in dword 5b and
        // its nibbles in dwords 5b+1..5b+4; sub-group s (blocks 4s..4s+3) lies within registers s, s+1.
        q[L] = 5 * (L / 4) + 1 + L % 4;
        dmi[L] = 5 * lane_block(L);
        if (dmi[L] >= 64) last |= 1u << L;
        else if (dmi[L] >= 32) mid |= 1u << L;
    }
    c.offs = _mm512_load_si512(o);
    for (int s = 0; s < 4; ++s) c.qs_idx[s] = _mm512_add_epi32(_mm512_load_si512(q), _mm512_set1_epi32(4 * s));
    c.dm_idx = _mm512_load_si512(dmi);
    c.dm_mid = static_cast<__mmask16>(mid);
    c.dm_last = static_cast<__mmask16>(last);
    return c;
}

// Weight scales of one group, lane order: d -> dw and, for Q4_1, m -> mw.
inline void scales_from_words(__m512i dm, __m512& dw, __m512& mw) {
    dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
    mw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)));
}

template <TensorType T, bool kFull>
inline void gather_scales(const uint8_t* p, __mmask16 valid, const RowConsts& c, __m512& dw, __m512& mw) {
    // 32-bit words at each block's start: d (low half) and, for Q4_1, m (high half).
    const __m512i dm = kFull ? _mm512_i32gather_epi32(c.offs, p, 1)
                             : _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), valid, c.offs, p, 1);
    scales_from_words(dm, dw, mw);
}

// The float step shared by every path, so that an element's operations are always the same:
// acc += the group's contribution, from exact integer sums isum and weight scales dw, mw.
template <TensorType T>
inline __m512 scale_add(__m512 acc, __m512i isum, __m512 dw, __m512 mw, const uint8_t* ga) {
    const float* xd = reinterpret_cast<const float*>(ga + 4 * kSubBytes);
    if constexpr (T == TensorType::Q4_1) {
        acc = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_loadu_ps(xd)), _mm512_cvtepi32_ps(isum), acc);
        return _mm512_fmadd_ps(mw, _mm512_loadu_ps(xd + GRP), acc);
    } else {
        const __m512i qsum = _mm512_loadu_si512(xd + 2 * GRP);
        isum = _mm512_sub_epi32(isum, _mm512_slli_epi32(qsum, T == TensorType::Q4_0 ? 3 : 7));
        return _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_loadu_ps(xd)), _mm512_cvtepi32_ps(isum), acc);
    }
}

// A Q4_1 group's five 64-byte registers (16 blocks of 5 dwords: block b's (d, m) in dword 5b,
// its nibbles in dwords 5b+1..5b+4). A partial group loads only its 5 * nv dwords; the rest reads
// as zero.
template <bool kFull>
APLS_KERNEL_INLINE void load_q41_group(const uint8_t* p, int nv, __m512i* reg) {
    for (int j = 0; j < 5; ++j) {
        if (kFull) {
            reg[j] = _mm512_loadu_si512(p + 64 * j);
        } else {
            const int n = std::clamp(5 * nv - 16 * j, 0, 16);
            reg[j] = _mm512_maskz_loadu_epi32(static_cast<__mmask16>((1u << n) - 1), p + 64 * j);
        }
    }
}

// A Q4_1 group's scales from its registers: lanes take their word from registers 0-1, 2-3 or 4
// (the index's low bits).
APLS_KERNEL_INLINE void q41_scales(const __m512i* reg, const RowConsts& c, __m512& dw, __m512& mw) {
    const __m512i lo01 = _mm512_permutex2var_epi32(reg[0], c.dm_idx, reg[1]);
    const __m512i lo23 = _mm512_permutex2var_epi32(reg[2], c.dm_idx, reg[3]);
    const __m512i lo4 = _mm512_permutexvar_epi32(c.dm_idx, reg[4]);
    __m512i dm = _mm512_mask_blend_epi32(c.dm_mid, lo01, lo23);
    dm = _mm512_mask_blend_epi32(c.dm_last, dm, lo4);
    scales_from_words(dm, dw, mw);
}

inline __m512i dot_nibbles(__m512i raw, __m512i alo, __m512i ahi) {
    __m512i lo, hi;
    split_nibbles(raw, lo, hi);
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, alo), hi, ahi);
}

// One group of blocks of R rows: acc[i] += the group's contribution. kNV valid blocks (16: a
// full group), or 0: nv valid blocks, known at run time only.
template <TensorType T, int R, int kNV>
inline void group(const uint8_t* w, uint64_t rb, const uint8_t* ga, int nv, __mmask16 valid, const RowConsts& c,
                  __m512* acc) {
    using Q = QTraits<T>;
    constexpr bool kFull = kNV == GRP;
    if constexpr (kNV != 0) nv = kNV;
    for (int i = 0; i < R; ++i) {
        const uint8_t* p = w + i * rb;
        __m512i v[4];
        __m512 dw, mw;
        if constexpr (T == TensorType::Q4_1) {
            // Five 64-byte loads hold the whole group; permutes pick the nibbles and the scales.
            __m512i reg[5];
            load_q41_group<kFull>(p, nv, reg);
            for (int s = 0; s < 4; ++s)
                v[s] = (kFull || SUB * s < nv) ? dot_nibbles(_mm512_permutex2var_epi32(reg[s], c.qs_idx[s], reg[s + 1]),
                                                             _mm512_loadu_si512(ga + s * kSubBytes),
                                                             _mm512_loadu_si512(ga + s * kSubBytes + 64))
                                               : _mm512_setzero_si512();
            q41_scales(reg, c, dw, mw);
        } else {
            for (int s = 0; s < 4; ++s) {
                const uint8_t* ps = p + s * SUB * Q::bs;
                const uint8_t* as = ga + s * kSubBytes;
                if (kFull) {
                    v[s] = sub_dot<T, true>(ps, as, SUB);
                } else {
                    const int n = nv - s * SUB;
                    v[s] = n >= SUB ? sub_dot<T, true>(ps, as, SUB)
                           : n > 0  ? sub_dot<T, false>(ps, as, n)
                                    : _mm512_setzero_si512();
                }
            }
            gather_scales<T, kFull>(p, valid, c, dw, mw);
        }
        acc[i] = scale_add<T>(acc[i], reduce4(v[0], v[1], v[2], v[3]), dw, mw, ga);
    }
}

inline __mmask16 tail_lanes(int nv) {
    unsigned valid = 0;
    for (int L = 0; L < 16; ++L)
        if (lane_block(L) < nv) valid |= 1u << L;
    return static_cast<__mmask16>(valid);
}

template <TensorType T, int R>
void dot_rows(const uint8_t* w, uint64_t rb, const uint8_t* act, int64_t nb, float* out) {
    using Q = QTraits<T>;
    const RowConsts c = row_consts<T>();
    __m512 acc[R];
    for (int i = 0; i < R; ++i) acc[i] = _mm512_setzero_ps();
    const int64_t nfull = nb / GRP;
    for (int64_t g = 0; g < nfull; ++g)
        group<T, R, GRP>(w + g * GRP * Q::bs, rb, act + g * kGroupBytes, GRP, 0xFFFF, c, acc);
    if (const int nv = static_cast<int>(nb - nfull * GRP); nv > 0) {
        const uint8_t* wt = w + nfull * GRP * Q::bs;
        const uint8_t* at = act + nfull * kGroupBytes;
        group<T, R, 0>(wt, rb, at, nv, tail_lanes(nv), c, acc);
    }
    for (int i = 0; i < R; ++i) out[i] = hsum(acc[i]);
}

// ---- batches: the lane form ----
// A batch decodes each weight group once into registers "word-major" (W[j] lane L = elements
// 4j .. 4j+3 of block lane_block(L), as unsigned bytes) and runs every token of a tile of up to
// 8 against it: the activations are arranged the same way (arrange_batch_act), so a token's group
// is 8 vpdpbusd straight into lane L = its block, without reduce4's shuffles per token. The
// decode's 4 x 4 transpose of 32-bit words (the same shuffles, once per row instead of once per
// token) turns the sub-group form (chunk m of sub-group s = block 4s + m) into it. The integer sums
// are exact and the float step (scale_add) and hsum are dot_rows', so the results are the same bits.

// Arranged activations of one token for the lane form: per group, word j (j < 8) of every block
// as 64 bytes (lane L = qs[4j .. 4j+3] of block lane_block(L)), then xd, xs, qsum as arrange_act.
// A last group of at most SUB blocks (a short tail: k = 576 has 2) keeps arrange_act's sub-group
// form instead (chunk m of bytes 0-63 = qs[0..15] of block m, of bytes 64-127 = qs[16..31]).
// Full groups by gathers (word j of every block in one, and the scales; sum(q) from the words by
// vpdpbusd with ones): no per-block copies, which an instrumented build intercepts one by one.
void arrange_batch_act(const BlockQ8A* x, int64_t nb, uint8_t* out) {
    std::memset(out, 0, static_cast<size_t>(act_stride(nb)));
    alignas(64) int32_t off[16];
    for (int L = 0; L < 16; ++L) off[L] = lane_block(L) * static_cast<int32_t>(sizeof(BlockQ8A));
    const __m512i idx = _mm512_load_si512(off), ones = _mm512_set1_epi8(1), zero = _mm512_setzero_si512();
    for (int64_t g0 = 0; g0 < nb; g0 += GRP) {
        const int nv = static_cast<int>(std::min<int64_t>(GRP, nb - g0));
        uint8_t* g = out + g0 / GRP * kGroupBytes;
        float* xd = reinterpret_cast<float*>(g + 4 * kSubBytes);
        int32_t* qsum = reinterpret_cast<int32_t*>(xd + 2 * GRP);
        if (nv <= SUB) {  // a short tail: arrange_act's sub-group form
            arrange_act(x + g0, nv, g);
            continue;
        }
        const __mmask16 valid = tail_lanes(nv);
        const uint8_t* base = reinterpret_cast<const uint8_t*>(x + g0);
        __m512i sum = zero;
        for (int j = 0; j < 8; ++j) {
            const __m512i v = _mm512_mask_i32gather_epi32(zero, valid, idx, base + offsetof(BlockQ8A, qs) + 4 * j, 1);
            _mm512_store_si512(g + 64 * j, v);
            sum = _mm512_dpbusd_epi32(sum, ones, v);
        }
        _mm512_store_ps(xd, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, idx, base + offsetof(BlockQ8A, d), 1));
        _mm512_store_ps(xd + GRP,
                        _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, idx, base + offsetof(BlockQ8A, s), 1));
        _mm512_store_si512(qsum, sum);
    }
}

// v[s] chunk m = 4 words of block 4s + m  ->  q[i] lane 4m + s = word i of that block.
APLS_KERNEL_INLINE void transpose_words(const __m512i* v, __m512i* q) {
    const __m512i t0 = _mm512_unpacklo_epi32(v[0], v[1]), t1 = _mm512_unpackhi_epi32(v[0], v[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(v[2], v[3]), t3 = _mm512_unpackhi_epi32(v[2], v[3]);
    q[0] = _mm512_unpacklo_epi64(t0, t2);
    q[1] = _mm512_unpackhi_epi64(t0, t2);
    q[2] = _mm512_unpacklo_epi64(t1, t3);
    q[3] = _mm512_unpackhi_epi64(t1, t3);
}

// One group of one row in the lane form: W[8] and its scales dw, mw. nv valid blocks (GRP when
// kFull); the others decode as zero weights with zero scales, as in group().
template <TensorType T, bool kFull>
APLS_KERNEL_INLINE void decode_lanes(const uint8_t* p, int nv, __mmask16 valid, const RowConsts& c, __m512i* W,
                                     __m512& dw, __m512& mw) {
    using Q = QTraits<T>;
    __m512i v[4], q[4];
    auto gather4 = [&](int s, int off) { return load_halves<T, kFull>(p + SUB * s * Q::bs, nv - SUB * s, off); };
    if constexpr (T == TensorType::Q4_1) {
        __m512i reg[5];
        load_q41_group<kFull>(p, nv, reg);
        for (int s = 0; s < 4; ++s) v[s] = _mm512_permutex2var_epi32(reg[s], c.qs_idx[s], reg[s + 1]);
        q41_scales(reg, c, dw, mw);
    } else {
        for (int s = 0; s < 4; ++s) v[s] = gather4(s, Q::off);
        gather_scales<T, kFull>(p, valid, c, dw, mw);
    }
    transpose_words(v, q);
    if constexpr (Q::nib) {
        for (int i = 0; i < 4; ++i) split_nibbles(q[i], W[i], W[4 + i]);
    } else {
        // Zero padding flipped to 128 meets zero activations: no contribution.
        const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
        for (int i = 0; i < 4; ++i) W[i] = _mm512_xor_si512(q[i], flip);
        for (int s = 0; s < 4; ++s) v[s] = gather4(s, Q::off + 16);
        transpose_words(v, q);
        for (int i = 0; i < 4; ++i) W[4 + i] = _mm512_xor_si512(q[i], flip);
    }
}

// A short tail (nv <= SUB blocks) in the sub-group form: W[0] chunk m = the low halves' bytes
// (elements 0-15) of block m, W[1] the high halves' (16-31); scales as decode_lanes.
template <TensorType T>
APLS_KERNEL_INLINE void decode_short(const uint8_t* p, int nv, __mmask16 valid, const RowConsts& c, __m512i* W,
                                     __m512& dw, __m512& mw) {
    if constexpr (T == TensorType::Q4_1) {
        __m512i reg[5];
        load_q41_group<false>(p, nv, reg);
        split_nibbles(_mm512_permutex2var_epi32(reg[0], c.qs_idx[0], reg[1]), W[0], W[1]);
        q41_scales(reg, c, dw, mw);
    } else {
        sub_operands<T, false>(p, nv, W[0], W[1]);
        gather_scales<T, false>(p, valid, c, dw, mw);
    }
}

// Lane 4m = the exact dot product of block m of a short tail (decode_short) with the token's
// group ga. The other lanes hold sums of blocks past the tail's, whose scales are zero.
APLS_KERNEL_INLINE __m512i dot_short(const __m512i* W, const uint8_t* ga) {
    __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), W[0], _mm512_load_si512(ga));
    s = _mm512_dpbusd_epi32(s, W[1], _mm512_load_si512(ga + 64));
    s = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_BADC));
    return _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_CDAB));
}

// Lane L = the exact dot product of block lane_block(L) with the token's group ga (lane form).
APLS_KERNEL_INLINE __m512i dot_group_lanes(const __m512i* W, const uint8_t* ga) {
    auto a = [&](int j) { return _mm512_load_si512(ga + 64 * j); };
    __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), W[0], a(0));
    __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), W[4], a(4));
    for (int j = 1; j < 4; ++j) {
        s0 = _mm512_dpbusd_epi32(s0, W[j], a(j));
        s1 = _mm512_dpbusd_epi32(s1, W[4 + j], a(4 + j));
    }
    return _mm512_add_epi32(s0, s1);
}

// Horizontal sums of up to 16 accumulators at once (hsum16, hsum's addition tree), each stored
// to its destination.
struct HsumQueue {
    __m512 v[16];
    float* dst[16];
    int n = 0;
    APLS_KERNEL_INLINE void push(__m512 a, float* d) {
        v[n] = a;
        dst[n] = d;
        if (++n == 16) flush();
    }
    void flush() {
        if (n == 0) return;
        for (int i = n; i < 16; ++i) v[i] = _mm512_setzero_ps();
        alignas(64) float s[16];
        _mm512_store_ps(s, hsum16(v));
        for (int i = 0; i < n; ++i) *dst[i] = s[i];
        n = 0;
    }
};

// One row against NT tokens (activations act + t * stride): y[t * ldy] for t < NT, through q.
template <TensorType T, int NT>
void row_lanes(const uint8_t* w, int64_t nb, const RowConsts& c, const uint8_t* act, int64_t stride, float* y,
               int64_t ldy, HsumQueue& q) {
    using Q = QTraits<T>;
    __m512 acc[NT];
    APLS_UNROLL_TILE
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    __m512i W[8];
    __m512 dw, mw;
    const int64_t nfull = nb / GRP;
    for (int64_t g = 0; g < nfull; ++g) {
        decode_lanes<T, true>(w + g * GRP * Q::bs, GRP, 0xFFFF, c, W, dw, mw);
        for (int t = 0; t < NT; ++t) {
            const uint8_t* ga = act + t * stride + g * kGroupBytes;
            acc[t] = scale_add<T>(acc[t], dot_group_lanes(W, ga), dw, mw, ga);
        }
    }
    if (const int nv = static_cast<int>(nb - nfull * GRP); nv > 0) {
        const uint8_t* p = w + nfull * GRP * Q::bs;
        const bool short_tail = nv <= SUB;
        if (short_tail) decode_short<T>(p, nv, tail_lanes(nv), c, W, dw, mw);
        else decode_lanes<T, false>(p, nv, tail_lanes(nv), c, W, dw, mw);
        for (int t = 0; t < NT; ++t) {
            const uint8_t* ga = act + t * stride + nfull * kGroupBytes;
            acc[t] = scale_add<T>(acc[t], short_tail ? dot_short(W, ga) : dot_group_lanes(W, ga), dw, mw, ga);
        }
    }
    for (int t = 0; t < NT; ++t) q.push(acc[t], y + t * ldy);
}

// Row tiles of kRowTile (their weights stay in L1 while every token tile passes), token tiles of
// at most 8 and as even as they come (one accumulator per token in registers: 9 tokens are 5 + 4,
// not 8 + 1).
template <TensorType T>
void matmul_q_batch(const uint8_t* w, uint64_t rb, int64_t nb, const uint8_t* act, int64_t stride, int64_t n_tok,
                    float* y, int64_t ldy, int64_t r0, int64_t r1) {
    const RowConsts c = row_consts<T>();
    const int64_t n_tiles = (n_tok + 7) / 8;
    HsumQueue q;
    for (int64_t rt = r0; rt < r1; rt += kRowTile) {
        const int64_t re = std::min(r1, rt + kRowTile);
        for (int64_t i = 0, t0 = 0; i < n_tiles; ++i) {
            const int64_t nt = n_tok / n_tiles + (i < n_tok % n_tiles ? 1 : 0);
            with_tile(nt, [&](auto ntc) {
                for (int64_t r = rt; r < re; ++r)
                    row_lanes<T, ntc>(w + r * rb, nb, c, act + t0 * stride, stride, y + t0 * ldy + r, ldy, q);
            });
            t0 += nt;
        }
    }
    q.flush();
}

// ---- float weights ----

template <TensorType T>
inline __m512 load_w(const uint8_t* w, int64_t j, __mmask16 m = 0xFFFF) {
    if constexpr (T == TensorType::F32) {
        return _mm512_maskz_loadu_ps(m, w + 4 * j);
    } else {
        const __m256i h = _mm256_maskz_loadu_epi16(m, w + 2 * j);
        if constexpr (T == TensorType::F16) return _mm512_cvtph_ps(h);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));  // BF16
    }
}

// Two accumulators per row (even / odd 16-float chunks), the tail in the second; fixed by k.
template <TensorType T, int R>
void fdot_rows(const uint8_t* w, uint64_t rb, const float* x, int64_t k, float* out) {
    __m512 a0[R], a1[R];
    for (int i = 0; i < R; ++i) a0[i] = a1[i] = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= k; j += 32) {
        const __m512 x0 = _mm512_loadu_ps(x + j), x1 = _mm512_loadu_ps(x + j + 16);
        for (int i = 0; i < R; ++i) {
            a0[i] = _mm512_fmadd_ps(load_w<T>(w + i * rb, j), x0, a0[i]);
            a1[i] = _mm512_fmadd_ps(load_w<T>(w + i * rb, j + 16), x1, a1[i]);
        }
    }
    if (j + 16 <= k) {
        const __m512 x0 = _mm512_loadu_ps(x + j);
        for (int i = 0; i < R; ++i) a0[i] = _mm512_fmadd_ps(load_w<T>(w + i * rb, j), x0, a0[i]);
        j += 16;
    }
    if (j < k) {
        const __mmask16 m = static_cast<__mmask16>((1u << (k - j)) - 1);
        const __m512 x1 = _mm512_maskz_loadu_ps(m, x + j);
        for (int i = 0; i < R; ++i) a1[i] = _mm512_fmadd_ps(load_w<T>(w + i * rb, j, m), x1, a1[i]);
    }
    for (int i = 0; i < R; ++i) out[i] = hsum(_mm512_add_ps(a0[i], a1[i]));
}

// ---- attention ----

inline __m512 load_kv(const void* p, int64_t i, bool f16, __mmask16 m = 0xFFFF) {
    if (f16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(p) + i));
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(p) + i);
}

float dot_kv(const float* q, const void* k, int64_t n, bool kv_f16) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), load_kv(k, i, kv_f16), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), load_kv(k, i + 16, kv_f16), a1);
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - i)) - 1);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), load_kv(k, i, kv_f16, m), a0);
    }
    return hsum(_mm512_add_ps(a0, a1));
}

// y += a * v with a separate multiply and add, as the generic code (same results).
void axpy_kv(float a, const void* v, float* y, int64_t n, bool kv_f16) {
    const __m512 va = _mm512_set1_ps(a);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - i)) - 1);
        const __m512 r = _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), _mm512_mul_ps(va, load_kv(v, i, kv_f16, m)));
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}

// ---- grouped attention (see KernelTable::attn_scores) ----

inline __mmask16 tail16(int64_t r) { return r >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << r) - 1); }

// G heads (G <= 4) against up to 16 rows at a time: one K load per 16 dims feeds every head,
// each (head, row) is one FMA chain over its dims in order, reduced by hsum16. Rows past n are
// zero vectors in the reduction and not stored.
template <int G>
void scores_g(const float* q, int64_t hd, const uint8_t* k, int64_t stride, int64_t n, bool f16, float scale, float* s,
              int64_t lds) {
    const __m512 vscale = _mm512_set1_ps(scale);
    __m512 acc[G][16];
    for (int64_t i0 = 0; i0 < n; i0 += 16) {
        const int nr = static_cast<int>(std::min<int64_t>(16, n - i0));
        for (int r = 0; r < 16; ++r) {
            for (int g = 0; g < G; ++g) acc[g][r] = _mm512_setzero_ps();
            if (r >= nr) continue;
            const void* kr = k + (i0 + r) * stride;
            for (int64_t d = 0; d < hd; d += 16) {
                const __mmask16 m = tail16(hd - d);
                const __m512 kv = load_kv(kr, d, f16, m);
                for (int g = 0; g < G; ++g)
                    acc[g][r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + g * hd + d), kv, acc[g][r]);
            }
        }
        for (int g = 0; g < G; ++g)
            _mm512_mask_storeu_ps(s + g * lds + i0, tail16(nr), _mm512_mul_ps(hsum16(acc[g]), vscale));
    }
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

// G heads x S chunks of 16 dims held in registers across all rows (each V load feeds G FMAs,
// G * S independent chains). Each output element is its own FMA chain over i in order, so the
// slab and head grouping never change a result.
template <int G, int S>
void accum_g(const float* w, int64_t ldw, int64_t hd, const uint8_t* v, int64_t stride, int64_t n, bool f16,
             float* out) {
    for (int64_t d0 = 0; d0 < hd; d0 += 16 * S) {
        __mmask16 m[S];
        __m512 acc[G][S];
        for (int c = 0; c < S; ++c) {
            const int64_t d = d0 + 16 * c;
            m[c] = d < hd ? tail16(hd - d) : 0;
            for (int g = 0; g < G; ++g) acc[g][c] = _mm512_maskz_loadu_ps(m[c], out + g * hd + d);
        }
        for (int64_t i = 0; i < n; ++i) {
            const void* vr = v + i * stride;
            __m512 wg[G];
            for (int g = 0; g < G; ++g) wg[g] = _mm512_set1_ps(w[g * ldw + i]);
            for (int c = 0; c < S; ++c) {
                const __m512 x = load_kv(vr, d0 + 16 * c, f16, m[c]);
                for (int g = 0; g < G; ++g) acc[g][c] = _mm512_fmadd_ps(wg[g], x, acc[g][c]);
            }
        }
        for (int c = 0; c < S; ++c)
            for (int g = 0; g < G; ++g) _mm512_mask_storeu_ps(out + g * hd + d0 + 16 * c, m[c], acc[g][c]);
    }
}

template <int G>
void accum_s(const float* w, int64_t ldw, int64_t hd, const uint8_t* v, int64_t stride, int64_t n, bool f16,
             float* out) {
    // Widest slab that covers hd without idle chunks, within 16 accumulators.
    constexpr int kMaxS = G <= 2 ? 8 : 4;
    if (hd <= 32) accum_g<G, 2>(w, ldw, hd, v, stride, n, f16, out);
    else if (hd <= 64 || kMaxS == 4) accum_g<G, 4>(w, ldw, hd, v, stride, n, f16, out);
    else accum_g<G, kMaxS>(w, ldw, hd, v, stride, n, f16, out);
}

void attn_accum(const float* w, int64_t ldw, int64_t n_q, int64_t hd, const void* v, int64_t stride, int64_t n,
                bool kv_f16, float* out) {
    const uint8_t* vb = static_cast<const uint8_t*>(v);
    for (int64_t h = 0; h < n_q; h += 4) {
        const float* wh = w + h * ldw;
        float* oh = out + h * hd;
        switch (std::min<int64_t>(4, n_q - h)) {
            case 1:
                accum_s<1>(wh, ldw, hd, vb, stride, n, kv_f16, oh);
                break;
            case 2:
                accum_s<2>(wh, ldw, hd, vb, stride, n, kv_f16, oh);
                break;
            case 3:
                accum_s<3>(wh, ldw, hd, vb, stride, n, kv_f16, oh);
                break;
            default:
                accum_s<4>(wh, ldw, hd, vb, stride, n, kv_f16, oh);
                break;
        }
    }
}

// exp(x) for x <= 0: x = n ln2 + r, |r| <= ln2/2, exp(r) by its degree-7 Taylor polynomial
// (error < 1e-8 relative), times 2^n with scalef (which also underflows to 0 correctly).
inline __m512 exp_neg(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

float attn_softmax(float* s, int64_t n) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n; i += 16) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(mx, tail16(n - i), s + i));
    const __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail16(n - i);
        const __m512 e = _mm512_maskz_mov_ps(m, exp_neg(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + i), vmax)));
        _mm512_mask_storeu_ps(s + i, m, e);
        sum = _mm512_add_ps(sum, e);
    }
    return hsum(sum);
}

#include "cpu/kernels_x86_q5k.inc"

const KernelTable kTable = {"avx512",    quantize_act, matmul_q,     matmul_f,         dot_kv,        axpy_kv,
                            attn_scores, attn_accum,   attn_softmax, matmul_q5_packed, f32_to_f16_row};

}  // namespace

const KernelTable* kernels_avx512() { return &kTable; }

}  // namespace apls::cpu
