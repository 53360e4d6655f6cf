// cuda/runner.cpp — a context on the GPU: KV storage, scratch, the forward pass as a sequence
// of launches, replayed from CUDA graphs for decode-sized batches.
//
// Per decode call the host does three things: writes the step's small inputs (tokens,
// positions, KV slots, the entries each token attends to) into one pinned buffer and copies it
// up in one transfer; launches the forward (a graph replay when t <= 16: every kernel reads
// its per-step inputs from that device buffer, so one captured graph serves every step with
// the same plan and batch shape); and copies nothing back until asked (argmax/top_prob: 8 bytes
// per output row; logits only when read).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "context.h"
#include "cpu/ops.h"
#include "cuda/device_model.h"
#include "cuda/gemm.h"
#include "cuda/launch.h"
#include "cuda/prompt_attention.h"

namespace apls::cuda {

namespace {

constexpr size_t kMaxGraphs = 64;  // bounded graph cache: (plan, batch shape) -> executable graph

bool graphs_enabled() {
    static const bool on = [] {
        const char* e = std::getenv("APLS_CUDA_GRAPHS");
        return !(e && e[0] == '0');
    }();
    return on;
}

// A parallel group's layers side by side, each matrix stage one launch (APLS_CUDA_FUSED_GROUPS=0:
// one layer after the other).
bool fused_groups_enabled() {
    static const bool on = [] {
        const char* e = std::getenv("APLS_CUDA_FUSED_GROUPS");
        return !(e && e[0] == '0');
    }();
    return on;
}

// Pinned host memory (freed with cudaFreeHost).
template <typename T>
struct PinnedBuffer {
    T* p = nullptr;
    size_t n = 0;
    void resize(size_t want) {
        if (want <= n) return;
        if (p) cudaFreeHost(p);
        p = nullptr;
        n = 0;
        APLS_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&p), want * sizeof(T)));
        n = want;
    }
    ~PinnedBuffer() {
        if (p) cudaFreeHost(p);
    }
};

class CudaRunner final : public DeviceRunner, public KVStore {
public:
    explicit CudaRunner(Context& ctx);
    ~CudaRunner() override;

    void forward(const Batch& batch, const Plan& plan, const Visibility& vis, const int64_t* slots,
                 int32_t chain_step) override;
    void chain_results(int32_t n, int32_t* ids, float* probs) override;
    void fetch_logits(float* dst, int32_t n_rows) override;
    const int32_t* argmax() override;
    const float* top_prob() override;
    int32_t max_invariant_batch() const override { return kMaxMatvecTokens; }  // beyond: cuBLAS

    void copy_slot(int64_t dst, int64_t src) override;
    void rerotate(int64_t slot, const float* cos_sin) override;
    void flush() override;

private:
    // Step inputs: one int32 array on the device, segments at fixed offsets (graph replay needs
    // fixed addresses): t = n_batch rows for the per-token arrays, E entries for the entries.
    struct Segments {
        size_t anc, tokens, pos, slots, out_rows, off, n_end, n_old, entry_slot, entry_pos, total;
    };
    void layout(size_t entries);
    size_t write_inputs(const Batch& batch, const Visibility& vis, const int64_t* slots);
    void launch_forward(const Plan& plan, int n, int m, bool has_view, bool has_mask);

    // The buffers a layer works in: the context's own (main_lane()), or, for a parallel group run
    // side by side, one set per member (lanes_). Widths as x_, h_, q_, ...
    struct Lane {
        float *x, *h, *q, *k, *v, *att, *gate, *up;
        QActs xq;
    };
    struct LaneBuffers {
        DeviceBuffer<float> x, h, q, k, v, att, gate, up, xq_d, xq_s;
        DeviceBuffer<int8_t> xq_qs;
        Lane lane() const;
    };
    Lane main_lane() const;
    void ensure_lanes(int count);  // before graph capture: capture cannot allocate
    // Layers ls[0..count) on lanes[0..count), stage by stage: every matrix stage of all of them
    // is one list of products (one launch for decode-sized batches). count = 1: one layer.
    void run_layers(const Plan& plan, const int32_t* ls, const Lane* lanes, int count, int n, bool has_view,
                    bool has_mask);
    // One stage of run_layers: step(l, layer, lane, jobs) for each member whose attention (attn)
    // or MLP sub-block the plan runs (its row work, then its products into jobs); then the jobs.
    template <typename Step>
    void stage(const Plan& plan, const int32_t* ls, const Lane* lanes, int count, int n, bool attn, Step step);
    void parallel_group(const Plan& plan, int32_t first, int32_t end, int n, bool has_view, bool has_mask);
    void attention_core(int l, int n, bool has_view, bool has_mask, const Lane& b);
    // Products of n rows: one launch when they share weight type and k (decode-sized), else one
    // each (a run of products of one input converts it for cuBLAS once).
    void run_jobs(const std::vector<MatvecJob>& jobs, int n);
    // Quantize x (n rows of k) into q when one of ws is quantized and n takes the matvec path.
    void quantize_for(const float* x, int n, int64_t k, std::initializer_list<const DeviceWeight*> ws, const QActs& q);
    // q when one of ws is quantized (and n takes the matvec path), else none.
    QActs acts_for(int n, std::initializer_list<const DeviceWeight*> ws, const QActs& q) const;
    // The forward of the inputs written: a replayed graph per (plan, batch shape) for
    // decode-sized batches, else launched directly.
    void launch(const Plan& plan, int n, int m, bool has_view, bool has_mask);
    void wait_results();
    std::string graph_key(const Plan& plan, int n, int m, bool has_view, bool has_mask) const;

