// cuda/prompt_attention.cu — see prompt_attention.h.
#include "cuda/prompt_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "cuda/attention_visible.cuh"
#include "cuda/block_reduce.cuh"
#include "cuda/cublas_loader.h"
#include "cuda/dequant.cuh"
#include "cuda/pdl.cuh"

namespace apls::cuda {

namespace {

constexpr size_t kMaxScoreBytes = size_t{256} << 20;  // scores of one pass of KV groups
constexpr int kThreads = 256;

// k, v (n, kv_dim) F32 = the layer's K and V rows of entries off[0] .. off[0] + n - 1.
__global__ void gather_kv_kernel(AttentionArgs a, int n, int kv_dim, float* k, float* v) {
    pdl_enter();
    const int off = a.off[0];
    const int64_t total = static_cast<int64_t>(n) * kv_dim;
    for (int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; u < total;
         u += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t j = u / kv_dim, c = u % kv_dim;
        const int64_t base = static_cast<int64_t>(a.entry_slot[off + j]) * a.slot_stride + c;
        if (a.kv_f16) {
            const __half* kv = static_cast<const __half*>(a.kv);
            k[u] = __half2float(kv[base + a.k_offset]);
            v[u] = __half2float(kv[base + a.v_offset]);
        } else {
            const float* kv = static_cast<const float*>(a.kv);
            k[u] = kv[base + a.k_offset];
            v[u] = kv[base + a.v_offset];
        }
    }
}

// Row (head h0 + blockIdx.y, token blockIdx.x) of the scores s (heads, t, n): entries the token
// does not see to probability 0, the rest to their softmax (a row seeing nothing: all 0).
__global__ void masked_softmax_kernel(AttentionArgs a, float* s, int n) {
    pdl_enter();
    __shared__ float red[32];
    const int i = blockIdx.x;
    float* row = s + (static_cast<int64_t>(blockIdx.y) * a.n_tok + i) * n;
    const int off = a.off[i], n_end = a.n_end[i];
    float m = -INFINITY;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const float x = j < n_end && visible(a, i, j, a.entry_pos[off + j]) ? row[j] : -INFINITY;
        row[j] = x;
        m = fmaxf(m, x);
    }
    m = block_max(m, red);
    float l = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const float p = m == -INFINITY ? 0.0f : expf(row[j] - m);
        row[j] = p;
        l += p;
    }
    l = block_sum(l, red);
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) row[j] *= inv;
}

unsigned grid_for(int64_t n) { return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 4096)); }

}  // namespace

bool prompt_attention_enabled() {
    const char* e = std::getenv("APLS_CUDA_PROMPT_ATTN");
    return !(e && std::strcmp(e, "0") == 0);
}

PromptAttention::PromptAttention(cudaStream_t stream)
    : stream_(stream), handle_(std::make_unique<CublasHandle>(stream)) {}

PromptAttention::~PromptAttention() = default;

bool PromptAttention::run(const AttentionArgs& a, int n) {
    const int t = a.n_tok, hd = a.head_dim, group = a.n_head / a.n_head_kv, kv_dim = a.n_head_kv * hd;
    const size_t group_bytes = static_cast<size_t>(group) * t * n * sizeof(float);
    if (n <= 0 || group_bytes > kMaxScoreBytes) return false;
    const int groups_per_pass = static_cast<int>(std::min<size_t>(kMaxScoreBytes / group_bytes, a.n_head_kv));
    k_.resize(static_cast<size_t>(n) * kv_dim);
    v_.resize(static_cast<size_t>(n) * kv_dim);
    s_.resize(static_cast<size_t>(groups_per_pass) * group * t * n);
    launch_kernel(gather_kv_kernel, grid_for(static_cast<int64_t>(n) * kv_dim), kThreads, 0, stream_, a, n, kv_dim,
                  k_.get(), v_.get());
    const Cublas& b = cublas();
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd)), one = 1.0f, zero = 0.0f;
    const long long tn = static_cast<long long>(t) * n;
    for (int g0 = 0; g0 < a.n_head_kv; g0 += groups_per_pass) {
        const int ng = std::min(groups_per_pass, a.n_head_kv - g0);
        // Column-major views. Scores of head h = g*group + hh at s_ + ((g - g0)*group + hh) * t*n,
        // row-major (t, n) = column-major (n, t): S^T = K_g (n, hd) . Q_h^T, batched over g.
        for (int hh = 0; hh < group; ++hh) {
            const float* q = a.q + (static_cast<int64_t>(g0) * group + hh) * hd;
            cublas_check(b.gemm_strided_batched_ex(handle_->get(), CUBLAS_OP_T, CUBLAS_OP_N, n, t, hd, &scale,
                                                   k_.get() + static_cast<int64_t>(g0) * hd, CUDA_R_32F, kv_dim, hd, q,
                                                   CUDA_R_32F, a.n_head * hd, static_cast<long long>(group) * hd, &zero,
                                                   s_.get() + hh * tn, CUDA_R_32F, n, group * tn, ng,
                                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                         "cublasGemmStridedBatchedEx (scores)");
        }
        launch_kernel(masked_softmax_kernel, dim3(t, ng * group), kThreads, 0, stream_, a, s_.get(), n);
        // O_h^T (hd, t) = V_g^T (hd, n) . P_h^T (n, t), into out (t, n_head*hd) at head h.
        for (int hh = 0; hh < group; ++hh) {
            float* o = a.out + (static_cast<int64_t>(g0) * group + hh) * hd;
            cublas_check(b.gemm_strided_batched_ex(handle_->get(), CUBLAS_OP_N, CUBLAS_OP_N, hd, t, n, &one,
                                                   v_.get() + static_cast<int64_t>(g0) * hd, CUDA_R_32F, kv_dim, hd,
                                                   s_.get() + hh * tn, CUDA_R_32F, n, group * tn, &zero, o, CUDA_R_32F,
                                                   a.n_head * hd, static_cast<long long>(group) * hd, ng,
                                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                         "cublasGemmStridedBatchedEx (values)");
        }
    }
    return true;
}

}  // namespace apls::cuda
