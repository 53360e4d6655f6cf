// cpu/attention.cpp — two-pass softmax attention over index ranges of the block table; see attention.h.
#include "cpu/attention.h"

#include <cmath>
#include <cstring>
#include <vector>

namespace apls::cpu {

namespace {

// Entries [j0, j1) to visit; filter: test each against the view (unsorted sequences only).
struct Span {
    int32_t j0, j1;
    bool filter;
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

void push(std::vector<Span>& spans, int32_t j0, int32_t j1, bool filter) {
    if (j0 >= j1) return;
    if (!spans.empty() && !filter && !spans.back().filter && spans.back().j1 == j0) spans.back().j1 = j1;
    else spans.push_back({j0, j1, filter});
}

// The restricted entries [0, n_old) a query at pos_q sees through `view`, as ranges in order.
void view_spans(const KVCache& kv, int32_t seq, int32_t n_old, int32_t pos_q, const KVView& view,
                std::vector<Span>& spans) {
    if (!kv.seq_sorted(seq)) return push(spans, 0, n_old, true);
    const int32_t jc = lower(kv, seq, 0, n_old, pos_q + 1);  // causal bound
    if (!view.explicit_list()) {
        const int32_t js = lower(kv, seq, 0, jc, view.n_sink);
        const int32_t jw = view.n_window < 0 ? 0 : lower(kv, seq, js, jc, pos_q - view.n_window + 1);
        push(spans, 0, js, false);
        push(spans, std::max(js, jw), jc, false);
        return;
    }
    int32_t hint = 0;  // listed positions are increasing, so each search starts after the last hit
    for (int32_t p : view.positions) {
        if (p > pos_q) break;
        int32_t j = hint < jc && kv.entry_pos(seq, hint) == p ? hint : lower(kv, seq, hint, jc, p);
        int32_t e = j;
        while (e < jc && kv.entry_pos(seq, e) == p) ++e;
        push(spans, j, e, false);
        hint = e;
    }
}

}  // namespace

void attend(const KernelTable& kt, const KVCache& kv, int32_t layer, int32_t seq, int32_t pos_q,
            const float* q, int64_t kv_off, int64_t hd, float scale, float* scores, float* out,
            const KVView* view) {
    const int32_t n = kv.seq_len(seq);
    const bool f16 = kv.f16();
    const size_t elem = f16 ? 2 : 4;

    // Entries to visit, in entry order: those the view restricts, then the unrestricted ones.
    thread_local std::vector<Span> spans;
    spans.clear();
    int32_t n_old = 0;
    if (view) {
        n_old = view->n_old.empty() ? n : std::min(n, view->n_old[seq]);
        view_spans(kv, seq, n_old, pos_q, *view, spans);
    }
    const int32_t n_end = kv.seq_sorted(seq) ? lower(kv, seq, n_old, n, pos_q + 1) : n;
    push(spans, n_old, n_end, false);

    // Calls fn(k, slot) for the k-th visible entry.
    auto visit = [&](auto&& fn) {
        int32_t k = 0;
        for (const Span& sp : spans) {
            for (int32_t j = sp.j0; j < sp.j1; ++j) {
                const int64_t slot = kv.slot_of(seq, j);
                const int32_t p = kv.slot_pos(slot);
                if (p < 0 || p > pos_q || (sp.filter && !view->sees(p, pos_q))) continue;
                fn(k++, slot);
            }
        }
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

}  // namespace apls::cpu
