// cuda/runner.cpp — a context on the GPU (runner.h): its stream, K/V store (kv_store.h), step
// inputs (step_inputs.h), the forward's steps (forward_ops.h) walked by forward.h, graphs of
// decode-sized walks (graphs.h), and the results the host asks for.
//
// Per decode call the host does three things: writes the step's small inputs into one pinned
// buffer and uploads them; launches the forward (a graph replay when t <= 64: one captured
// graph serves every step with the same plan and batch shape); and copies nothing back until
// asked (argmax/top_prob: 8 bytes per output row; logits only when read).
#include <algorithm>
#include <array>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "context.h"
#include "cuda/device_model.h"
#include "cuda/forward_ops.h"
#include "cuda/graphs.h"
#include "cuda/kv_store.h"
#include "cuda/launch.h"
#include "cuda/pinned_buffer.h"
#include "cuda/step_inputs.h"
#include "forward.h"
#include "runner.h"

namespace apls::cuda {

namespace {

// The largest batch a speculative round may verify: kMaxMatvecTokens, or fewer with
// APLS_CUDA_VERIFY_BATCH=n (1 <= n; measurements of smaller trees). Decided once per process.
int32_t invariant_batch() {
    static const int32_t n = [] {
        const char* env = std::getenv("APLS_CUDA_VERIFY_BATCH");
        const int v = env && *env ? std::atoi(env) : 0;
        return v >= 1 ? std::min(v, kMaxMatvecTokens) : kMaxMatvecTokens;
    }();
    return n;
}

// Graphs a context keeps: one per plan and batch shape — plain and draft steps, and a verify
// batch of each size up to kMaxMatvecTokens as a chain and as a tree.
constexpr size_t kMaxGraphs = 4 * kMaxMatvecTokens;

class CudaRunner final : public Runner {
public:
    explicit CudaRunner(Context& ctx);
    ~CudaRunner() override;

    KVStore& kv_store() override { return *store_; }
    int32_t forward(const Batch& batch, const Plan& plan, const Visibility& vis, const int64_t* slots,
                    int32_t chain_step) override;
    bool chains() const override { return true; }
    void chain_results(int32_t n, int32_t* ids, float* probs) override;
    void chain_fetch(int32_t step) override;
    int32_t chain_entry(int32_t step) override;
    const float* logits(int32_t n_rows) override;
    int32_t argmax(int32_t i, float* top_p) override;
    void top_k(int32_t n_rows, int32_t k, int32_t* ids) override;
    int32_t max_invariant_batch() const override { return invariant_batch(); }  // beyond: cuBLAS
    int32_t n_threads() const override { return 1; }

private:
    std::string graph_key(const Plan& plan, int n, int m) const;
    void fetch_results();  // queue the copies of the rows' choices (with the next wait)
    void wait_results();

    Context& ctx_;
    const CudaModel& dm_;
    const HParams& hp_;
    cudaStream_t stream_ = nullptr;
    std::unique_ptr<DeviceKVStore> store_;
    std::unique_ptr<StepInputs> inputs_;
    std::unique_ptr<CudaForward> ops_;
    GraphCache graphs_{kMaxGraphs};
    uint64_t inputs_generation_ = 0;  // of the inputs the graphs were captured with

