// cuda/prompt_attention.h — attention for prompt batches through cuBLAS.
//
// A prompt (t > kMaxMatvecTokens tokens whose entries are one list: one sequence) is attention
// over a t x n score matrix per head. The flash-decoding kernel (attention()) would read the
// K/V rows once per token; here the layer's K and V rows of the list are gathered once into F32
// matrices (n, kv_dim), and per head
//     S = Q K^T / sqrt(hd)        (t, n)   cuBLAS, F32 (no TF32)
//     P = softmax(mask(S))        (t, n)   the visibility rules of attention(): causal, views
//     O = P V                     (t, hd)  cuBLAS, F32
// The heads sharing a KV head are one strided-batched GEMM per position in the group. Results
// match attention() to float rounding (another summation order), not bit for bit: decode,
// draft and verify batches keep the flash-decoding kernel and its batch invariance.
#pragma once

#include <memory>

#include "cuda/cuda_common.h"
#include "cuda/launch.h"

namespace apls::cuda {

class CublasHandle;  // cublas_loader.h, kept out of this header (its users need no cuBLAS headers)

class PromptAttention {
public:
    explicit PromptAttention(cudaStream_t stream);
    ~PromptAttention();

    // a as for attention(), every token's list being entries [a.off[0], + n_entries); false (and
    // nothing done) when the scores of even one KV head's group would exceed the scratch limit.
    bool run(const AttentionArgs& a, int n_entries);

private:
    cudaStream_t stream_;
    std::unique_ptr<CublasHandle> handle_;
    DeviceBuffer<float> k_, v_, s_;  // gathered K and V (n, kv_dim); scores (heads of a pass, t, n)
};

// Whether prompts use it (APLS_CUDA_PROMPT_ATTN=0: the flash-decoding kernel for every batch).
bool prompt_attention_enabled();

}  // namespace apls::cuda
