// cpu/attention.cpp — two-pass softmax attention over index ranges of the block table; see attention.h.
#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
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

// Calls fn(j, slot) for every visible entry j of the spans, in order.
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
                if (entry_visible(vis.rule, qr, j, p, listed)) fn(j, slot);
            }
        }
    }
}

using Run = VisibleEntries::Run;

// One query token of a call: its visible entries, its scores (n_q rows of ld) and where it
// stands in a pass.
struct TokenWork {
    const VisibleEntries* ve = nullptr;
    int64_t ld = 0;
    float* sc = nullptr;
    size_t next = 0;  // first run not yet finished by the pass
};

// f(t, slot, len, k) for every token's visible entries, cut at multiples of `tile` entries: each
// tile's K or V rows are read by every token before the next tile (they stay in L1/L2 instead
// of coming from memory once per token). Within a token, parts come in entry order.
template <typename F>
void tiled(std::vector<TokenWork>& tw, int32_t n_tok, int64_t tile, F&& f) {
    int64_t j_end = 0;
    for (int32_t t = 0; t < n_tok; ++t) {
        tw[t].next = 0;
        const std::vector<Run>& runs = tw[t].ve->runs;
        if (!runs.empty()) j_end = std::max<int64_t>(j_end, runs.back().j + runs.back().len);
    }
    for (int64_t j0 = 0, j1; j0 < j_end; j0 = j1) {
        j1 = j_end - j0 <= tile ? j_end : j0 + tile;
        for (int32_t t = 0; t < n_tok; ++t) {
            TokenWork& w = tw[t];
            const std::vector<Run>& runs = w.ve->runs;
            for (size_t r = w.next; r < runs.size() && runs[r].j < j1; ++r) {
                const Run& run = runs[r];
                const int64_t a = std::max<int64_t>(run.j, j0), b = std::min<int64_t>(run.j + run.len, j1);
                if (a < b) f(t, run.slot + (a - run.j), b - a, run.k + (a - run.j));
                if (run.j + run.len <= j1) w.next = r + 1;
            }
        }
    }
}

// Entries per tile of a batch call: 128 K (or V) rows of a KV head, 16-32 KB.
constexpr int64_t kTile = 128;

}  // namespace

void find_visible(const KVCache& kv, int32_t seq, const Visibility& vis, const QueryRule& qr, VisibleEntries& out) {
    thread_local std::vector<Span> spans;
    visible_spans(kv, seq, vis, qr, spans);
    std::vector<Run>& runs = out.runs;
    runs.clear();
    int64_t n_vis = 0;
    for_visible(kv, seq, vis, qr, spans, [&](int32_t j, int64_t slot) {
        Run* last = runs.empty() ? nullptr : &runs.back();
        if (last && last->slot + last->len == slot && last->j + last->len == j) ++last->len;
        else runs.push_back({j, 1, slot, n_vis});
        ++n_vis;
    });
    out.n_vis = n_vis;
}

void attend_tokens(const KernelTable& kt, const HostKVStore& store, int32_t layer, const VisibleEntries* ve,
                   int32_t n_tok, const float* q, int64_t q_stride, int64_t n_q, int64_t kv_off, int64_t hd,
                   float scale, float* out, int64_t out_stride) {
    const bool f16 = store.f16();
    const int64_t off = kv_off * (f16 ? 2 : 4);
    const int64_t stride = static_cast<int64_t>(store.row_bytes());
    const int64_t tile = n_tok == 1 ? std::numeric_limits<int64_t>::max() : kTile;  // one token: nothing to share

    thread_local std::vector<TokenWork> tw;
    if (static_cast<int32_t>(tw.size()) < n_tok) tw.resize(static_cast<size_t>(n_tok));
    int64_t n_sc = 0;
    for (int32_t t = 0; t < n_tok; ++t) {
        tw[t].ve = ve + t;
        tw[t].ld = (ve[t].n_vis + 15) / 16 * 16;
        n_sc += n_q * tw[t].ld;
        std::memset(out + t * out_stride, 0, static_cast<size_t>(n_q * hd) * sizeof(float));
    }
    // Scores (n_q, ld) per token: row r holds head r's scores of its visible entries in order.
    thread_local std::vector<float> sc;
    if (static_cast<int64_t>(sc.size()) < n_sc) sc.resize(static_cast<size_t>(n_sc));
    for (int32_t t = 0, o = 0; t < n_tok; o += static_cast<int32_t>(n_q * tw[t].ld), ++t) tw[t].sc = sc.data() + o;

    tiled(tw, n_tok, tile, [&](int32_t t, int64_t slot, int64_t len, int64_t k) {
        kt.attn_scores(q + t * q_stride, n_q, hd, store.k_row(layer, slot) + off, stride, len, f16, scale, tw[t].sc + k,
                       tw[t].ld);
    });

    // Two-pass softmax: per head max, then the exp weights and their sum (a token that sees
    // nothing, which cannot happen for one that sees itself, keeps a zero output).
    thread_local std::vector<float> inv;
    if (static_cast<int64_t>(inv.size()) < n_tok * n_q) inv.resize(static_cast<size_t>(n_tok * n_q));
    for (int32_t t = 0; t < n_tok; ++t)
        for (int64_t h = 0; h < n_q; ++h)
            inv[t * n_q + h] = ve[t].n_vis ? 1.0f / kt.attn_softmax(tw[t].sc + h * tw[t].ld, ve[t].n_vis) : 0.0f;

    // Weighted sum of values, in the same entry order (out carries each element's chain between parts).
    tiled(tw, n_tok, tile, [&](int32_t t, int64_t slot, int64_t len, int64_t k) {
        kt.attn_accum(tw[t].sc + k, tw[t].ld, n_q, hd, store.v_row(layer, slot) + off, stride, len, f16,
                      out + t * out_stride);
    });
    for (int32_t t = 0; t < n_tok; ++t)
        for (int64_t h = 0; h < n_q; ++h)
            for (int64_t i = 0; i < hd; ++i) out[t * out_stride + h * hd + i] *= inv[t * n_q + h];
}

void attend_group(const KernelTable& kt, const HostKVStore& store, int32_t layer, const VisibleEntries& ve,
                  const float* q, int64_t n_q, int64_t kv_off, int64_t hd, float scale, float* out) {
    attend_tokens(kt, store, layer, &ve, 1, q, 0, n_q, kv_off, hd, scale, out, 0);
}

}  // namespace apls::cpu
