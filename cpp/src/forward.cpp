// forward.cpp — the shared pieces of the CPU forward pass (see forward.h) and the dispatch by
// architecture.
#include "forward.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "common.h"
#include "cpu/attention.h"

namespace apls {

namespace {

constexpr int64_t kRowAlign = 16;  // matrix rows per thread come in multiples of this

bool is_quantized(TensorType t) { return type_traits(t).block > 1; }

void store_row(uint8_t* dst, const float* src, int64_t n, bool f16) {
    if (!f16) {
        std::memcpy(dst, src, static_cast<size_t>(n) * 4);
        return;
    }
    uint16_t* h = reinterpret_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) h[i] = f32_to_f16(src[i]);
}

}  // namespace

Forward::Forward(Context& c, const Batch& b, const Visibility& v)
    : ctx(c),
      hp(c.model().hparams()),
      kt(cpu::kernels()),
      s(c.scratch()),
      pool(c.pool()),
      batch(b),
      n(b.size()),
      vis(v) {
    for (int32_t i = 0; i < n; ++i)
        cpu::rope_table(batch.pos[i], hp.n_rot, hp.rope_freq_base, hp.rope_freq_scale, s.rope.data() + i * hp.n_rot);
}

void Forward::matmul(const float* x, int32_t n_rows, int64_t k,
                     std::initializer_list<std::pair<const Weight*, float*>> outs, int64_t ldy) {
    bool quant = false;
    for (const auto& o : outs) quant |= is_quantized(o.first->type);
    if (quant) rows(n_rows, [&](int32_t i) { kt.quantize_act(x + i * k, s.xq.data() + i * (k / QK), k); });
    pool.run([&](int ith, int nth) {
        for (const auto& [w, y] : outs) {
            int64_t r0, r1;
            cpu::split_range(w->rows, ith, nth, kRowAlign, &r0, &r1);
            if (r0 >= r1) continue;
            const int64_t ld = ldy ? ldy : w->rows;
            if (is_quantized(w->type)) {
                kt.matmul_q(w->type, w->data, k, s.xq.data(), n_rows, y, ld, r0, r1);
            } else {
                kt.matmul_f(w->type, w->data, k, x, n_rows, y, ld, r0, r1);
            }
        }
    });
}

void Forward::embed() {
    const Weight& e = ctx.model().tok_embd();
    rows(n, [&](int32_t i) {
        cpu::dequantize_row(e.type, e.data + batch.token[i] * e.row_bytes(), s.x.data() + i * hp.n_embd, hp.n_embd);
    });
}

void Forward::attn_norm(const Layer& L) {
    const int64_t d = hp.n_embd;
    rows(n,
         [&](int32_t i) { cpu::rms_norm(s.x.data() + i * d, L.attn_norm.data(), s.h.data() + i * d, d, hp.rms_eps); });
}

void Forward::qkv(const Layer& L) {
    matmul(s.h.data(), n, hp.n_embd, {{&L.wq, s.q.data()}, {&L.wk, s.k.data()}, {&L.wv, s.v.data()}});
}

void Forward::qkv_bias(const Layer& L) {
    const int64_t qd = hp.q_dim(), kvd = hp.kv_dim();
    rows(n, [&](int32_t i) {
        cpu::add(s.q.data() + i * qd, L.bq.data(), qd);
        cpu::add(s.k.data() + i * kvd, L.bk.data(), kvd);
        cpu::add(s.v.data() + i * kvd, L.bv.data(), kvd);
    });
}

void Forward::qk_norm(const Layer& L) {
    const int64_t qd = hp.q_dim(), kvd = hp.kv_dim(), hd = hp.head_dim;
    rows(n, [&](int32_t i) {
        for (int32_t h = 0; h < hp.n_head; ++h) {
            float* q = s.q.data() + i * qd + h * hd;
            cpu::rms_norm(q, L.q_norm.data(), q, hd, hp.rms_eps);
        }
        for (int32_t h = 0; h < hp.n_head_kv; ++h) {
            float* k = s.k.data() + i * kvd + h * hd;
            cpu::rms_norm(k, L.k_norm.data(), k, hd, hp.rms_eps);
        }
    });
}

void Forward::rope_store(int32_t l) {
    const int64_t qd = hp.q_dim(), kvd = hp.kv_dim(), hd = hp.head_dim;
    KVCache& kv = ctx.kv();
    rows(n, [&](int32_t i) {
        const float* cs = s.rope.data() + i * hp.n_rot;
        rope_apply(hp.rope_style, s.q.data() + i * qd, hp.n_head, hd, hp.n_rot, cs);
        rope_apply(hp.rope_style, s.k.data() + i * kvd, hp.n_head_kv, hd, hp.n_rot, cs);
        store_row(kv.k_row(l, s.slots[i]), s.k.data() + i * kvd, kvd, kv.f16());
        store_row(kv.v_row(l, s.slots[i]), s.v.data() + i * kvd, kvd, kv.f16());
    });
}

