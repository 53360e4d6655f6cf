// cpu/attention.h — causal attention of one query head over a sequence's cached entries.
#pragma once

#include <cstdint>

#include "cpu/kernels.h"
#include "kv_cache.h"

namespace apls::cpu {

// out (hd) = sum_j softmax_j(q . K_j * scale) V_j over the entries j of `seq` in `layer` whose
// position is in [0, pos_q] (holes and future positions are skipped). Entries are visited in
// block-table order, so the result for a query does not depend on what else is in the batch.
// q: (hd), the query head; kv_off: offset of the KV head inside a cached row;
// scores: scratch of at least kv.seq_len(seq) floats. view: nullptr = every entry; else only
// the entries the view shows (see KVView).
void attend(const KernelTable& kt, const KVCache& kv, int32_t layer, int32_t seq, int32_t pos_q,
            const float* q, int64_t kv_off, int64_t hd, float scale, float* scores, float* out,
            const KVView* view = nullptr);

}  // namespace apls::cpu
