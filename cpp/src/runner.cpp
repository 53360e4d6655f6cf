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
    int32_t best = 0;
    for (int32_t i = 1; i < n; ++i)
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
