// cpu/attention.cpp — two-pass softmax attention over index ranges of the block table; see attention.h.
#include "cpu/attention.h"

#include <algorithm>
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

// Entries to visit, in entry order: those the view restricts, then the unrestricted ones.
void visible_spans(const KVCache& kv, int32_t seq, int32_t pos_q, const KVView* view, std::vector<Span>& spans) {
    const int32_t n = kv.seq_len(seq);
    spans.clear();
    int32_t n_old = 0;
    if (view) {
        n_old = view->n_old.empty() ? n : std::min(n, view->n_old[seq]);
        view_spans(kv, seq, n_old, pos_q, *view, spans);
    }
    const int32_t n_end = kv.seq_sorted(seq) ? lower(kv, seq, n_old, n, pos_q + 1) : n;
    push(spans, n_old, n_end, false);
}

}  // namespace

void attend_group(const KernelTable& kt, const KVCache& kv, int32_t layer, int32_t seq, int32_t pos_q, const float* q,
                  int64_t n_q, int64_t kv_off, int64_t hd, float scale, float* out, const KVView* view) {
    const bool f16 = kv.f16();
    const int64_t off = kv_off * (f16 ? 2 : 4);
    const int64_t stride = static_cast<int64_t>(kv.row_bytes());
    const int32_t bs = static_cast<int32_t>(kv.block_size());

    thread_local std::vector<Span> spans;
    visible_spans(kv, seq, pos_q, view, spans);

    // Visible entries as runs of consecutive slots, in entry order. A span is cut at block
    // boundaries (the next block may be anywhere in the pool); entries that are not visible
    // (empty slots, later positions, outside an unsorted view) end a run and are skipped.
    struct Run {
        int64_t slot;
        int32_t len;
    };
    thread_local std::vector<Run> runs;
    runs.clear();
    int64_t n_vis = 0;
    for (const Span& sp : spans) {
        for (int32_t j = sp.j0; j < sp.j1;) {
            const int32_t je = std::min(sp.j1, (j / bs + 1) * bs);
            int64_t slot = kv.slot_of(seq, j);
            for (; j < je; ++j, ++slot) {
                const int32_t p = kv.slot_pos(slot);
                if (p < 0 || p > pos_q || (sp.filter && !view->sees(p, pos_q))) continue;
                if (!runs.empty() && runs.back().slot + runs.back().len == slot) ++runs.back().len;
                else runs.push_back({slot, 1});
                ++n_vis;
            }
        }
    }
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
