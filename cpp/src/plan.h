// plan.h — a layer plan: which sub-blocks of each layer run.
//
// The full model is the plan with everything on; a draft skips some attention and MLP
// sub-blocks. The forward pass takes a plan on every call: there is one code path.
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
};

}  // namespace apls
