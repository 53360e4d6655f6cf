// cuda/forward_ops.cpp — the CUDA backend's steps of the forward pass; see forward_ops.h.
#include "cuda/forward_ops.h"

#include <algorithm>
#include <cstdlib>

#include "common.h"

namespace apls::cuda {

bool fused_groups_enabled() {
    static const bool on = [] {
        const char* e = std::getenv("APLS_CUDA_FUSED_GROUPS");
        return !(e && e[0] == '0');
    }();
    return on;
}

struct CudaForward::LaneBuffers {
    DeviceBuffer<float> x, h, q, k, v, att, gate, up, xq_d, xq_s;
    DeviceBuffer<int8_t> xq_qs;
    Lane lane() const {
        return Lane{x.get(),    h.get(),  q.get(),
                    k.get(),    v.get(),  att.get(),
                    gate.get(), up.get(), QActs{xq_qs.get(), xq_d.get(), xq_s.get()}};
    }
};

CudaForward::CudaForward(const CudaModel& dm, const HParams& hp, size_t rows, uint32_t capacity, DeviceKVStore& kv,
                         const StepInputs& in, cudaStream_t stream)
    : dm_(dm), hp_(hp), kv_(kv), in_(in), stream_(stream) {
    const size_t t = rows;
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
    max_splits_ = static_cast<int>((capacity + kAttnSplit - 1) / kAttnSplit);
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
}

CudaForward::~CudaForward() = default;

void CudaForward::ensure_lanes(int count) {
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

CudaForward::Lane CudaForward::lane(const Member& m) const {
    if (m.lane >= 0) return lanes_[m.lane]->lane();
    return Lane{x_.get(), h_.get(), q_.get(), k_.get(), v_.get(), att_.get(), gate_.get(), up_.get(), xq_};
}

// ---- products --------------------------------------------------------------------------------

QActs CudaForward::acts_for(int n, std::initializer_list<const DeviceWeight*> ws, const QActs& q) const {
    if (n > kMaxMatvecTokens) return QActs{};
    for (const DeviceWeight* w : ws)
        if (is_quantized(w->type)) return q;
    return QActs{};
}

void CudaForward::quantize_for(const float* x, int n, int64_t k, std::initializer_list<const DeviceWeight*> ws,
                               const QActs& q) {
    if (n > kMaxMatvecTokens) return;  // cuBLAS path: F16 activations
    for (const DeviceWeight* w : ws)
        if (is_quantized(w->type)) return quantize_q8(x, n, k, q, stream_);
}

void CudaForward::run_jobs(const std::vector<MatvecJob>& jobs, int n) {
    if (jobs.empty()) return;
    const MatvecJob& first = jobs.front();
    bool same = n <= kMaxMatvecTokens;
    for (const MatvecJob& j : jobs) same = same && j.w->type == first.w->type && j.w->k == first.w->k;
    if (same) return matvec_multi(jobs.data(), static_cast<int>(jobs.size()), n, stream_);
    for (size_t i = 0; i < jobs.size(); ++i) {
        const MatvecJob& j = jobs[i];
        if (n <= kMaxMatvecTokens) {
            matvec_multi(&j, 1, n, stream_);
            continue;
        }
        if (!gemm_) gemm_ = std::make_unique<Gemm>(stream_);
        const bool same_x = i > 0 && j.x == jobs[i - 1].x && j.w->k == jobs[i - 1].w->k;
        gemm_->run(*j.w, j.rows, j.x, n, j.y, j.ldy, j.accumulate, same_x);
    }
}

// ---- the walk's frame --------------------------------------------------------------------------

void CudaForward::embed() { cuda::embed(dm_.tok_embd, in_.tokens(), n_, x_.get(), stream_); }

void CudaForward::output(int32_t head_rows) {
    if (m_ == 0) return;
    const int rows = head_rows > 0 && head_rows < hp_.n_vocab ? head_rows : hp_.n_vocab;
    rms_norm(x_.get(), in_.out_rows(), dm_.output_norm, h_.get(), m_, hp_.n_embd, hp_.rms_eps, stream_,
             acts_for(m_, {&dm_.output}, xq_), decode_sized());
    run_jobs({{&dm_.output, rows, h_.get(), xq_, logits_.get(), hp_.n_vocab, false}}, m_);
    argmax_rows(logits_.get(), m_, hp_.n_vocab, rows, ids_.get(), probs_.get(), stream_);
}

bool CudaForward::side_by_side(int32_t n_layers) {
    return n_ <= kMaxMatvecTokens && fused_groups_enabled() && static_cast<int32_t>(lanes_.size()) >= n_layers;
}

// Every layer of a group reads x0 = x; x = x0 + sum_j (layer_j(x0) - x0), members in order.
void CudaForward::group_begin(int32_t n_layers, bool lanes) {
    const int64_t xd = static_cast<int64_t>(n_) * hp_.n_embd;
    copy(x0_.get(), x_.get(), xd, stream_);
    group_first_ = true;
    group_lanes_ = lanes;
    if (lanes)
        for (int32_t j = 0; j < n_layers; ++j) copy(lanes_[j]->x.get(), x0_.get(), xd, stream_);
}

void CudaForward::group_restore() { copy(x_.get(), x0_.get(), static_cast<int64_t>(n_) * hp_.n_embd, stream_); }

void CudaForward::group_add(int32_t lane) {
    const float* x = lane >= 0 ? lanes_[lane]->x.get() : x_.get();
    group_delta(acc_.get(), x, x0_.get(), static_cast<int64_t>(n_) * hp_.n_embd, group_first_, stream_);
    group_first_ = false;
}

void CudaForward::group_end() {
    group_finish(x_.get(), x0_.get(), acc_.get(), static_cast<int64_t>(n_) * hp_.n_embd, stream_);
}

// ---- the sub-blocks' steps ----------------------------------------------------------------------

void CudaForward::attn_norm(Members ms) {
    for (const Member& m : ms) {
        const DeviceLayer& L = dm_.layers[m.layer];
        const Lane b = lane(m);
        rms_norm(b.x, nullptr, L.attn_norm, b.h, n_, hp_.n_embd, hp_.rms_eps, stream_,
                 acts_for(n_, {&L.wq, &L.wk, &L.wv}, b.xq), decode_sized());
    }
}

// For one token (decode, draft) the q/k/v biases (qwen2) are added by the products themselves:
// the same two roundings as the bias kernel after them, one launch fewer a layer. Batches keep
// the kernel (reading the bias in the batch products cost SmolLM2's 16-token product 16%, H100).
bool CudaForward::biases_in_products() const { return n_ == 1; }

void CudaForward::qkv(Members ms) {
    const int qd = hp_.q_dim(), kvd = hp_.kv_dim();
    const bool bias = biases_in_products();
    std::vector<MatvecJob> jobs;
    for (const Member& m : ms) {
        const DeviceLayer& L = dm_.layers[m.layer];
        const Lane b = lane(m);
        jobs.push_back({&L.wq, qd, b.h, b.xq, b.q, qd, false, bias ? L.bq : nullptr});
        jobs.push_back({&L.wk, kvd, b.h, b.xq, b.k, kvd, false, bias ? L.bk : nullptr});
        jobs.push_back({&L.wv, kvd, b.h, b.xq, b.v, kvd, false, bias ? L.bv : nullptr});
    }
    run_jobs(jobs, n_);
}

void CudaForward::qkv_bias(Members ms) {
    if (biases_in_products()) return;
    for (const Member& m : ms) {
        const DeviceLayer& L = dm_.layers[m.layer];
        if (!L.bq) continue;
        const Lane b = lane(m);
        cuda::qkv_bias(b.q, b.k, b.v, L.bq, L.bk, L.bv, n_, hp_.q_dim(), hp_.kv_dim(), stream_);
    }
}

// Each head of q and k is a row of head_dim: RMSNorm in place, as rms_norm does rows of d.
void CudaForward::qk_norm(Members ms) {
    for (const Member& m : ms) {
        const DeviceLayer& L = dm_.layers[m.layer];
        const Lane b = lane(m);
        rms_norm(b.q, nullptr, L.q_norm, b.q, n_ * hp_.n_head, hp_.head_dim, hp_.rms_eps, stream_, QActs{},
                 decode_sized());
        rms_norm(b.k, nullptr, L.k_norm, b.k, n_ * hp_.n_head_kv, hp_.head_dim, hp_.rms_eps, stream_, QActs{},
                 decode_sized());
    }
}

void CudaForward::rope_store(Members ms) {
    for (const Member& m : ms) {
        const Lane b = lane(m);
        RopeStoreArgs r{b.q,
                        b.k,
                        b.v,
                        in_.pos(),
                        in_.slots(),
                        n_,
                        hp_.n_head,
                        hp_.n_head_kv,
                        hp_.head_dim,
                        hp_.n_rot,
                        hp_.rope_freq_base,
                        hp_.rope_freq_scale,
                        inv_freq_.get(),
                        kv_.data(),
                        kv_.slot_stride(),
                        kv_.k_offset(m.layer),
                        kv_.v_offset(m.layer),
                        kv_.f16(),
                        hp_.rope_style};
        cuda::rope_store(r, stream_);
    }
}

void CudaForward::attend(Members ms) {
    const int d = hp_.n_embd;
    std::vector<MatvecJob> jobs;
    for (const Member& m : ms) {
        const DeviceLayer& L = dm_.layers[m.layer];
        const Lane b = lane(m);
        attention_core(m.layer, b);
        jobs.push_back({&L.wo, d, b.att, b.xq, b.x, d, true});
    }
    run_jobs(jobs, n_);
    for (const Member& m : ms)
        if (dm_.layers[m.layer].bo) add_bias(lane(m).x, dm_.layers[m.layer].bo, n_, d, stream_);
}

void CudaForward::attention_core(int32_t l, const Lane& b) {
    AttentionArgs a{};
    a.q = b.q;
    a.out = b.att;
    a.kv = kv_.data();
    a.slot_stride = kv_.slot_stride();
    a.k_offset = kv_.k_offset(l);
    a.v_offset = kv_.v_offset(l);
    a.kv_f16 = kv_.f16();
    a.entry_slot = in_.entry_slot();
    a.entry_pos = in_.entry_pos();
    a.view_mask = in_.explicit_view() ? in_.mask() : nullptr;
    a.off = in_.off();
    a.n_end = in_.n_end();
    a.n_old = in_.has_view() || in_.tree() ? in_.n_old() : nullptr;
    a.anc = in_.tree() ? in_.anc() : nullptr;
    a.pos = in_.pos();
    a.view = in_.view();
    a.n_tok = n_;
    a.n_head = hp_.n_head;
    a.n_head_kv = hp_.n_head_kv;
    a.head_dim = hp_.head_dim;
    a.max_splits = max_splits_;
    a.part_acc = part_acc_.get();
    a.part_ml = part_ml_.get();
    // A prompt of one sequence: GEMMs (prompt_attention.h); decode, draft and verify batches,
    // and batches over several sequences: the flash-decoding kernel, which also writes the Q8
    // activations for quantized Wo (no quantize launch) when heads are whole Q8 blocks.
    const bool prompt = n_ > kMaxMatvecTokens && in_.one_list_entries() > 0 && prompt_attention_enabled();
    if (prompt && !prompt_attn_) prompt_attn_ = std::make_unique<PromptAttention>(stream_);
    if (prompt && prompt_attn_->run(a, in_.one_list_entries())) return;  // n > 16: Wo on cuBLAS, F16 activations
    const DeviceWeight& wo = dm_.layers[l].wo;
    if (hp_.head_dim % 32 == 0) a.out_q = acts_for(n_, {&wo}, b.xq);
    attention(a, stream_);
    if (!a.out_q.qs) quantize_for(b.att, n_, hp_.q_dim(), {&wo}, b.xq);
}

void CudaForward::mlp_swiglu(Members ms) {
    const int d = hp_.n_embd, f = hp_.n_ff;
    std::vector<MatvecJob> jobs;
    // h = norm(x); gate, up (one launch for every member).
    for (const Member& m : ms) {
        const DeviceLayer& L = dm_.layers[m.layer];
        const Lane b = lane(m);
        rms_norm(b.x, nullptr, L.ffn_norm, b.h, n_, d, hp_.rms_eps, stream_, acts_for(n_, {&L.w_gate, &L.w_up}, b.xq),
                 decode_sized());
        jobs.push_back({&L.w_gate, f, b.h, b.xq, b.gate, f, false});
        jobs.push_back({&L.w_up, f, b.h, b.xq, b.up, f, false});
    }
    run_jobs(jobs, n_);
    // g = silu(gate) * up; x += Wdown · g.
    jobs.clear();
    for (const Member& m : ms) {
        const DeviceLayer& L = dm_.layers[m.layer];
        const Lane b = lane(m);
        silu_mul(b.gate, b.up, static_cast<int64_t>(n_) * f, stream_, acts_for(n_, {&L.w_down}, b.xq));
        jobs.push_back({&L.w_down, d, b.gate, b.xq, b.x, d, true});
    }
    run_jobs(jobs, n_);
}

}  // namespace apls::cuda
