// cpu/attention.cpp — two-pass softmax attention over index ranges of the block table; see attention.h.
#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "visibility.h"

namespace apls::cpu {

namespace {

// Entries [j0, j1) to visit; each is tested with entry_visible (visibility.h). listed: what the
// span knows of an explicit view's list for its entries.
enum Listed : uint8_t { kNotListed, kListed, kLookUp };
struct Span {
    int32_t j0, j1;
    Listed listed;
};

// First entry in [lo, hi) whose position is >= p (positions sorted there).
int32_t lower(const KVCache& kv, int32_t seq, int32_t lo, int32_t hi, int32_t p) {
    while (lo < hi) {
        const int32_t mid = lo + (hi - lo) / 2;
        if (kv.entry_pos(seq, mid) < p) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

void push(std::vector<Span>& spans, int32_t j0, int32_t j1, Listed listed) {
    if (j0 >= j1) return;
    if (!spans.empty() && spans.back().listed == listed && spans.back().j1 == j0) spans.back().j1 = j1;
    else spans.push_back({j0, j1, listed});
}

// The old entries [0, n_old), sorted, that a query at pos_q sees through `view`, as ranges in order.
void view_spans(const KVCache& kv, int32_t seq, int32_t n_old, int32_t pos_q, const KVView& view,
                std::vector<Span>& spans) {
    const int32_t jc = lower(kv, seq, 0, n_old, pos_q + 1);  // causal bound
    if (!view.explicit_list()) {
        const int32_t js = lower(kv, seq, 0, jc, view.n_sink);
        const int32_t jw = view.n_window < 0 ? 0 : lower(kv, seq, js, jc, pos_q - view.n_window + 1);
        push(spans, 0, js, kNotListed);
        push(spans, std::max(js, jw), jc, kNotListed);
        return;
    }
    int32_t hint = 0;  // listed positions are increasing, so each search starts after the last hit
    for (int32_t p : view.positions) {
        if (p > pos_q) break;
        int32_t j = hint < jc && kv.entry_pos(seq, hint) == p ? hint : lower(kv, seq, hint, jc, p);
        int32_t e = j;
        while (e < jc && kv.entry_pos(seq, e) == p) ++e;
        push(spans, j, e, kListed);
        hint = e;
    }
}

// Entries to visit, in entry order: the old ones (held before the call; ranges where they are
// sorted), then the call's own.
void visible_spans(const KVCache& kv, int32_t seq, const Visibility& vis, const QueryRule& qr,
                   std::vector<Span>& spans) {
    const int32_t n = kv.seq_len(seq), n_old = std::min(n, qr.n_old);
    const bool sorted_old = kv.sorted_prefix(seq) >= n_old;
    spans.clear();
    if (!sorted_old) push(spans, 0, n_old, vis.rule.explicit_list ? kLookUp : kNotListed);
    else if (vis.view) view_spans(kv, seq, n_old, qr.pos, *vis.view, spans);
    else push(spans, 0, lower(kv, seq, 0, n_old, qr.pos + 1), kNotListed);
    const int32_t n_end = !qr.tree && kv.seq_sorted(seq) ? lower(kv, seq, n_old, n, qr.pos + 1) : n;
    push(spans, n_old, n_end, kNotListed);
}

// Calls fn(slot) for every visible entry of the spans, in order.
template <typename F>
void for_visible(const KVCache& kv, int32_t seq, const Visibility& vis, const QueryRule& qr,
                 const std::vector<Span>& spans, F&& fn) {
    const int32_t bs = static_cast<int32_t>(kv.block_size());
    for (const Span& sp : spans) {
        for (int32_t j = sp.j0; j < sp.j1;) {  // a block at a time: its slots are consecutive
            const int32_t je = std::min(sp.j1, (j / bs + 1) * bs);
            for (int64_t slot = kv.slot_of(seq, j); j < je; ++j, ++slot) {
                const int32_t p = kv.slot_pos(slot);
                const bool listed = sp.listed == kLookUp ? vis.listed(p) : sp.listed == kListed;
                if (entry_visible(vis.rule, qr, j, p, listed)) fn(slot);
            }
        }
    }
}

}  // namespace

void attend(const KernelTable& kt, const KVCache& kv, int32_t layer, int32_t seq, const Visibility& vis,
            const QueryRule& qr, const float* q, int64_t kv_off, int64_t hd, float scale, float* scores, float* out) {
    const bool f16 = kv.f16();
    const size_t elem = f16 ? 2 : 4;

    thread_local std::vector<Span> spans;
    visible_spans(kv, seq, vis, qr, spans);

    // Calls fn(k, slot) for the k-th visible entry.
    auto visit = [&](auto&& fn) {
        int32_t k = 0;
        for_visible(kv, seq, vis, qr, spans, [&](int64_t slot) { fn(k++, slot); });
    };

    // Pass 1: scores of visible entries.
    float max_s = -INFINITY;
    int32_t n_vis = 0;
    visit([&](int32_t k, int64_t slot) {
        const float s = kt.dot_kv(q, kv.k_row(layer, slot) + kv_off * elem, hd, f16) * scale;
        scores[k] = s;
        max_s = s > max_s ? s : max_s;
        n_vis = k + 1;
    });
    std::memset(out, 0, static_cast<size_t>(hd) * sizeof(float));
    if (n_vis == 0) return;  // nothing visible (cannot happen for a token that sees itself)

    // Pass 2: weights and the weighted sum of values, in the same entry order.
    float sum = 0.0f;
    visit([&](int32_t k, int64_t slot) {
        const float w = std::exp(scores[k] - max_s);
        sum += w;
        kt.axpy_kv(w, kv.v_row(layer, slot) + kv_off * elem, out, hd, f16);
    });
    const float inv = 1.0f / sum;
    for (int64_t i = 0; i < hd; ++i) out[i] *= inv;
}

void attend_group(const KernelTable& kt, const KVCache& kv, int32_t layer, int32_t seq, const Visibility& vis,
                  const QueryRule& qr, const float* q, int64_t n_q, int64_t kv_off, int64_t hd, float scale,
                  float* out) {
    const bool f16 = kv.f16();
    const int64_t off = kv_off * (f16 ? 2 : 4);
    const int64_t stride = static_cast<int64_t>(kv.row_bytes());

    thread_local std::vector<Span> spans;
    visible_spans(kv, seq, vis, qr, spans);

    // Visible entries as runs of consecutive slots, in entry order: an entry that is not
    // visible (an empty slot, a later position, outside the view, not an ancestor) ends a run,
    // and so does a block boundary unless the next block happens to follow in the pool.
    struct Run {
        int64_t slot;
        int32_t len;
    };
    thread_local std::vector<Run> runs;
    runs.clear();
    int64_t n_vis = 0;
    for_visible(kv, seq, vis, qr, spans, [&](int64_t slot) {
        if (!runs.empty() && runs.back().slot + runs.back().len == slot) ++runs.back().len;
        else runs.push_back({slot, 1});
        ++n_vis;
    });
    std::memset(out, 0, static_cast<size_t>(n_q * hd) * sizeof(float));
    if (n_vis == 0) return;  // nothing visible (cannot happen for a token that sees itself)

    // Scores (n_q, ld): row r holds head r's scores of the visible entries in order.
    const int64_t ld = (n_vis + 15) / 16 * 16;
    thread_local std::vector<float> sc;
    if (static_cast<int64_t>(sc.size()) < n_q * ld) sc.resize(static_cast<size_t>(n_q * ld));
    int64_t k = 0;
    for (const Run& r : runs) {
        kt.attn_scores(q, n_q, hd, kv.k_row(layer, r.slot) + off, stride, r.len, f16, scale, sc.data() + k, ld);
        k += r.len;
    }

    // Two-pass softmax: per head max, then the exp weights and their sum.
    float inv[64];
    thread_local std::vector<float> inv_big;
    float* inv_p = inv;
    if (n_q > 64) {
        inv_big.resize(static_cast<size_t>(n_q));
        inv_p = inv_big.data();
    }
    for (int64_t h = 0; h < n_q; ++h) inv_p[h] = 1.0f / kt.attn_softmax(sc.data() + h * ld, n_vis);

    // Weighted sum of values, in the same entry order.
    k = 0;
    for (const Run& r : runs) {
        kt.attn_accum(sc.data() + k, ld, n_q, hd, kv.v_row(layer, r.slot) + off, stride, r.len, f16, out);
        k += r.len;
    }
    for (int64_t h = 0; h < n_q; ++h)
        for (int64_t i = 0; i < hd; ++i) out[h * hd + i] *= inv_p[h];
}

}  // namespace apls::cpu
