// cpu/kernels.h — the CPU compute kernels, one table per instruction set, chosen at run time.
//
// Dimension letters: k = inner (reduction) size, r = weight rows (output features),
// t = tokens in the batch.
//
// Batch invariance contract (docs/ARCHITECTURE.md): every output element is computed by the same sequence
// of floating-point operations whatever n_tok, r0 and r1 are, so a token's results are
// bit-identical alone or inside a batch, and whatever the thread split.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ggml_types.h"

namespace apls::cpu {

// A block of 32 activations quantized for integer dot products with every quantized weight type.
// qs[i] = round(x[i] / d), d = max|x| / 127 (d = 0 and qs = 0 for an all-zero block);
// s = d * sum(qs), used by the weight types whose values carry an offset (Q4_0's -8, Q4_1's m).
struct BlockQ8A {
    float d;
    float s;
    int8_t qs[QK];
};
static_assert(sizeof(BlockQ8A) == 40, "BlockQ8A layout");

struct KernelTable {
    const char* isa;  // "generic", "avx2", "avx512"

    // x: (k) floats -> y: (k/32) blocks. k % 32 == 0.
    void (*quantize_act)(const float* x, BlockQ8A* y, int64_t k);

    // Quantized weights (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) times quantized activations
    // (always BlockQ8A, one scale per 32: a Q4_K/Q5_K sub-block is one activation block, a Q6_K
    // activation block spans two of its 16-element sub-blocks; see kernels_x86_q5k.inc):
    //   y[t*ldy + r] = sum_j W[r, j] * X[t, j]   for r in [r0, r1), t in [0, n_tok)
    // w: (rows, k) in the GGUF block layout, row r at w + r * row_bytes(type, k).
    // x: (n_tok, k/32) blocks. y: (n_tok, ldy).
    void (*matmul_q)(TensorType type, const uint8_t* w, int64_t k, const BlockQ8A* x, int64_t n_tok, float* y,
                     int64_t ldy, int64_t r0, int64_t r1);

    // Float weights (F32, F16, BF16) times float activations; same shapes, x: (n_tok, k) floats.
    void (*matmul_f)(TensorType type, const uint8_t* w, int64_t k, const float* x, int64_t n_tok, float* y, int64_t ldy,
                     int64_t r0, int64_t r1);

    // Attention primitives over one head: dot of a query with a cached key, and
    // y += a * v for a cached value. Keys and values are F32 or F16 (kv_f16).
    float (*dot_kv)(const float* q, const void* k, int64_t n, bool kv_f16);
    void (*axpy_kv)(float a, const void* v, float* y, int64_t n, bool kv_f16);

    // Grouped attention over n consecutive cached rows (row i at k + i * stride bytes, hd F32 or
    // F16 values), for n_q query heads that share the KV head (GQA): each K/V row is loaded once
    // for all of them. Every result element is computed by the same operations whatever n_q,
    // n and the split of a head's entries into calls are (a head's arithmetic never depends on
    // the other heads of the call, nor on where a run of rows starts), which keeps attention
    // batch invariant when callers cut entries into runs at block boundaries.
    //   attn_scores: s[h * lds + i] = scale * dot(q[h * hd ..], K_i) for h < n_q, i < n.
    //   attn_accum:  out[h * hd + d] += w[h * ldw + i] * V_i[d], i = 0, 1, ... in order.
    void (*attn_scores)(const float* q, int64_t n_q, int64_t hd, const void* k, int64_t stride, int64_t n, bool kv_f16,
                        float scale, float* s, int64_t lds);
    void (*attn_accum)(const float* w, int64_t ldw, int64_t n_q, int64_t hd, const void* v, int64_t stride, int64_t n,
                       bool kv_f16, float* out);
    // Softmax numerator in place: s[i] = exp(s[i] - max_j s[j]) for i < n (n >= 1); returns the
    // sum of the new s[i]. Vectorised exp, lanes fixed by the index i, so the result depends only
    // on the n values.
    float (*attn_softmax)(float* s, int64_t n);

    // matmul_q on weights in a CPU-only packed layout of pack_rows() below (the types packs()
    // names for this table); the same results bit for bit as matmul_q on the GGUF bytes they
    // were packed from. nullptr where this ISA has no packed kernels (generic).
    void (*matmul_q_packed)(TensorType type, const uint8_t* w, int64_t k, const BlockQ8A* x, int64_t n_tok, float* y,
                            int64_t ldy, int64_t r0, int64_t r1);

    // y[i] = f32_to_f16(x[i]) for i < n (round to nearest even; a NaN becomes the quiet NaN of its
    // sign without payload): the same bits as the scalar function (ggml_types.h) for every input.
    void (*f32_to_f16_row)(const float* x, uint16_t* y, int64_t n);

