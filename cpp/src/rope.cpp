// rope.cpp — RoPE by layout; see rope.h.
#include "rope.h"

#include "cpu/ops.h"

namespace apls {

namespace {
void rope_neox(float* x, int64_t nh, int64_t hd, int64_t n_rot, const float* cos_sin) {
    const int64_t half = n_rot / 2;
    for (int64_t h = 0; h < nh; ++h) {
        float* xh = x + h * hd;
        for (int64_t i = 0; i < half; ++i) {
            const float c = cos_sin[2 * i], s = cos_sin[2 * i + 1];
            const float a = xh[i], b = xh[i + half];
            xh[i] = a * c - b * s;
            xh[i + half] = a * s + b * c;
        }
    }
}
}  // namespace

void rope_apply(RopeStyle style, float* x, int64_t nh, int64_t hd, int64_t n_rot, const float* cos_sin) {
    if (style == RopeStyle::NEOX) rope_neox(x, nh, hd, n_rot, cos_sin);
    else cpu::rope_pairs(x, nh, hd, n_rot, cos_sin);
}

}  // namespace apls
