// forward.cpp — the forward pass's walk over the plan, for every backend (see forward.h), and
// the dispatch by architecture.
#include "forward.h"

#include <vector>

#include "common.h"

namespace apls {

namespace {

// The stage's members whose plan runs the attention (or MLP) sub-block, then those sub-blocks.
void run_members(ForwardOps& ops, const Plan& plan, AttentionBlock attention, const Member* ms, int32_t n) {
    Member attn[kMaxGroupLanes], mlp[kMaxGroupLanes];
    int32_t na = 0, nm = 0;
    for (int32_t i = 0; i < n; ++i) {
        if (plan.runs_attn(ms[i].layer)) attn[na++] = ms[i];
        if (plan.runs_mlp(ms[i].layer)) mlp[nm++] = ms[i];
    }
    if (na > 0) attention(ops, Members{attn, na});
    if (nm > 0) ops.mlp_swiglu(Members{mlp, nm});
}

}  // namespace

void run_forward(ForwardOps& ops, const Plan& plan, int32_t n_layer, AttentionBlock attention) {
    ops.embed();
    walk_layers(plan, n_layer, [&](int32_t l0, int32_t l1) {
        const int32_t n = l1 - l0;
        if (n == 1) {
            const Member m{l0, -1};
            return run_members(ops, plan, attention, &m, 1);
        }
        const bool lanes = n <= kMaxGroupLanes && ops.side_by_side(n);
        ops.group_begin(n, lanes);
        if (lanes) {  // every member's stages together, each on its lane
            Member ms[kMaxGroupLanes];
            for (int32_t j = 0; j < n; ++j) ms[j] = Member{l0 + j, j};
            run_members(ops, plan, attention, ms, n);
            for (int32_t j = 0; j < n; ++j) ops.group_add(j);
        } else {  // one member after another on the pass's own buffers
            for (int32_t l = l0; l < l1; ++l) {
                if (l > l0) ops.group_restore();
                const Member m{l, -1};
                run_members(ops, plan, attention, &m, 1);
                ops.group_add(-1);
            }
        }
        ops.group_end();
    });
    ops.output(plan.head_rows);
}

void forward(ForwardOps& ops, const Plan& plan, const HParams& hp) {
    switch (hp.arch) {
        case Arch::LLAMA:
            return forward_llama(ops, plan, hp.n_layer);
        case Arch::QWEN2:
            return forward_qwen2(ops, plan, hp.n_layer);
        case Arch::QWEN3:
            return forward_qwen3(ops, plan, hp.n_layer);
    }
    fail(APLS_STATUS_UNSUPPORTED, "no forward pass for architecture '", arch_name(hp.arch), "'");
}

}  // namespace apls
