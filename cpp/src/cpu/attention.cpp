// cpu/attention.cpp — two-pass softmax attention over the block table; see attention.h.
#include "cpu/attention.h"

#include <cmath>
#include <cstring>

namespace apls::cpu {

void attend(const KernelTable& kt, const KVCache& kv, int32_t layer, int32_t seq, int32_t pos_q,
            const float* q, int64_t kv_off, int64_t hd, float scale, float* scores, float* out,
            const KVView* view) {
    const int32_t n = kv.seq_len(seq);
    const bool f16 = kv.f16();
    const size_t elem = f16 ? 2 : 4;
    const uint32_t B = kv.block_size();
    const std::vector<int32_t>& table = kv.block_table(seq);

    // Pass 1: scores of visible entries, -inf for the others.
    float max_s = -INFINITY;
    for (int32_t j = 0; j < n; ++j) {
        const int64_t slot = static_cast<int64_t>(table[j / B]) * B + j % B;
        const int32_t p = kv.slot_pos(slot);
        if (p < 0 || p > pos_q || (view && !view->sees(p, pos_q))) {
            scores[j] = -INFINITY;
            continue;
        }
        const float s = kt.dot_kv(q, kv.k_row(layer, slot) + kv_off * elem, hd, f16) * scale;
        scores[j] = s;
        max_s = s > max_s ? s : max_s;
    }
    std::memset(out, 0, static_cast<size_t>(hd) * sizeof(float));
    if (max_s == -INFINITY) return;  // nothing visible (cannot happen for a token that sees itself)

    // Pass 2: weights and the weighted sum of values, in the same entry order.
    float sum = 0.0f;
    for (int32_t j = 0; j < n; ++j) {
        if (scores[j] == -INFINITY) continue;
        const int64_t slot = static_cast<int64_t>(table[j / B]) * B + j % B;
        const float w = std::exp(scores[j] - max_s);
        sum += w;
        kt.axpy_kv(w, kv.v_row(layer, slot) + kv_off * elem, out, hd, f16);
    }
    const float inv = 1.0f / sum;
    for (int64_t i = 0; i < hd; ++i) out[i] *= inv;
}

}  // namespace apls::cpu
