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
    std::vector<uint8_t> attn;  // (n_layer) 1 = run; empty = all run
    std::vector<uint8_t> mlp;   // (n_layer) 1 = run; empty = all run

    bool runs_attn(int layer) const { return attn.empty() || attn[layer]; }
    bool runs_mlp(int layer) const { return mlp.empty() || mlp[layer]; }

    // From the C struct (nullptr = full model); throws INVALID_ARGUMENT if n_layer mismatches.
    static Plan from_c(const apls_plan* p, int32_t n_layer);
};

}  // namespace apls