    Context& ctx_;
    const CudaModel& dm_;
    const HParams& hp_;
    cudaStream_t stream_ = nullptr;
    std::unique_ptr<Gemm> gemm_;  // created on the first batch larger than kMaxMatvecTokens
    std::vector<std::unique_ptr<LaneBuffers>> lanes_;  // parallel group members, decode-sized batches
    std::unique_ptr<PromptAttention> prompt_attn_;  // created on the first such batch of one sequence
    int one_list_entries_ = 0;  // the batch's tokens share one entry list of this length (0: several)

    // KV cache: slot-major, slot s holds for every layer l: K row then V row (kv_dim each).
    DeviceBuffer<uint8_t> kv_;
    bool kv_f16_;
    int64_t slot_stride_;  // elements per slot: n_layer * 2 * kv_dim
    std::vector<int32_t> rot_slots_;
    std::vector<float> rot_cs_;
    DeviceBuffer<int32_t> rot_slots_dev_;
    DeviceBuffer<float> rot_cs_dev_;

    // Scratch, (rows, width) floats. T = n_batch rows.
    DeviceBuffer<float> x_, h_, q_, k_, v_, att_, gate_, up_, x0_, acc_, logits_;
    DeviceBuffer<float> part_acc_, part_ml_;
    DeviceBuffer<double> inv_freq_;  // RoPE frequencies (n_rot/2)
    DeviceBuffer<int8_t> xq_qs_;
    DeviceBuffer<float> xq_d_, xq_s_;
    QActs xq_;
    int max_splits_;
    DeviceBuffer<int32_t> ids_;
    DeviceBuffer<float> probs_;
    DeviceBuffer<int32_t> chain_ids_;  // the draft chain's greedy choices (n_batch)
    DeviceBuffer<float> chain_probs_;
    PinnedBuffer<int32_t> ids_host_;
    PinnedBuffer<float> probs_host_;
    bool results_fetched_ = false;
    int m_ = 0;          // output rows of the last forward
    int head_rows_ = 0;  // valid logits per row of the last forward

    Segments seg_{};
    size_t entry_cap_ = 0;
    DeviceBuffer<int32_t> in_dev_;
    DeviceBuffer<uint8_t> mask_dev_;
    PinnedBuffer<int32_t> in_host_;
    PinnedBuffer<uint8_t> mask_host_;
    cudaEvent_t inputs_copied_ = nullptr;
    int32_t n_sink_ = 0, n_window_ = -1;
    bool tree_ = false;  // the inputs hold a tree batch (ancestor masks in seg_.anc)

    struct Graph {
        cudaGraphExec_t exec = nullptr;
    };
    std::unordered_map<std::string, Graph> graphs_;
    void clear_graphs();
};

