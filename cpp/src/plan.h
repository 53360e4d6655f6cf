// plan.h — a layer plan: which sub-blocks of each layer run, and the walk over it.
//
// The full model is the plan with everything on; a draft skips some attention and MLP
// sub-blocks or runs consecutive layers as a parallel group. The forward pass takes a plan on
// every call and every backend walks it here (forward.cpp run_forward): there is one code path.
#pragma once

#include <cstdint>
#include <vector>

#include "apls/apls.h"

namespace apls {

struct Plan {
    std::vector<uint8_t> attn;   // (n_layer) 1 = run; empty = all run
    std::vector<uint8_t> mlp;    // (n_layer) 1 = run; empty = all run
    std::vector<int32_t> group;  // (n_layer) parallel group id, -1 = none; empty = no groups
    int32_t head_rows = 0;       // output head restricted to ids [0, head_rows); 0 = all

    bool runs_attn(int layer) const { return attn.empty() || attn[layer]; }
    bool runs_mlp(int layer) const { return mlp.empty() || mlp[layer]; }
    int32_t group_of(int layer) const { return group.empty() ? -1 : group[layer]; }

    // Throws INVALID_ARGUMENT naming the problem (array sizes, group ids, head_rows).
    void validate(int32_t n_layer, int32_t n_vocab) const;
    // From the C struct (nullptr = full model), validated.
    static Plan from_c(const apls_plan* p, int32_t n_layer, int32_t n_vocab);
    // The most layers of one parallel group (1 without groups).
    int32_t largest_group(int32_t n_layer) const;
};

// The plan walk, for every backend: fn(l0, l1) for each run of layers in order — a single layer
// (l1 = l0 + 1) or a parallel group [l0, l1).
template <typename F>
void walk_layers(const Plan& plan, int32_t n_layer, F&& fn) {
    for (int32_t l = 0; l < n_layer;) {
        int32_t end = l + 1;
        const int32_t g = plan.group_of(l);
        while (g >= 0 && end < n_layer && plan.group_of(end) == g) ++end;
        fn(l, end);
        l = end;
    }
}

}  // namespace apls