    DeviceBuffer<int32_t> chain_ids_;  // the draft chain's greedy choices (n_batch)
    DeviceBuffer<float> chain_probs_;
    PinnedBuffer<int32_t> chain_host_;  // entries chain_fetch copied back, each with its event
    std::array<cudaEvent_t, kChainFetches> fetched_{};
    PinnedBuffer<int32_t> ids_host_;
    PinnedBuffer<float> probs_host_;
    DeviceBuffer<int32_t> top_ids_;  // top_k's (rows, k) ids
    PinnedBuffer<int32_t> top_host_;
    std::vector<float> logits_host_;
    bool results_fetched_ = false, logits_fetched_ = false;
    int m_ = 0;  // output rows of the last forward
};

CudaRunner::CudaRunner(Context& ctx)
    : ctx_(ctx), dm_(*static_cast<const CudaModel*>(ctx.model().device_model())), hp_(ctx.model().hparams()) {
    APLS_CUDA_CHECK(cudaSetDevice(dm_.device));
    APLS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    const uint32_t capacity = ctx.kv().capacity();
    const size_t t = std::max<size_t>(ctx.params().n_batch, kMaxMatvecTokens);
    store_ = std::make_unique<DeviceKVStore>(hp_, capacity, ctx.params().kv_type == APLS_KV_TYPE_F16, stream_);
    inputs_ = std::make_unique<StepInputs>(t, capacity, stream_);
    ops_ = std::make_unique<CudaForward>(dm_, hp_, t, capacity, *store_, *inputs_, stream_);
    chain_ids_.resize(t);
    chain_probs_.resize(t);
    chain_host_.resize(t);
    for (cudaEvent_t& e : fetched_) APLS_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    ids_host_.resize(t);
    probs_host_.resize(t);
    top_ids_.resize(t * kTopKMax);
    top_host_.resize(t * kTopKMax);
    APLS_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

CudaRunner::~CudaRunner() {
    graphs_.clear();
    if (stream_) cudaStreamSynchronize(stream_);
    for (cudaEvent_t e : fetched_)
        if (e) cudaEventDestroy(e);
    ops_.reset();
    inputs_.reset();
    store_.reset();
    if (stream_) cudaStreamDestroy(stream_);
}

std::string CudaRunner::graph_key(const Plan& plan, int n, int m) const {
    const StepInputs& in = *inputs_;
    std::string key = str(n, "/", m, "/", plan.head_rows, "/", in.has_view(), in.explicit_view(), in.tree(), "/");
    // View parameters are kernel arguments: graphs with a view are keyed by them too.
    if (in.has_view()) key += str("v", in.view().n_sink, ",", in.view().n_window, "/");
    key.append(plan.attn.begin(), plan.attn.end());
    key += '|';
    key.append(plan.mlp.begin(), plan.mlp.end());
    key += '|';
    for (int32_t g : plan.group) key += std::to_string(g) + ",";
    return key;
}

int32_t CudaRunner::forward(const Batch& batch, const Plan& plan, const Visibility& vis, const int64_t* slots,
                            int32_t chain_step) {
    APLS_CUDA_CHECK(cudaSetDevice(dm_.device));
    const int n = batch.size();
    if (chain_step >= 0 && (n != 1 || chain_step >= static_cast<int32_t>(chain_ids_.size())))
        fail(APLS_STATUS_INVALID_ARGUMENT, "draft chain step ", chain_step, " of ", n,
             " tokens: a chain step is one token, at most n_batch steps");
    store_->flush();
    const int m = inputs_->write(batch, vis, ctx_.kv(), slots);
    if (inputs_->generation() != inputs_generation_) {  // graphs hold the old addresses
        graphs_.clear();
        inputs_generation_ = inputs_->generation();
    }
    if (chain_step > 0)  // the token: the previous step's choice, on the device
        APLS_CUDA_CHECK(cudaMemcpyAsync(inputs_->tokens(), chain_ids_.get() + chain_step - 1, sizeof(int32_t),
                                        cudaMemcpyDeviceToDevice, stream_));
    m_ = m;
    results_fetched_ = logits_fetched_ = false;
    ops_->begin(n, m);
    if (n <= kMaxMatvecTokens && fused_groups_enabled()) ops_->ensure_lanes(plan.largest_group(hp_.n_layer));
    if (n > kMaxMatvecTokens || !GraphCache::enabled()) {
        apls::forward(*ops_, plan, hp_);
    } else {
        graphs_.launch(graph_key(plan, n, m), stream_, [&] { apls::forward(*ops_, plan, hp_); });
    }
    if (chain_step >= 0) {  // this step's choice and probability into the chain
        APLS_CUDA_CHECK(cudaMemcpyAsync(chain_ids_.get() + chain_step, ops_->ids(), sizeof(int32_t),
                                        cudaMemcpyDeviceToDevice, stream_));
        APLS_CUDA_CHECK(cudaMemcpyAsync(chain_probs_.get() + chain_step, ops_->probs(), sizeof(float),
                                        cudaMemcpyDeviceToDevice, stream_));
    }
    return m;
}

void CudaRunner::chain_results(int32_t n, int32_t* ids, float* probs) {
    if (n < 0 || n > static_cast<int32_t>(chain_ids_.size()))
        fail(APLS_STATUS_INVALID_ARGUMENT, "draft chain of ", n, " steps (at most ", chain_ids_.size(), ")");
    APLS_CUDA_CHECK(cudaMemcpyAsync(ids, chain_ids_.get(), n * sizeof(int32_t), cudaMemcpyDeviceToHost, stream_));
    APLS_CUDA_CHECK(cudaMemcpyAsync(probs, chain_probs_.get(), n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    APLS_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaRunner::chain_fetch(int32_t step) {
    if (step < 0 || step >= static_cast<int32_t>(chain_ids_.size()))
        fail(APLS_STATUS_INVALID_ARGUMENT, "chain entry ", step, " (at most ", chain_ids_.size(), ")");
    APLS_CUDA_CHECK(cudaMemcpyAsync(chain_host_.get() + step, chain_ids_.get() + step, sizeof(int32_t),
                                    cudaMemcpyDeviceToHost, stream_));
    APLS_CUDA_CHECK(cudaEventRecord(fetched_[step % kChainFetches], stream_));
}

int32_t CudaRunner::chain_entry(int32_t step) {
    if (step < 0 || step >= static_cast<int32_t>(chain_ids_.size()))
        fail(APLS_STATUS_INVALID_ARGUMENT, "chain entry ", step, " (at most ", chain_ids_.size(), ")");
    APLS_CUDA_CHECK(cudaEventSynchronize(fetched_[step % kChainFetches]));  // not the steps queued after it
    return chain_host_.get()[step];
}

void CudaRunner::fetch_results() {
    APLS_CUDA_CHECK(
        cudaMemcpyAsync(ids_host_.get(), ops_->ids(), m_ * sizeof(int32_t), cudaMemcpyDeviceToHost, stream_));
    APLS_CUDA_CHECK(
        cudaMemcpyAsync(probs_host_.get(), ops_->probs(), m_ * sizeof(float), cudaMemcpyDeviceToHost, stream_));
}

void CudaRunner::wait_results() {
    if (results_fetched_) return;
    fetch_results();
    APLS_CUDA_CHECK(cudaStreamSynchronize(stream_));
    results_fetched_ = true;
}

void CudaRunner::top_k(int32_t n_rows, int32_t k, int32_t* ids) {
    if (n_rows <= 0) return;
    if (k > kTopKMax)  // rare (token recycling keeps 8): from the logits on the host
        return host_top_k(logits(n_rows), n_rows, hp_.n_vocab, k, ids);
    const size_t n = static_cast<size_t>(n_rows) * k;  // n_rows <= t: the buffers hold it
    top_k_rows(ops_->logits(), n_rows, hp_.n_vocab, k, top_ids_.get(), stream_);
    APLS_CUDA_CHECK(
        cudaMemcpyAsync(top_host_.get(), top_ids_.get(), n * sizeof(int32_t), cudaMemcpyDeviceToHost, stream_));
    if (!results_fetched_) fetch_results();  // the choices come with the same wait
    APLS_CUDA_CHECK(cudaStreamSynchronize(stream_));
    results_fetched_ = true;
    std::copy(top_host_.get(), top_host_.get() + n, ids);
}

int32_t CudaRunner::argmax(int32_t i, float* top_p) {
    wait_results();
    if (top_p) *top_p = probs_host_.get()[i];
    return ids_host_.get()[i];
}

const float* CudaRunner::logits(int32_t n_rows) {
    const size_t n = static_cast<size_t>(m_) * hp_.n_vocab;
    if (logits_host_.size() < n) logits_host_.resize(n);  // grows once to the largest output seen
    if (!logits_fetched_ && n_rows > 0 && n > 0) {
        APLS_CUDA_CHECK(
            cudaMemcpyAsync(logits_host_.data(), ops_->logits(), n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
        APLS_CUDA_CHECK(cudaStreamSynchronize(stream_));
        logits_fetched_ = true;
    }
    return logits_host_.data();
}

}  // namespace

std::unique_ptr<Runner> make_runner(Context& ctx) {
    if (!ctx.model().device_model()) fail(APLS_STATUS_INTERNAL, "CUDA context for a model not uploaded to the GPU");
    return std::make_unique<CudaRunner>(ctx);
}

}  // namespace apls::cuda
