// cpu/forward_ops.cpp — the CPU backend's steps of the forward pass; see forward_ops.h.
#include "cpu/forward_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "common.h"
#include "cpu/attention.h"

namespace apls::cpu {

namespace {

constexpr int64_t kRowAlign = 16;  // matrix rows per thread come in multiples of this

bool is_quantized(TensorType t) { return type_traits(t).block > 1; }

void store_row(uint8_t* dst, const float* src, int64_t n, bool f16) {
    if (!f16) {
        std::memcpy(dst, src, static_cast<size_t>(n) * 4);
        return;
    }
    kernels().f32_to_f16_row(src, reinterpret_cast<uint16_t*>(dst), n);
}

}  // namespace

Scratch::Scratch(const HParams& hp, size_t t) {
    const size_t wide = std::max({hp.n_embd, hp.n_ff, hp.q_dim()});
    x.resize(t * hp.n_embd);
    h.resize(t * std::max(hp.n_embd, hp.q_dim()));
    q.resize(t * hp.q_dim());
    k.resize(t * hp.kv_dim());
    v.resize(t * hp.kv_dim());
    gate.resize(t * hp.n_ff);
    up.resize(t * hp.n_ff);
    y.resize(t * hp.n_embd);
    x0.resize(t * hp.n_embd);
    acc.resize(t * hp.n_embd);
    xq.resize(t * wide / QK + 1);
    rope.resize(t * hp.n_rot);
    out_rows.reserve(t);
    visible.resize(t);
}

CpuForward::CpuForward(const Model& model, Scratch& s, ThreadPool& pool, const KVCache& kv, HostKVStore& store,
                       const Batch& batch, const Visibility& vis, const int64_t* slots, std::vector<float>& logits)
    : model_(model),
      hp_(model.hparams()),
      kt_(kernels()),
      s_(s),
      pool_(pool),
      kv_(kv),
      store_(store),
      batch_(batch),
      vis_(vis),
      slots_(slots),
      logits_(logits),
      n_(batch.size()) {
    for (int32_t i = 0; i < n_; ++i)
        rope_table(batch.pos[i], hp_.n_rot, hp_.rope_freq_base, hp_.rope_freq_scale, s_.rope.data() + i * hp_.n_rot);
    // The same for every layer and KV head: found once for the batch (the block table and the
    // positions are set before the pass; the layers only write K/V rows).
    for (int32_t i = 0; i < n_; ++i) find_visible(kv_, batch_.seq[i], vis_, vis_.query(batch_, i), s_.visible[i]);
}

void CpuForward::matmul(const float* x, int32_t n_rows, int64_t k,
                        std::initializer_list<std::pair<const Weight*, float*>> outs, int64_t ldy) {
    bool quant = false;
    for (const auto& o : outs) quant |= is_quantized(o.first->type);
    if (quant) rows(n_rows, [&](int32_t i) { kt_.quantize_act(x + i * k, s_.xq.data() + i * (k / QK), k); });
    pool_.run([&](int ith, int nth) {
        for (const auto& [w, y] : outs) {
            int64_t r0, r1;
            split_range(w->rows, ith, nth, kRowAlign, &r0, &r1);
            if (r0 >= r1) continue;
            const int64_t ld = ldy ? ldy : w->rows;
            if (w->packed && kt_.matmul_q_packed) {
                kt_.matmul_q_packed(w->type, w->packed, k, s_.xq.data(), n_rows, y, ld, r0, r1);
            } else if (is_quantized(w->type)) {
                kt_.matmul_q(w->type, w->data, k, s_.xq.data(), n_rows, y, ld, r0, r1);
            } else {
                kt_.matmul_f(w->type, w->data, k, x, n_rows, y, ld, r0, r1);
            }
        }
    });
}

// ---- the walk's frame --------------------------------------------------------------------------

void CpuForward::embed() {
    const Weight& e = model_.tok_embd();
    rows(n_, [&](int32_t i) {
        dequantize_row(e.type, e.data + batch_.token[i] * e.row_bytes(), s_.x.data() + i * hp_.n_embd, hp_.n_embd);
    });
}

void CpuForward::output(int32_t head_rows) {
    const int64_t d = hp_.n_embd, n_vocab = hp_.n_vocab;
    std::vector<int32_t>& sel = s_.out_rows;  // batch rows that asked for logits, in order
    sel.clear();
    for (int32_t i = 0; i < n_; ++i)
        if (batch_.out[i]) sel.push_back(i);
    const int32_t m = static_cast<int32_t>(sel.size());
    const size_t need = static_cast<size_t>(m) * n_vocab;
    if (logits_.size() < need) logits_.resize(need);  // grows once to the largest output seen
    n_out_ = m;
    if (m == 0) return;
    rows(m, [&](int32_t j) {
        rms_norm(s_.x.data() + sel[j] * d, model_.output_norm().data(), s_.h.data() + j * d, d, hp_.rms_eps);
    });
    if (head_rows <= 0 || head_rows >= n_vocab) {
        matmul(s_.h.data(), m, d, {{&model_.output(), logits_.data()}});
        return;
    }
    Weight head = model_.output();  // the first head_rows rows: a prefix of the matrix
    head.rows = head_rows;
    matmul(s_.h.data(), m, d, {{&head, logits_.data()}}, n_vocab);
    for (int32_t j = 0; j < m; ++j)
        std::fill(logits_.begin() + j * n_vocab + head_rows, logits_.begin() + (j + 1) * n_vocab, -INFINITY);
}

void CpuForward::group_begin(int32_t, bool) {
    const size_t m = static_cast<size_t>(n_) * hp_.n_embd;
    std::copy(s_.x.begin(), s_.x.begin() + m, s_.x0.begin());
    std::fill(s_.acc.begin(), s_.acc.begin() + m, 0.0f);
}

void CpuForward::group_restore() {
    const size_t m = static_cast<size_t>(n_) * hp_.n_embd;
    std::copy(s_.x0.begin(), s_.x0.begin() + m, s_.x.begin());
}

void CpuForward::group_add(int32_t) {
    const size_t m = static_cast<size_t>(n_) * hp_.n_embd;
    for (size_t i = 0; i < m; ++i) s_.acc[i] += s_.x[i] - s_.x0[i];
}

void CpuForward::group_end() {
    const size_t m = static_cast<size_t>(n_) * hp_.n_embd;
    for (size_t i = 0; i < m; ++i) s_.x[i] = s_.x0[i] + s_.acc[i];
}

// ---- the sub-blocks' steps: one member at a time (no lanes) -----------------------------------

void CpuForward::attn_norm(Members ms) {
    const int64_t d = hp_.n_embd;
    for (const Member& m : ms) {
        const Layer& L = layer(m.layer);
        rows(n_, [&](int32_t i) {
            rms_norm(s_.x.data() + i * d, L.attn_norm.data(), s_.h.data() + i * d, d, hp_.rms_eps);
        });
    }
}

void CpuForward::qkv(Members ms) {
    for (const Member& m : ms) {
        const Layer& L = layer(m.layer);
        matmul(s_.h.data(), n_, hp_.n_embd, {{&L.wq, s_.q.data()}, {&L.wk, s_.k.data()}, {&L.wv, s_.v.data()}});
    }
}

void CpuForward::qkv_bias(Members ms) {
    const int64_t qd = hp_.q_dim(), kvd = hp_.kv_dim();
    for (const Member& m : ms) {
        const Layer& L = layer(m.layer);
        if (L.bq.empty()) continue;
        rows(n_, [&](int32_t i) {
            add(s_.q.data() + i * qd, L.bq.data(), qd);
            add(s_.k.data() + i * kvd, L.bk.data(), kvd);
            add(s_.v.data() + i * kvd, L.bv.data(), kvd);
        });
    }
}

void CpuForward::qk_norm(Members ms) {
    const int64_t qd = hp_.q_dim(), kvd = hp_.kv_dim(), hd = hp_.head_dim;
    for (const Member& m : ms) {
        const Layer& L = layer(m.layer);
        rows(n_, [&](int32_t i) {
            for (int32_t h = 0; h < hp_.n_head; ++h) {
                float* q = s_.q.data() + i * qd + h * hd;
                rms_norm(q, L.q_norm.data(), q, hd, hp_.rms_eps);
            }
            for (int32_t h = 0; h < hp_.n_head_kv; ++h) {
                float* k = s_.k.data() + i * kvd + h * hd;
                rms_norm(k, L.k_norm.data(), k, hd, hp_.rms_eps);
            }
        });
    }
}

void CpuForward::rope_store(Members ms) {
    const int64_t qd = hp_.q_dim(), kvd = hp_.kv_dim(), hd = hp_.head_dim;
    for (const Member& m : ms) {
        rows(n_, [&](int32_t i) {
            const float* cs = s_.rope.data() + i * hp_.n_rot;
            rope_apply(hp_.rope_style, s_.q.data() + i * qd, hp_.n_head, hd, hp_.n_rot, cs);
            rope_apply(hp_.rope_style, s_.k.data() + i * kvd, hp_.n_head_kv, hd, hp_.n_rot, cs);
            store_row(store_.k_row(m.layer, slots_[i]), s_.k.data() + i * kvd, kvd, store_.f16());
            store_row(store_.v_row(m.layer, slots_[i]), s_.v.data() + i * kvd, kvd, store_.f16());
        });
    }
}

void CpuForward::attend(Members ms) {
    for (const Member& m : ms) attend_layer(m.layer);
}

void CpuForward::attend_layer(int32_t l) {
    const Layer& L = layer(l);
    const int64_t d = hp_.n_embd, qd = hp_.q_dim();
    if (n_ > 1) {
        attend_batch(l);
    } else {
        attend_one(l);
    }

    matmul(s_.h.data(), n_, qd, {{&L.wo, s_.y.data()}});
    rows(n_, [&](int32_t i) {
        if (!L.bo.empty()) add(s_.y.data() + i * d, L.bo.data(), d);
        add(s_.x.data() + i * d, s_.y.data() + i * d, d);
    });
}

void CpuForward::attend_one(int32_t l) {
    const int64_t qd = hp_.q_dim(), hd = hp_.head_dim;
    const int32_t group = hp_.n_head / hp_.n_head_kv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    // One task per (token, KV head, part of its group): the query heads of a part share
    // each K/V load. Groups are split into parts only when there are fewer (token, KV
    // head) units than threads: every part reads the group's K/V again, and long-context
    // decode is bound by memory bandwidth (measured: 2 threads, 3 KV heads, 4096 entries:
    // whole groups beat halves). A head's result does not depend on its part
    // (attend_group), so the split, which depends on the batch size and thread count,
    // never changes a result.
    pool_.run([&](int ith, int nth) {
        const int64_t units = static_cast<int64_t>(n_) * hp_.n_head_kv;
        const int64_t parts = std::min<int64_t>(group, std::max<int64_t>(1, (nth + units - 1) / units));
        int64_t b, e;
        split_range(units * parts, ith, nth, 1, &b, &e);
        for (int64_t t = b; t < e; ++t) {
            const int64_t u = t / parts, part = t % parts;
            const int32_t i = static_cast<int32_t>(u / hp_.n_head_kv), g = static_cast<int32_t>(u % hp_.n_head_kv);
            int64_t r0, r1;
            split_range(group, static_cast<int>(part), static_cast<int>(parts), 1, &r0, &r1);
            if (r0 >= r1) continue;
            const int64_t h0 = static_cast<int64_t>(g) * group + r0;
            attend_group(kt_, store_, l, s_.visible[i], s_.q.data() + i * qd + h0 * hd, r1 - r0,
                         static_cast<int64_t>(g) * hd, hd, scale, s_.h.data() + i * qd + h0 * hd);
        }
    });
}

// Batches (verify, prompts): one task per (KV head, group of at most kAttnTokens consecutive
// tokens of one sequence), through attend_tokens, which reads each tile of the head's K/V once
// for the whole group. Enough groups that the units divide evenly among the threads (SmolLM2's
// 3 KV heads on 2 threads: 2 groups), and tasks dealt round-robin, so that a prompt's later
// tokens (which see more entries) are shared out. Results never depend on the grouping.
void CpuForward::attend_batch(int32_t l) {
    constexpr int32_t kAttnTokens = 16;
    const int64_t qd = hp_.q_dim(), hd = hp_.head_dim;
    const int32_t n_kv = hp_.n_head_kv, group = hp_.n_head / n_kv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    pool_.run([&](int ith, int nth) {
        const int32_t min_groups = std::min<int32_t>(n_, nth / std::gcd(n_kv, nth));
        const int32_t size = std::min<int32_t>(kAttnTokens, (n_ + min_groups - 1) / min_groups);
        const int32_t n_groups = (n_ + size - 1) / size;
        for (int64_t u = ith; u < static_cast<int64_t>(n_groups) * n_kv; u += nth) {
            const int32_t g = static_cast<int32_t>(u % n_kv), t0 = static_cast<int32_t>(u / n_kv) * size;
            const int32_t t1 = std::min(n_, t0 + size);
            for (int32_t a = t0, b; a < t1; a = b) {  // runs of tokens of one sequence
                for (b = a + 1; b < t1 && batch_.seq[b] == batch_.seq[a];) ++b;
                const int64_t h0 = static_cast<int64_t>(g) * group;
                attend_tokens(kt_, store_, l, s_.visible.data() + a, b - a, s_.q.data() + a * qd + h0 * hd, qd, group,
                              static_cast<int64_t>(g) * hd, hd, scale, s_.h.data() + a * qd + h0 * hd, qd);
            }
        }
    });
}

void CpuForward::mlp_swiglu(Members ms) {
    for (const Member& m : ms) mlp_layer(m.layer);
}

void CpuForward::mlp_layer(int32_t l) {
    const Layer& L = layer(l);
    const int64_t d = hp_.n_embd, f = hp_.n_ff;
    rows(n_, [&](int32_t i) { rms_norm(s_.x.data() + i * d, L.ffn_norm.data(), s_.h.data() + i * d, d, hp_.rms_eps); });
    matmul(s_.h.data(), n_, d, {{&L.w_gate, s_.gate.data()}, {&L.w_up, s_.up.data()}});
    rows(n_, [&](int32_t i) { silu_mul(s_.gate.data() + i * f, s_.up.data() + i * f, f); });
    matmul(s_.gate.data(), n_, f, {{&L.w_down, s_.y.data()}});
    rows(n_, [&](int32_t i) { add(s_.x.data() + i * d, s_.y.data() + i * d, d); });
}

}  // namespace apls::cpu