CudaRunner::CudaRunner(Context& ctx)
    : ctx_(ctx),
      dm_(*static_cast<const CudaModel*>(ctx.model().device_model())),
      hp_(ctx.model().hparams()),
      kv_f16_(ctx.kv().f16()) {
    APLS_CUDA_CHECK(cudaSetDevice(dm_.device));
    APLS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    APLS_CUDA_CHECK(cudaEventCreateWithFlags(&inputs_copied_, cudaEventDisableTiming));
    const KVCache& kv = ctx.kv();
    slot_stride_ = static_cast<int64_t>(hp_.n_layer) * 2 * hp_.kv_dim();
    kv_.resize(static_cast<size_t>(kv.capacity()) * slot_stride_ * (kv_f16_ ? 2 : 4));
    APLS_CUDA_CHECK(cudaMemsetAsync(kv_.get(), 0, kv_.size(), stream_));

    const size_t t = std::max<size_t>(ctx.params().n_batch, kMaxMatvecTokens);
    const size_t d = hp_.n_embd, f = hp_.n_ff, qd = hp_.q_dim(), kvd = hp_.kv_dim();
    x_.resize(t * d);
    h_.resize(t * std::max(d, qd));
    q_.resize(t * qd);
    k_.resize(t * kvd);
    v_.resize(t * kvd);
    att_.resize(t * qd);
    gate_.resize(t * f);
    up_.resize(t * f);
    x0_.resize(t * d);
    acc_.resize(t * d);
    logits_.resize(t * static_cast<size_t>(hp_.n_vocab));
    max_splits_ = static_cast<int>((kv.capacity() + kAttnSplit - 1) / kAttnSplit);
    part_acc_.resize(t * hp_.n_head * max_splits_ * hp_.head_dim);
    part_ml_.resize(t * hp_.n_head * max_splits_ * 2);
    const std::vector<double> inv_freq = rope_inv_freq(hp_.rope_freq_base, hp_.n_rot);
    inv_freq_.resize(inv_freq.size() + 1);
    APLS_CUDA_CHECK(
        cudaMemcpy(inv_freq_.get(), inv_freq.data(), inv_freq.size() * sizeof(double), cudaMemcpyHostToDevice));
    const size_t wide = std::max({d, f, qd});
    xq_qs_.resize(t * wide);
    xq_d_.resize(t * wide / 32 + 1);
    xq_s_.resize(t * wide / 32 + 1);
    xq_ = QActs{xq_qs_.get(), xq_d_.get(), xq_s_.get()};
    ids_.resize(t);
    probs_.resize(t);
    chain_ids_.resize(t);
    chain_probs_.resize(t);
    ids_host_.resize(t);
    probs_host_.resize(t);
    layout(kv.capacity());
    ctx.kv().attach_store(this);
    APLS_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

CudaRunner::~CudaRunner() {
    ctx_.kv().attach_store(nullptr);
    clear_graphs();
    if (stream_) cudaStreamSynchronize(stream_);
    if (inputs_copied_) cudaEventDestroy(inputs_copied_);
    if (stream_) cudaStreamDestroy(stream_);
}

void CudaRunner::clear_graphs() {
    for (auto& [key, g] : graphs_)
        if (g.exec) cudaGraphExecDestroy(g.exec);
    graphs_.clear();
}

void CudaRunner::layout(size_t entries) {
    const size_t t = std::max<size_t>(ctx_.params().n_batch, kMaxMatvecTokens);
    seg_.anc = 0;  // (t) uint64: first, so 8-byte aligned
    seg_.tokens = 2 * t;
    seg_.pos = 3 * t;
    seg_.slots = 4 * t;
    seg_.out_rows = 5 * t;
    seg_.off = 6 * t;
    seg_.n_end = 7 * t;
    seg_.n_old = 8 * t;
    seg_.entry_slot = 9 * t;
    seg_.entry_pos = 9 * t + entries;
    seg_.total = 9 * t + 2 * entries;
    entry_cap_ = entries;
    in_dev_ = DeviceBuffer<int32_t>(seg_.total);
    mask_dev_ = DeviceBuffer<uint8_t>(entries);
    in_host_.resize(seg_.total);
    mask_host_.resize(entries);
    clear_graphs();  // graphs hold the old addresses
}

// ---- KV store ---------------------------------------------------------------------------------

void CudaRunner::copy_slot(int64_t dst, int64_t src) {
    flush();  // rotations issued before this copy apply first
    const size_t bytes = static_cast<size_t>(slot_stride_) * (kv_f16_ ? 2 : 4);
    APLS_CUDA_CHECK(
        cudaMemcpyAsync(kv_.get() + dst * bytes, kv_.get() + src * bytes, bytes, cudaMemcpyDeviceToDevice, stream_));
}

void CudaRunner::rerotate(int64_t slot, const float* cos_sin) {
    const size_t n = static_cast<size_t>(hp_.n_rot);
    if (!rot_slots_.empty() && !std::equal(rot_cs_.begin(), rot_cs_.end(), cos_sin)) flush();
    rot_cs_.assign(cos_sin, cos_sin + n);
    rot_slots_.push_back(static_cast<int32_t>(slot));
}

void CudaRunner::flush() {
    if (rot_slots_.empty()) return;
    rot_slots_dev_.resize(rot_slots_.size());
    rot_cs_dev_.resize(rot_cs_.size());
    APLS_CUDA_CHECK(cudaMemcpyAsync(rot_slots_dev_.get(), rot_slots_.data(), rot_slots_.size() * 4,
                                    cudaMemcpyHostToDevice, stream_));
    APLS_CUDA_CHECK(
        cudaMemcpyAsync(rot_cs_dev_.get(), rot_cs_.data(), rot_cs_.size() * 4, cudaMemcpyHostToDevice, stream_));
    kv_rerotate(kv_.get(), kv_f16_, slot_stride_, hp_.n_layer, hp_.kv_dim(), rot_slots_dev_.get(),
                static_cast<int>(rot_slots_.size()), rot_cs_dev_.get(), hp_.n_head_kv, hp_.head_dim, hp_.n_rot,
                stream_);
    APLS_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the host vectors are reused
    rot_slots_.clear();
}

// ---- inputs -----------------------------------------------------------------------------------

size_t CudaRunner::write_inputs(const Batch& batch, const Visibility& vis, const int64_t* slots) {
    const KVCache& kv = ctx_.kv();
    const KVView* view = vis.view;
    const int n = batch.size();
    // Sequences of the batch in order of appearance, each with its entries listed once.
    std::map<int32_t, int32_t> seq_off;
    size_t entries = 0;
    for (int i = 0; i < n; ++i)
        if (seq_off.emplace(batch.seq[i], 0).second) entries += kv.seq_len(batch.seq[i]);
    if (entries > entry_cap_) layout(std::max(entries, entry_cap_ * 2));

    APLS_CUDA_CHECK(cudaEventSynchronize(inputs_copied_));  // the previous upload has left the buffer
    int32_t* in = in_host_.p;
    uint8_t* mask = mask_host_.p;
    size_t e = 0;
    for (auto& [seq, off] : seq_off) {
        off = static_cast<int32_t>(e);
        const int32_t len = kv.seq_len(seq);
        for (int32_t j = 0; j < len; ++j, ++e) {
            in[seg_.entry_slot + e] = static_cast<int32_t>(kv.slot_of(seq, j));
            in[seg_.entry_pos + e] = kv.entry_pos(seq, j);
        }
        if (view && view->explicit_list()) {
            // Old entries the explicit view keeps (positions strictly increasing: a merge).
            const std::vector<int32_t>& keep = view->positions;
            for (int32_t j = 0; j < len; ++j) {
                const int32_t p = kv.entry_pos(seq, j);
                mask[off + j] = std::binary_search(keep.begin(), keep.end(), p) ? 1 : 0;
            }
        }
    }
    int m = 0;
    for (int i = 0; i < n; ++i) {
        const int32_t seq = batch.seq[i];
        in[seg_.tokens + i] = batch.token[i];
        in[seg_.pos + i] = batch.pos[i];
        in[seg_.slots + i] = static_cast<int32_t>(slots[i]);
        if (batch.out[i]) in[seg_.out_rows + m++] = i;
        in[seg_.off + i] = seq_off[seq];
        in[seg_.n_end + i] = kv.seq_sorted(seq) ? kv.lower_entry(seq, batch.pos[i] + 1) : kv.seq_len(seq);
        in[seg_.n_old + i] = vis.n_old[seq];
        if (tree_) std::memcpy(in + seg_.anc + 2 * i, &vis.anc[i], sizeof(uint64_t));
    }
    one_list_entries_ = seq_off.size() == 1 ? static_cast<int>(e) : 0;
    n_sink_ = view ? view->n_sink : 0;
    n_window_ = view ? view->n_window : -1;
    // One upload for the per-token arrays (contiguous from offset 0) and one for the entries.
    APLS_CUDA_CHECK(cudaMemcpyAsync(in_dev_.get(), in, seg_.entry_slot * 4, cudaMemcpyHostToDevice, stream_));
    APLS_CUDA_CHECK(
        cudaMemcpyAsync(in_dev_.get() + seg_.entry_slot, in + seg_.entry_slot, e * 4, cudaMemcpyHostToDevice, stream_));
    APLS_CUDA_CHECK(
        cudaMemcpyAsync(in_dev_.get() + seg_.entry_pos, in + seg_.entry_pos, e * 4, cudaMemcpyHostToDevice, stream_));
    if (view && view->explicit_list())
        APLS_CUDA_CHECK(cudaMemcpyAsync(mask_dev_.get(), mask, e, cudaMemcpyHostToDevice, stream_));
    APLS_CUDA_CHECK(cudaEventRecord(inputs_copied_, stream_));
    return static_cast<size_t>(m);
}

// ---- forward ----------------------------------------------------------------------------------

QActs CudaRunner::acts_for(int n, std::initializer_list<const DeviceWeight*> ws, const QActs& q) const {
    if (n > kMaxMatvecTokens) return QActs{};
    for (const DeviceWeight* w : ws)
        if (is_quantized(w->type)) return q;
    return QActs{};
}

void CudaRunner::quantize_for(const float* x, int n, int64_t k, std::initializer_list<const DeviceWeight*> ws,
                              const QActs& q) {
    if (n > kMaxMatvecTokens) return;  // cuBLAS path: F16 activations
    for (const DeviceWeight* w : ws)
        if (is_quantized(w->type)) return quantize_q8(x, n, k, q, stream_);
}

void CudaRunner::run_jobs(const std::vector<MatvecJob>& jobs, int n) {
    if (jobs.empty()) return;
    const MatvecJob& first = jobs.front();
    bool same = n <= kMaxMatvecTokens;
    for (const MatvecJob& j : jobs) same = same && j.w->type == first.w->type && j.w->k == first.w->k;
    if (same) return matvec_multi(jobs.data(), static_cast<int>(jobs.size()), n, stream_);
    for (size_t i = 0; i < jobs.size(); ++i) {
        const MatvecJob& j = jobs[i];
        if (n <= kMaxMatvecTokens) {
            matvec(*j.w, j.rows, j.x, j.xq, n, j.y, j.ldy, j.accumulate, stream_);
            continue;
        }
        if (!gemm_) gemm_ = std::make_unique<Gemm>(stream_);
        const bool same_x = i > 0 && j.x == jobs[i - 1].x && j.w->k == jobs[i - 1].w->k;
        gemm_->run(*j.w, j.rows, j.x, n, j.y, j.ldy, j.accumulate, same_x);
    }
}

CudaRunner::Lane CudaRunner::main_lane() const {
    return Lane{x_.get(), h_.get(), q_.get(), k_.get(), v_.get(), att_.get(), gate_.get(), up_.get(), xq_};
}

CudaRunner::Lane CudaRunner::LaneBuffers::lane() const {
    return Lane{x.get(),    h.get(),  q.get(),
                k.get(),    v.get(),  att.get(),
                gate.get(), up.get(), QActs{xq_qs.get(), xq_d.get(), xq_s.get()}};
}

void CudaRunner::ensure_lanes(int count) {
    const size_t t = kMaxMatvecTokens;
    const size_t d = hp_.n_embd, f = hp_.n_ff, qd = hp_.q_dim(), kvd = hp_.kv_dim(), wide = std::max({d, f, qd});
    while (static_cast<int>(lanes_.size()) < count) {
        auto b = std::make_unique<LaneBuffers>();
        b->x.resize(t * d);
        b->h.resize(t * std::max(d, qd));
        b->q.resize(t * qd);
        b->k.resize(t * kvd);
        b->v.resize(t * kvd);
        b->att.resize(t * qd);
        b->gate.resize(t * f);
        b->up.resize(t * f);
        b->xq_qs.resize(t * wide);
        b->xq_d.resize(t * wide / 32 + 1);
        b->xq_s.resize(t * wide / 32 + 1);
        lanes_.push_back(std::move(b));
    }
}

void CudaRunner::attention_core(int l, int n, bool has_view, bool has_mask, const Lane& b) {
    const int qd = hp_.q_dim(), kvd = hp_.kv_dim();
    int32_t* in = in_dev_.get();
    RopeStoreArgs r{b.q,
                    b.k,
                    b.v,
                    in + seg_.pos,
                    in + seg_.slots,
                    n,
                    hp_.n_head,
                    hp_.n_head_kv,
                    hp_.head_dim,
                    hp_.n_rot,
                    hp_.rope_freq_base,
                    hp_.rope_freq_scale,
                    inv_freq_.get(),
                    kv_.get(),
                    slot_stride_,
                    static_cast<int64_t>(l) * 2 * kvd,
                    static_cast<int64_t>(l) * 2 * kvd + kvd,
                    kv_f16_};
    rope_store(r, stream_);
    AttentionArgs a{};
    a.q = b.q;
    a.out = b.att;
    a.kv = kv_.get();
    a.slot_stride = slot_stride_;
    a.k_offset = r.k_offset;
    a.v_offset = r.v_offset;
    a.kv_f16 = kv_f16_;
    a.entry_slot = in + seg_.entry_slot;
    a.entry_pos = in + seg_.entry_pos;
    a.view_mask = has_mask ? mask_dev_.get() : nullptr;
    a.off = in + seg_.off;
    a.n_end = in + seg_.n_end;
    a.n_old = has_view || tree_ ? in + seg_.n_old : nullptr;
    a.anc = tree_ ? reinterpret_cast<const uint64_t*>(in + seg_.anc) : nullptr;
    a.pos = in + seg_.pos;
    a.view.n_sink = n_sink_;
    a.view.n_window = n_window_;
    a.view.on = has_view;
    a.view.explicit_list = has_mask;
    a.n_tok = n;
    a.n_head = hp_.n_head;
    a.n_head_kv = hp_.n_head_kv;
    a.head_dim = hp_.head_dim;
    a.max_splits = max_splits_;
    a.part_acc = part_acc_.get();
    a.part_ml = part_ml_.get();
    // A prompt of one sequence: GEMMs (prompt_attention.h); decode, draft and verify batches,
    // and batches over several sequences: the flash-decoding kernel, which also writes the Q8
    // activations for quantized Wo (no quantize launch) when heads are whole Q8 blocks.
    const bool prompt = n > kMaxMatvecTokens && one_list_entries_ > 0 && prompt_attention_enabled();
    if (prompt && !prompt_attn_) prompt_attn_ = std::make_unique<PromptAttention>(stream_);
    if (prompt && prompt_attn_->run(a, one_list_entries_)) return;  // n > 16: Wo on cuBLAS, F16 activations
    if (hp_.head_dim % 32 == 0) a.out_q = acts_for(n, {&dm_.layers[l].wo}, b.xq);
    attention(a, stream_);
    if (!a.out_q.qs) quantize_for(b.att, n, qd, {&dm_.layers[l].wo}, b.xq);
}

template <typename Step>
void CudaRunner::stage(const Plan& plan, const int32_t* ls, const Lane* lanes, int count, int n, bool attn, Step step) {
    std::vector<MatvecJob> jobs;
    for (int j = 0; j < count; ++j)
        if (attn ? plan.runs_attn(ls[j]) : plan.runs_mlp(ls[j])) step(ls[j], dm_.layers[ls[j]], lanes[j], jobs);
    run_jobs(jobs, n);
}

void CudaRunner::run_layers(const Plan& plan, const int32_t* ls, const Lane* lanes, int count, int n, bool has_view,
                            bool has_mask) {
    const int d = hp_.n_embd, f = hp_.n_ff, qd = hp_.q_dim(), kvd = hp_.kv_dim();
    using Jobs = std::vector<MatvecJob>;
    // Attention: h = norm(x); q, k, v; RoPE, cache, attention; x += Wo · attention.
    stage(plan, ls, lanes, count, n, true, [&](int32_t, const DeviceLayer& L, const Lane& b, Jobs& jobs) {
        rms_norm(b.x, nullptr, L.attn_norm, b.h, n, d, hp_.rms_eps, stream_, acts_for(n, {&L.wq, &L.wk, &L.wv}, b.xq));
        jobs.push_back({&L.wq, qd, b.h, b.xq, b.q, qd, false});
        jobs.push_back({&L.wk, kvd, b.h, b.xq, b.k, kvd, false});
        jobs.push_back({&L.wv, kvd, b.h, b.xq, b.v, kvd, false});
    });
    stage(plan, ls, lanes, count, n, true, [&](int32_t l, const DeviceLayer& L, const Lane& b, Jobs& jobs) {
        attention_core(l, n, has_view, has_mask, b);
        jobs.push_back({&L.wo, d, b.att, b.xq, b.x, d, true});
    });
    // MLP: h = norm(x); gate, up; g = silu(gate) * up; x += Wdown · g.
    stage(plan, ls, lanes, count, n, false, [&](int32_t, const DeviceLayer& L, const Lane& b, Jobs& jobs) {
        rms_norm(b.x, nullptr, L.ffn_norm, b.h, n, d, hp_.rms_eps, stream_, acts_for(n, {&L.w_gate, &L.w_up}, b.xq));
        jobs.push_back({&L.w_gate, f, b.h, b.xq, b.gate, f, false});
        jobs.push_back({&L.w_up, f, b.h, b.xq, b.up, f, false});
    });
    stage(plan, ls, lanes, count, n, false, [&](int32_t, const DeviceLayer& L, const Lane& b, Jobs& jobs) {
        silu_mul(b.gate, b.up, static_cast<int64_t>(n) * f, stream_, acts_for(n, {&L.w_down}, b.xq));
        jobs.push_back({&L.w_down, d, b.gate, b.xq, b.x, d, true});
    });
}

// Every layer of [first, end) reads x0 = x; x = x0 + sum_j (layer_j(x0) - x0), members in order.
void CudaRunner::parallel_group(const Plan& plan, int32_t first, int32_t end, int n, bool has_view, bool has_mask) {
    const int64_t xd = static_cast<int64_t>(n) * hp_.n_embd;
    copy(x0_.get(), x_.get(), xd, stream_);
    if (n <= kMaxMatvecTokens && fused_groups_enabled()) {  // side by side (lanes sized at forward())
        std::vector<int32_t> ls;
        std::vector<Lane> lanes;
        for (int32_t l = first; l < end; ++l) {
            ls.push_back(l);
            lanes.push_back(lanes_[l - first]->lane());
            copy(lanes.back().x, x0_.get(), xd, stream_);
        }
        run_layers(plan, ls.data(), lanes.data(), end - first, n, has_view, has_mask);
        for (size_t j = 0; j < lanes.size(); ++j) group_delta(acc_.get(), lanes[j].x, x0_.get(), xd, j == 0, stream_);
    } else {  // one after the other on the main buffers
        const Lane main = main_lane();
        for (int32_t l = first; l < end; ++l) {
            if (l > first) copy(x_.get(), x0_.get(), xd, stream_);
            run_layers(plan, &l, &main, 1, n, has_view, has_mask);
            group_delta(acc_.get(), x_.get(), x0_.get(), xd, l == first, stream_);
        }
    }
    group_finish(x_.get(), x0_.get(), acc_.get(), xd, stream_);
}

void CudaRunner::launch_forward(const Plan& plan, int n, int m, bool has_view, bool has_mask) {
    embed(dm_.tok_embd, in_dev_.get() + seg_.tokens, n, x_.get(), stream_);
    const Lane main = main_lane();
    for (int32_t l = 0; l < hp_.n_layer;) {
        int32_t end = l + 1;
        const int32_t g = plan.group_of(l);
        while (g >= 0 && end < hp_.n_layer && plan.group_of(end) == g) ++end;
        if (end - l > 1) parallel_group(plan, l, end, n, has_view, has_mask);
        else run_layers(plan, &l, &main, 1, n, has_view, has_mask);
        l = end;
    }
    if (m == 0) return;
    const int rows = plan.head_rows > 0 && plan.head_rows < hp_.n_vocab ? plan.head_rows : hp_.n_vocab;
    rms_norm(x_.get(), in_dev_.get() + seg_.out_rows, dm_.output_norm, h_.get(), m, hp_.n_embd, hp_.rms_eps, stream_,
             acts_for(m, {&dm_.output}, xq_));
    run_jobs({{&dm_.output, rows, h_.get(), xq_, logits_.get(), hp_.n_vocab, false}}, m);
    argmax_rows(logits_.get(), m, hp_.n_vocab, rows, ids_.get(), probs_.get(), stream_);
}

std::string CudaRunner::graph_key(const Plan& plan, int n, int m, bool has_view, bool has_mask) const {
    std::string key = str(n, "/", m, "/", plan.head_rows, "/", has_view, has_mask, tree_, "/");
    key.append(plan.attn.begin(), plan.attn.end());
    key += '|';
    key.append(plan.mlp.begin(), plan.mlp.end());
    key += '|';
    for (int32_t g : plan.group) key += std::to_string(g) + ",";
    return key;
}

void CudaRunner::forward(const Batch& batch, const Plan& plan, const Visibility& vis, const int64_t* slots,
                         int32_t chain_step) {
    const KVView* view = vis.view;
    APLS_CUDA_CHECK(cudaSetDevice(dm_.device));
    const int n = batch.size();
    if (chain_step >= 0 && (n != 1 || chain_step >= static_cast<int32_t>(chain_ids_.size())))
        fail(APLS_STATUS_INVALID_ARGUMENT, "draft chain step ", chain_step, " of ", n,
             " tokens: a chain step is one token, at most n_batch steps");
    flush();
    tree_ = batch.tree();
    const int m = static_cast<int>(write_inputs(batch, vis, slots));
    if (chain_step > 0)  // the token: the previous step's choice, on the device
        APLS_CUDA_CHECK(cudaMemcpyAsync(in_dev_.get() + seg_.tokens, chain_ids_.get() + chain_step - 1, sizeof(int32_t),
                                        cudaMemcpyDeviceToDevice, stream_));
    const bool has_view = view != nullptr, has_mask = view && view->explicit_list();
    m_ = m;
    head_rows_ = plan.head_rows > 0 && plan.head_rows < hp_.n_vocab ? plan.head_rows : hp_.n_vocab;
    results_fetched_ = false;
    if (n <= kMaxMatvecTokens && fused_groups_enabled()) {  // lanes for the plan's largest group
        int most = 0;
        for (int32_t l = 0, run = 0; l < hp_.n_layer; ++l) {
            run = plan.group_of(l) >= 0 && l > 0 && plan.group_of(l) == plan.group_of(l - 1) ? run + 1 : 1;
            most = std::max(most, run);
        }
        if (most > 1) ensure_lanes(most);
    }
    launch(plan, n, m, has_view, has_mask);
    if (chain_step >= 0) {  // this step's choice and probability into the chain
        APLS_CUDA_CHECK(cudaMemcpyAsync(chain_ids_.get() + chain_step, ids_.get(), sizeof(int32_t),
                                        cudaMemcpyDeviceToDevice, stream_));
        APLS_CUDA_CHECK(cudaMemcpyAsync(chain_probs_.get() + chain_step, probs_.get(), sizeof(float),
                                        cudaMemcpyDeviceToDevice, stream_));
    }
}

void CudaRunner::launch(const Plan& plan, int n, int m, bool has_view, bool has_mask) {
    if (n > kMaxMatvecTokens || !graphs_enabled()) return launch_forward(plan, n, m, has_view, has_mask);
    // View parameters are kernel arguments: they are part of the key through has_view only
    // when they match the captured ones, so graphs with a view are keyed by them too.
    std::string key = graph_key(plan, n, m, has_view, has_mask);
    if (has_view) key += str("/v", n_sink_, ",", n_window_);
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
        if (graphs_.size() >= kMaxGraphs) clear_graphs();
        cudaGraph_t g = nullptr;
        APLS_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
        try {
            launch_forward(plan, n, m, has_view, has_mask);
        } catch (...) {
            cudaStreamEndCapture(stream_, &g);
            if (g) cudaGraphDestroy(g);
            throw;
        }
        APLS_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
        Graph entry;
        const cudaError_t e = cudaGraphInstantiate(&entry.exec, g, 0);
        cudaGraphDestroy(g);
        APLS_CUDA_CHECK(e);
        it = graphs_.emplace(key, entry).first;
    }
    APLS_CUDA_CHECK(cudaGraphLaunch(it->second.exec, stream_));
}

