// cuda/launch.h — the CUDA backend's kernels as host functions, one per operation. Every
// function launches on `stream` and checks the launch. Letters: t = tokens, d = n_embd,
// k = inner size, r = weight rows, hd = head_dim.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "cuda/cuda_common.h"
#include "rope.h"
#include "visibility.h"

namespace apls::cuda {

// Activations quantized for the integer dot products with quantized weights, as the CPU does
// (cpu::BlockQ8A, bit-identical): per block of 32, d = max|x| / 127, qs = nearbyint(x / d),
// s = d * sum(qs). Arrays: qs (t, k) int8, d and s (t, k/32).
struct QActs {
    int8_t* qs = nullptr;
    float* d = nullptr;
    float* s = nullptr;
};
// Largest batch the decode kernels take (matrix-vector products, flash-decoding attention): a
// verify batch of a token tree of up to 64 tokens (kMaxTreeNodes); bigger batches (prompts) go to
// cuBLAS (gemm.cpp). Every kernel computes a token's results by the same operations in any batch
// up to this size (batch invariance).
constexpr int kMaxMatvecTokens = 64;
// Tokens of one matrix-vector launch: a larger batch runs as groups of this many (matvec_qmma:
// the grid's y; the other kernels: a launch per group).
constexpr int kMatvecGroup = 16;

void quantize_q8(const float* x, int n_tok, int64_t k, const QActs& out, cudaStream_t stream);

// Whether F16 matrix products run on the tensor cores (matvec_tc) on the current device:
// APLS_CUDA_TC=1/0, else by the device's peak memory bandwidth (matvec.cu).
bool f16_on_tensor_cores();
// Whether batches of quantized rows take the integer tensor-core kernel (matvec_qmma):
// APLS_CUDA_QMMA=1/0, else wherever it exists (matvec.cu). Same bits either way.
bool qmma_enabled();

// y (t, ldy) [+]= x (t, k) · W^T for t <= kMaxMatvecTokens: every weight is read once for the
// whole batch, and each (token, row) result is computed by the same operations whatever t is
// (batch invariance: a token's result is bit-identical alone or in a verify batch).
// Float weights read x; quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) read xq = quantize_q8(x) and use
// exact int8 dot products per block (dp4a, or mma for batches), as the CPU kernels do.
void matvec(const DeviceWeight& w, int64_t rows, const float* x, const QActs& xq, int n_tok, float* y, int64_t ldy,
            bool accumulate, cudaStream_t stream);
// Several products of one weight type and k in one launch (q/k/v, gate/up, parallel groups).
struct MatvecJob {
    const DeviceWeight* w;
    int64_t rows;
    const float* x;
    QActs xq;
    float* y;
    int64_t ldy;
    bool accumulate;
    const float* bias = nullptr;  // (rows) added to each output row last, or nullptr
};
void matvec_multi(const MatvecJob* jobs, int n_jobs, int n_tok, cudaStream_t stream);
inline bool is_quantized(TensorType t) {
    return t == TensorType::Q8_0 || t == TensorType::Q4_0 || t == TensorType::Q4_1 || t == TensorType::Q5_0 ||
           t == TensorType::Q5_1 || t == TensorType::Q4_K || t == TensorType::Q5_K || t == TensorType::Q6_K;
}

// Embedding lookup: x[i] = dequantize(table row tokens[i]) for i < n_tok.
void embed(const DeviceWeight& table, const int32_t* tokens, int n_tok, float* x, cudaStream_t stream);

// y[i] = x[rows ? rows[i] : i] * rsqrt(mean(x^2) + eps) * w, for i < n_rows; x, y: (., d).
// q: also write y quantized for the quantized weights that read it (fused quantize_q8).
// wide: a thread per element for rows up to 1024 wide (the shortest kernel for the few rows of
// decode and verify; prompts keep fewer threads a row). The block shape decides the sum's order,
// so the calls whose results must agree bit for bit (decode and verify) pass the same.
void rms_norm(const float* x, const int32_t* rows, const float* w, float* y, int n_rows, int d, float eps,
              cudaStream_t stream, const QActs& q = QActs{}, bool wide = false);

// RoPE (pairs of the first n_rot dims of each head as `style` lays them out, rope.h: adjacent
// (x[2i], x[2i+1]) or NEOX (x[i], x[i + n_rot/2]); theta_i = pos * freq_scale * inv_freq[i],
// inv_freq = rope_inv_freq(...)) on q (t, n_head*hd) and k (t, n_kv*hd) in place, then K and V
// of token i are stored at KV slot slots[i], layer `layer` (layout: see kv_store.h).
struct RopeStoreArgs {
    float* q;
    float* k;
    const float* v;
    const int32_t* pos;
    const int32_t* slots;
    int n_tok, n_head, n_head_kv, head_dim, n_rot;
    float base, freq_scale;
    const double* inv_freq;  // (n_rot/2) base^(-2i/n_rot), computed on the host as the CPU does
    void* kv;             // the cache
    int64_t slot_stride;  // elements between consecutive slots
    int64_t k_offset, v_offset;  // elements from a slot's start to this layer's K and V rows
    bool kv_f16;
    RopeStyle style = RopeStyle::NORM;
};
void rope_store(const RopeStoreArgs& a, cudaStream_t stream);
// inv_freq[i] = base^(-2i/n_rot) in double, i < n_rot/2 (host side, as cpu::rope_table).
std::vector<double> rope_inv_freq(float base, int n_rot);

// Bias rows: q (t, qd) += bq, k (t, kvd) += bk, v (t, kvd) += bv (attention biases), one launch.
void qkv_bias(float* q, float* k, float* v, const float* bq, const float* bk, const float* bv, int n_tok, int qd,
              int kvd, cudaStream_t stream);
// y (t, d) += b for t rows (b: (d)).
void add_bias(float* y, const float* b, int n_tok, int d, cudaStream_t stream);

// g = silu(g) * u elementwise, n elements.
void silu_mul(float* g, const float* u, int64_t n, cudaStream_t stream, const QActs& q = QActs{});
// Parallel groups: acc (+)= x - x0 (first: acc = x - x0); x = x0 + acc; dst = src.
void group_delta(float* acc, const float* x, const float* x0, int64_t n, bool first, cudaStream_t stream);
void group_finish(float* x, const float* x0, const float* acc, int64_t n, cudaStream_t stream);
void copy(float* dst, const float* src, int64_t n, cudaStream_t stream);

// For each of m rows of logits (ld n_vocab): ids[i] = argmax over the first n_valid entries
// (ties to the lowest id), top_p[i] = its softmax probability over those entries; entries
// [n_valid, n_vocab) are set to -inf.
void argmax_rows(float* logits, int m, int n_vocab, int n_valid, int32_t* ids, float* top_p, cudaStream_t stream);
// For each of m rows of logits (ld n_vocab): ids (m, k) = the k largest of its first n_vocab
// entries, largest first, ties to the lowest id (NaN entries never taken); 1 <= k <= kTopKMax.
constexpr int kTopKMax = 8;
void top_k_rows(const float* logits, int m, int n_vocab, int k, int32_t* ids, cudaStream_t stream);

// Attention over the block KV cache for a batch (flash-decoding: the entries of a sequence are
// cut into fixed splits of kAttnSplit entries, each scored by one thread block, then merged).
// The split size is fixed, so a token's result depends only on its own entries, not on the
// batch. Per token i: its sequence's entries are entry_slot/entry_pos[off[i] .. off[i] + n_end[i]);
// which of them it sees is visibility.h's rule (attention_visible.cuh): causal, the view on the
// entries before index n_old[i] (explicit views through view_mask[off[i] + j]), a tree's
// ancestors (anc[i]) among the call's own entries.
constexpr int kAttnSplit = 64;
constexpr int kMaxAttentionHeadDim = 128;  // head dimensions: multiples of 8 up to this
struct AttentionArgs {
    const float* q;  // (t, n_head*hd), RoPE applied
    float* out;      // (t, n_head*hd)
    const void* kv;
    int64_t slot_stride, k_offset, v_offset;
    bool kv_f16;
    const int32_t* entry_slot;
    const int32_t* entry_pos;
    const uint8_t* view_mask;  // explicit view: 1 = the entry is listed; or nullptr
    const int32_t* off;
    const int32_t* n_end;
    const int32_t* n_old;  // (t) entries held before the call; nullptr: 0 (no view and no tree)
    const uint64_t* anc;   // (t) tree batch: ancestors-and-self masks; nullptr: a causal batch
    const int32_t* pos;
    ViewRule view;         // the view of the entries before n_old (view.on = false: none)
    int n_tok, n_head, n_head_kv, head_dim;
    int max_splits;  // grid size: splits of the longest possible sequence (graph capture)
    float* part_acc;  // (t, n_head, max_splits, hd) scratch
    float* part_ml;   // (t, n_head, max_splits, 2) scratch
    QActs out_q;      // set: out also as Q8 activations (as quantize_q8); needs hd % 32 == 0 and t <= 16
};
void attention(const AttentionArgs& a, cudaStream_t stream);

// K rows of every layer at the given slots re-rotated by cos_sin (n_rot/2 pairs of cos, sin),
// pairs laid out as `style`.
void kv_rerotate(void* kv, bool kv_f16, int64_t slot_stride, int n_layer, int kv_dim, const int32_t* slots, int n_slots,
                 const float* cos_sin, int n_head_kv, int head_dim, int n_rot, RopeStyle style, cudaStream_t stream);

// Weights to F16 (for cuBLAS): out (rows, k) halfs.
void dequantize_f16(const DeviceWeight& w, int64_t rows, void* out, cudaStream_t stream);
void to_f16(const float* x, int64_t n, void* out, cudaStream_t stream);

}  // namespace apls::cuda
