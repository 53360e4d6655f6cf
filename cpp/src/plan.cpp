// plan.cpp — layer plans: validation, the C struct, group sizes; see plan.h.
#include "plan.h"

#include <algorithm>

#include "common.h"

namespace apls {

void Plan::validate(int32_t n_layer, int32_t n_vocab) const {
    auto sized = [&](size_t n, const char* what) {
        if (n != 0 && n != static_cast<size_t>(n_layer))
            fail(APLS_STATUS_INVALID_ARGUMENT, "plan.", what, " has ", n, " entries, the model has ", n_layer,
                 " layers");
    };
    sized(attn.size(), "attn");
    sized(mlp.size(), "mlp");
    sized(group.size(), "group");
    for (size_t i = 0; i < group.size(); ++i) {
        if (group[i] < -1) fail(APLS_STATUS_INVALID_ARGUMENT, "plan.group[", i, "] = ", group[i], " (use -1 for none)");
        // A group id may not reappear after another group started: groups are consecutive runs.
        for (size_t j = 0; group[i] >= 0 && j + 1 < i; ++j)
            if (group[j] == group[i] && group[j + 1] != group[i])
                fail(APLS_STATUS_INVALID_ARGUMENT, "plan.group id ", group[i], " is not one run of consecutive layers");
    }
    if (head_rows < 0 || head_rows > n_vocab)
        fail(APLS_STATUS_INVALID_ARGUMENT, "plan.head_rows ", head_rows, " is out of range [0, ", n_vocab, "]");
}

Plan Plan::from_c(const apls_plan* p, int32_t n_layer, int32_t n_vocab) {
    Plan plan;
    if (!p) return plan;
    if (p->n_layer != n_layer)
        fail(APLS_STATUS_INVALID_ARGUMENT, "plan has ", p->n_layer, " layers, the model has ", n_layer);
    if (p->attn) plan.attn.assign(p->attn, p->attn + n_layer);
    if (p->mlp) plan.mlp.assign(p->mlp, p->mlp + n_layer);
    if (p->group) plan.group.assign(p->group, p->group + n_layer);
    plan.head_rows = p->head_rows;
    plan.validate(n_layer, n_vocab);
    return plan;
}

int32_t Plan::largest_group(int32_t n_layer) const {
    int32_t most = 1;
    walk_layers(*this, n_layer, [&](int32_t l0, int32_t l1) { most = std::max(most, l1 - l0); });
    return most;
}

}  // namespace apls
