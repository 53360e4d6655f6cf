// cuda/forward_ops.h — the CUDA backend's steps of the forward pass (forward.h ForwardOps):
// every step enqueues kernels on the stream (cuda/launch.h) and nothing waits, so a whole walk
// can be captured as a graph (graphs.h).
//
// Matrix products of decode-sized batches (t <= kMaxMatvecTokens) take the matvec kernels, all
// products of a stage that share weight type and k in one launch (q/k/v; gate/up; a parallel
// group's members side by side); larger batches take cuBLAS (gemm.h). RMSNorm, SwiGLU and
// attention write the Q8 activations the next quantized product reads (no quantize launch).
//
// Letters: T = max(n_batch, kMaxMatvecTokens) rows, d = n_embd, f = n_ff, q = q_dim, kv = kv_dim.
#pragma once

#include <cuda_runtime.h>

#include <initializer_list>
#include <memory>
#include <vector>

#include "cuda/device_model.h"
#include "cuda/gemm.h"
#include "cuda/kv_store.h"
#include "cuda/launch.h"
#include "cuda/prompt_attention.h"
#include "cuda/step_inputs.h"
#include "forward.h"

namespace apls::cuda {

class CudaForward final : public ForwardOps {
public:
    CudaForward(const CudaModel& dm, const HParams& hp, size_t rows, uint32_t capacity, DeviceKVStore& kv,
                const StepInputs& in, cudaStream_t stream);
    ~CudaForward() override;

    // The next walk's batch: n tokens, m output rows.
    void begin(int n, int m) { n_ = n, m_ = m; }
    // Lanes for parallel groups of up to `count` layers side by side (allocate before a capture).
    void ensure_lanes(int count);
    // Device results of the last walk: logits (m, n_vocab), greedy choice and its probability (m).
    const float* logits() const { return logits_.get(); }
    const int32_t* ids() const { return ids_.get(); }
    const float* probs() const { return probs_.get(); }

    void attn_norm(Members m) override;
    void qkv(Members m) override;
    void qkv_bias(Members m) override;
    void qk_norm(Members m) override;
    void rope_store(Members m) override;
    void attend(Members m) override;
    void mlp_swiglu(Members m) override;
    void embed() override;
    void output(int32_t head_rows) override;
    bool side_by_side(int32_t n_layers) override;
    void group_begin(int32_t n_layers, bool lanes) override;
    void group_restore() override;
    void group_add(int32_t lane) override;
    void group_end() override;

private:
    // The buffers a layer works in: the pass's own, or one set per member of a parallel group run
    // side by side (lanes_). Widths as x_, h_, q_, ...
    struct Lane {
        float *x, *h, *q, *k, *v, *att, *gate, *up;
        QActs xq;
    };
    struct LaneBuffers;
    Lane lane(const Member& m) const;
    // Products of n_ rows: one launch when they share weight type and k (decode-sized), else one
    // each (a run of products of one input converts it for cuBLAS once).
    void run_jobs(const std::vector<MatvecJob>& jobs, int n);
    bool biases_in_products() const;
    // Decode, draft and verify batches (t <= kMaxMatvecTokens): the kernels whose results must be
    // batch invariant take their decode-sized shapes (e.g. rms_norm's `wide`).
    bool decode_sized() const { return n_ <= kMaxMatvecTokens; }
    // q when one of ws is quantized and n rows take the matvec path, else none.
    QActs acts_for(int n, std::initializer_list<const DeviceWeight*> ws, const QActs& q) const;
    // Quantize x (n rows of k) into q when acts_for says the products need it.
    void quantize_for(const float* x, int n, int64_t k, std::initializer_list<const DeviceWeight*> ws, const QActs& q);
    void attention_core(int32_t l, const Lane& b);

    const CudaModel& dm_;
    const HParams& hp_;
    DeviceKVStore& kv_;
    const StepInputs& in_;
    cudaStream_t stream_;
    int n_ = 0, m_ = 0;
    bool group_first_ = true;  // the next group_add is the group's first
    bool group_lanes_ = false;

    std::unique_ptr<Gemm> gemm_;                        // created on the first batch larger than kMaxMatvecTokens
    std::unique_ptr<PromptAttention> prompt_attn_;      // created on the first such batch of one sequence
    std::vector<std::unique_ptr<LaneBuffers>> lanes_;  // parallel group members, decode-sized batches

    // Scratch, (rows, width) floats.
    DeviceBuffer<float> x_, h_, q_, k_, v_, att_, gate_, up_, x0_, acc_, logits_;
    DeviceBuffer<float> part_acc_, part_ml_;
    DeviceBuffer<double> inv_freq_;  // RoPE frequencies (n_rot/2)
    DeviceBuffer<int8_t> xq_qs_;
    DeviceBuffer<float> xq_d_, xq_s_;
    QActs xq_;
    int max_splits_;
    DeviceBuffer<int32_t> ids_;
    DeviceBuffer<float> probs_;
};

// Whether a parallel group's layers run side by side (APLS_CUDA_FUSED_GROUPS=0: one after another).
bool fused_groups_enabled();

}  // namespace apls::cuda