void CudaRunner::chain_results(int32_t n, int32_t* ids, float* probs) {
    if (n < 0 || n > static_cast<int32_t>(chain_ids_.size()))
        fail(APLS_STATUS_INVALID_ARGUMENT, "draft chain of ", n, " steps (at most ", chain_ids_.size(), ")");
    APLS_CUDA_CHECK(cudaMemcpyAsync(ids, chain_ids_.get(), n * sizeof(int32_t), cudaMemcpyDeviceToHost, stream_));
    APLS_CUDA_CHECK(cudaMemcpyAsync(probs, chain_probs_.get(), n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    APLS_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaRunner::wait_results() {
    if (results_fetched_) return;
    APLS_CUDA_CHECK(cudaMemcpyAsync(ids_host_.p, ids_.get(), m_ * sizeof(int32_t), cudaMemcpyDeviceToHost, stream_));
    APLS_CUDA_CHECK(cudaMemcpyAsync(probs_host_.p, probs_.get(), m_ * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    APLS_CUDA_CHECK(cudaStreamSynchronize(stream_));
    results_fetched_ = true;
}

const int32_t* CudaRunner::argmax() {
    wait_results();
    return ids_host_.p;
}

const float* CudaRunner::top_prob() {
    wait_results();
    return probs_host_.p;
}

void CudaRunner::fetch_logits(float* dst, int32_t n_rows) {
    const size_t bytes = static_cast<size_t>(n_rows) * hp_.n_vocab * sizeof(float);
    APLS_CUDA_CHECK(cudaMemcpyAsync(dst, logits_.get(), bytes, cudaMemcpyDeviceToHost, stream_));
    APLS_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

}  // namespace

std::unique_ptr<DeviceRunner> make_runner(Context& ctx) {
    if (!ctx.model().device_model()) fail(APLS_STATUS_INTERNAL, "CUDA context for a model not uploaded to the GPU");
    return std::make_unique<CudaRunner>(ctx);
}

}  // namespace apls::cuda