void Forward::attend(int32_t l) {
    const Layer& L = layer(l);
    const int64_t d = hp.n_embd, qd = hp.q_dim(), hd = hp.head_dim;
    KVCache& kv = ctx.kv();
    const int32_t group = hp.n_head / hp.n_head_kv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    // APLS_ATTN_LEGACY=1: the per-(token, head) path with one dot_kv/axpy_kv call per entry
    // (kept for benchmarks; results differ from the grouped path only by float rounding).
    static const bool legacy = [] {
        const char* e = std::getenv("APLS_ATTN_LEGACY");
        return e && e[0] == '1';
    }();
    if (legacy) {
        const int64_t n_tasks = static_cast<int64_t>(n) * hp.n_head;
        const size_t cap = kv.capacity();
        pool.run([&](int ith, int nth) {
            int64_t b, e;
            cpu::split_range(n_tasks, ith, nth, 1, &b, &e);
            for (int64_t t = b; t < e; ++t) {
                const int32_t i = static_cast<int32_t>(t / hp.n_head), h = static_cast<int32_t>(t % hp.n_head);
                cpu::attend(kt, kv, l, batch.seq[i], vis, vis.query(batch, i), s.q.data() + i * qd + h * hd,
                            (h / group) * hd, hd, scale, s.scores.data() + ith * cap, s.h.data() + i * qd + h * hd);
            }
        });
    } else {
        // One task per (token, KV head, part of its group): the query heads of a part share
        // each K/V load. Groups are split into parts only when there are fewer (token, KV
        // head) units than threads: every part reads the group's K/V again, and long-context
        // decode is bound by memory bandwidth (measured: 2 threads, 3 KV heads, 4096 entries:
        // whole groups beat halves). A head's result does not depend on its part
        // (attend_group), so the split, which depends on the batch size and thread count,
        // never changes a result.
        pool.run([&](int ith, int nth) {
            const int64_t units = static_cast<int64_t>(n) * hp.n_head_kv;
            const int64_t parts = std::min<int64_t>(group, std::max<int64_t>(1, (nth + units - 1) / units));
            int64_t b, e;
            cpu::split_range(units * parts, ith, nth, 1, &b, &e);
            for (int64_t t = b; t < e; ++t) {
                const int64_t u = t / parts, part = t % parts;
                const int32_t i = static_cast<int32_t>(u / hp.n_head_kv), g = static_cast<int32_t>(u % hp.n_head_kv);
                int64_t r0, r1;
                cpu::split_range(group, static_cast<int>(part), static_cast<int>(parts), 1, &r0, &r1);
                if (r0 >= r1) continue;
                const int64_t h0 = static_cast<int64_t>(g) * group + r0;
                cpu::attend_group(kt, kv, l, batch.seq[i], vis, vis.query(batch, i), s.q.data() + i * qd + h0 * hd,
                                  r1 - r0, static_cast<int64_t>(g) * hd, hd, scale, s.h.data() + i * qd + h0 * hd);
            }
        });
    }

    matmul(s.h.data(), n, qd, {{&L.wo, s.y.data()}});
    rows(n, [&](int32_t i) {
        if (!L.bo.empty()) cpu::add(s.y.data() + i * d, L.bo.data(), d);
        cpu::add(s.x.data() + i * d, s.y.data() + i * d, d);
    });
}

void Forward::mlp_swiglu(int32_t l) {
    const Layer& L = layer(l);
    const int64_t d = hp.n_embd, f = hp.n_ff;
    rows(n,
         [&](int32_t i) { cpu::rms_norm(s.x.data() + i * d, L.ffn_norm.data(), s.h.data() + i * d, d, hp.rms_eps); });
    matmul(s.h.data(), n, d, {{&L.w_gate, s.gate.data()}, {&L.w_up, s.up.data()}});
    rows(n, [&](int32_t i) { cpu::silu_mul(s.gate.data() + i * f, s.up.data() + i * f, f); });
    matmul(s.gate.data(), n, f, {{&L.w_down, s.y.data()}});
    rows(n, [&](int32_t i) { cpu::add(s.x.data() + i * d, s.y.data() + i * d, d); });
}

void Forward::output(int32_t head_rows) {
    const int64_t d = hp.n_embd;
    std::vector<int32_t>& sel = s.out_rows;  // batch rows that asked for logits, in order
    sel.clear();
    for (int32_t i = 0; i < n; ++i)
        if (batch.out[i]) sel.push_back(i);
    const int32_t m = static_cast<int32_t>(sel.size());
    std::vector<float>& logits = ctx.logits_buffer(m);
    if (m == 0) return;
    rows(m, [&](int32_t j) {
        cpu::rms_norm(s.x.data() + sel[j] * d, ctx.model().output_norm().data(), s.h.data() + j * d, d, hp.rms_eps);
    });
    const int64_t n_vocab = hp.n_vocab;
    if (head_rows <= 0 || head_rows >= n_vocab) {
        matmul(s.h.data(), m, d, {{&ctx.model().output(), logits.data()}});
        return;
    }
    Weight head = ctx.model().output();  // the first head_rows rows: a prefix of the matrix
    head.rows = head_rows;
    matmul(s.h.data(), m, d, {{&head, logits.data()}}, n_vocab);
    for (int32_t j = 0; j < m; ++j)
        std::fill(logits.begin() + j * n_vocab + head_rows, logits.begin() + (j + 1) * n_vocab, -INFINITY);
}

void forward_cpu(Context& ctx, const Batch& batch, const Plan& plan, const Visibility& vis) {
    switch (ctx.model().hparams().arch) {
        case Arch::LLAMA:
            return forward_llama(ctx, batch, plan, vis);
        case Arch::QWEN2:
            return forward_qwen2(ctx, batch, plan, vis);
        case Arch::QWEN3:
            return forward_qwen3(ctx, batch, plan, vis);
    }
    fail(APLS_STATUS_UNSUPPORTED, "no CPU forward pass for architecture '", arch_name(ctx.model().hparams().arch), "'");
}

}  // namespace apls
