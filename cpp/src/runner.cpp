// runner.cpp — the runner of a context's model device, and the greedy helpers runners share.
#include "runner.h"

#include <cmath>
#include <limits>

#include "context.h"
#include "cpu/cpu_runner.h"
#include "device.h"

namespace apls {

std::unique_ptr<Runner> make_runner(Context& ctx) {
    if (ctx.model().device() == Device::CUDA) return cuda::make_runner(ctx);
    return cpu::make_runner(ctx);
}

int32_t argmax_row(const float* x, int32_t n) {
    // 16 independent running maxima (lane j: indices = j mod 16, the first of equal values),
    // then the greatest with the lowest index: the first maximum, as one scan finds it, at a
    // fraction of the time (the scan's compare waits on the last one: ~190 against ~60 us for
    // a 49,152-entry row, unvectorised).
    constexpr int32_t L = 16;
    int32_t best = 0, i = 1;
    if (n >= 2 * L) {
        float m[L];
        int32_t idx[L];
        for (int32_t j = 0; j < L; ++j) {
            m[j] = x[j];
            idx[j] = j;
        }
        for (i = L; i + L <= n; i += L)
            for (int32_t j = 0; j < L; ++j)
                if (x[i + j] > m[j]) {
                    m[j] = x[i + j];
                    idx[j] = i + j;
                }
        best = idx[0];
        for (int32_t j = 1; j < L; ++j)
            if (m[j] > x[best] || (m[j] == x[best] && idx[j] < best)) best = idx[j];
    }
    for (; i < n; ++i)
        if (x[i] > x[best]) best = i;
    return best;
}

float top_prob_row(const float* x, int32_t n, int32_t best) {
    const float m = x[best];
    double sum = 0.0;
    for (int32_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i] - m));
    return static_cast<float>(1.0 / sum);
}

void host_top_k(const float* logits, int32_t n_rows, int32_t n_vocab, int32_t k, int32_t* ids) {
    for (int32_t r = 0; r < n_rows; ++r) top_k_row(logits + static_cast<size_t>(r) * n_vocab, n_vocab, k, ids + r * k);
}

void top_k_row(const float* x, int32_t n, int32_t k, int32_t* ids) {
    if (k < 1 || k > 64 || k > n) fail(APLS_STATUS_INVALID_ARGUMENT, "top_k_row: k ", k, " must be in [1, min(64, n)]");
    // One pass with a sorted list of the best k so far: most values fail the first comparison
    // with the k-th best, so this costs about n comparisons (a full sort would cost n log n).
    // Once the list is full, a run of 16 values whose maximum does not beat the k-th best is
    // skipped whole (a vectorisable max instead of 16 branches).
    float val[64];  // k <= 64 (checked by the table)
    int32_t m = 0;  // entries held
    constexpr int32_t kRun = 16;
    for (int32_t i0 = 0; i0 < n; i0 += kRun) {
        const int32_t i1 = std::min(n, i0 + kRun);
        if (m == k && i1 - i0 == kRun) {
            float top = -std::numeric_limits<float>::infinity();
            for (int32_t i = i0; i < i1; ++i) top = x[i] > top ? x[i] : top;
            if (!(top > val[k - 1])) continue;
        }
        for (int32_t i = i0; i < i1; ++i) {
            const float v = x[i];
            if (m == k && !(v > val[k - 1])) continue;  // equal to the k-th: the lower id (held) wins
            int32_t j = m < k ? m++ : k - 1;
            for (; j > 0 && v > val[j - 1]; --j) {
                val[j] = val[j - 1];
                ids[j] = ids[j - 1];
            }
            val[j] = v;
            ids[j] = i;
        }
    }
}

}  // namespace apls