    // Whether matmul_q_packed also takes Q4_0, Q4_1 and Q8_0, in row octets (below).
    bool packs_row_octets = false;
};

// The table for the best ISA this CPU supports, or the one named by the environment variable
// APLS_ISA ("generic", "avx2", "avx512") when set and supported.
const KernelTable& kernels();
// A specific table, or nullptr if this build or CPU lacks it (tests compare all of them).
const KernelTable* kernels_for(const char* isa);

// Per-ISA tables (defined in kernels_<isa>.cpp; nullptr when not compiled for this target).
const KernelTable* kernels_generic();
const KernelTable* kernels_avx2();
const KernelTable* kernels_avx512();

inline uint64_t row_bytes(TensorType type, int64_t k) {
    TypeTraits tt = type_traits(type);
    return static_cast<uint64_t>(k) / tt.block * tt.bytes;
}

// ---- the packed ("repacked") weight layouts: cpu/repack.cpp ----
// A copy of a matrix re-laid for the x86 one-token and batch kernels, made once at model load
// beside the untouched GGUF bytes (which the generic kernels, the CUDA upload, the embedding
// lookup and every byte-level API keep reading). Two layouts:
//
// Row octets (Q4_0, Q4_1, Q8_0, for ISAs with packs_row_octets: kernels_avx2_rowoct.inc). Rows
// go in sets of 8 (set s: rows 8s .. 8s + 7, at w + s * 8 * row_bytes(type, k); a last short
// set is padded with zero rows), each set block by block, one slab of 8 * bs bytes a block:
//   qs: Q4: 4 x 32 bytes, vector i: bytes 4r .. 4r + 3 = bytes 4i .. 4i + 3 of row r's block's
//       quants (low nibbles: weights 4i .. 4i + 3; high: 16 + 4i ..); Q8_0: 8 x 32 bytes, vector
//       j: bytes 4r .. 4r + 3 = row r's weights 4j .. 4j + 3
//   d:  8 fp16, row r's scale;  m (Q4_1 only): 8 fp16, the rows' offsets
// so a vector holds the same 4 weights of 8 rows: a token's products end as one int32 per row.
//
// Octets (Q5_0, Q5_1: kernels_x86_q5k.inc), row by row (row r at w + r * packed_row_bytes),
// each row octet by octet (8 blocks of 32 weights; bs = 22 for Q5_0, 24 for Q5_1):
//   qh: 32 bytes, bit planes: bit j of byte l = the high (0x10) bit of weight l of block j
//   qs: 4 x 32 bytes, pair p: byte l = weight l of block 2p (low nibble) | weight l of block
//       2p + 1 (high nibble), the low 4 bits of each weight
//   d:  8 fp16, block j's scale in lane j;  m (Q5_1 only): 8 fp16, the blocks' offsets
// = 8 * bs bytes, the size of the 8 blocks it came from. The last octet of a row whose block count
// is not a multiple of 8 (nv < 8 blocks) keeps only its ceil(nv / 2) pairs of qs (qh, d and m
// whole, zero past block nv): 48 + 32 * ceil(nv / 2) bytes (64 + ... for Q5_1), so a row is at
// most 8-48 bytes longer than in the file (Qwen2.5 k = 896: 640 bytes instead of 616).

// A row-octet type's GGUF block: its bytes, its quants' offset and bytes, whether it has an offset
// m after d; bs = 0 for a type without row octets. A block's slab is 8 * bs bytes: the quants'
// 8 * nqs, then the 8 d, then (m) the 8 m.
struct RowOctLayout {
    int bs, qs, nqs;
    bool m;
};
constexpr RowOctLayout rowoct_layout(TensorType type) {
    return type == TensorType::Q4_0   ? RowOctLayout{18, 2, 16, false}
           : type == TensorType::Q4_1 ? RowOctLayout{20, 4, 16, true}
           : type == TensorType::Q8_0 ? RowOctLayout{34, 2, 32, false}
                                      : RowOctLayout{0, 0, 0, false};
}

// Whether `table`'s matmul_q_packed takes `type` (with k a multiple of 32).
bool packs(const KernelTable& table, TensorType type);
// Bytes of one packed row in octets (Q5_0, Q5_1), 0 for another type.
uint64_t packed_row_bytes(TensorType type, int64_t k);
// Bytes of a packed matrix of rows rows of k weights, 0 for a type without a packed layout.
uint64_t packed_bytes(TensorType type, int64_t k, int64_t rows);
// rows rows of k weights from the GGUF layout at src to the packed layout at dst
// (packed_bytes(type, k, rows) bytes). type must have a packed layout.
void pack_rows(TensorType type, const uint8_t* src, int64_t k, int64_t rows, uint8_t* dst);
// Whether the engine packs weights for `table`: it has matmul_q_packed and the environment
// variable APLS_CPU_REPACK is not "0" (read once per process).
bool repack_enabled(const KernelTable& table);

}  // namespace apls::cpu
