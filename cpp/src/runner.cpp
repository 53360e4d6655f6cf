// runner.cpp — the runner of a context's model device, and the greedy helpers runners share.
#include "runner.h"

#include <cmath>

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

}  // namespace apls
