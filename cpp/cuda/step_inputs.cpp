// cuda/step_inputs.cpp — writing and uploading a decode call's inputs; see step_inputs.h.
#include "cuda/step_inputs.h"

#include <algorithm>
#include <cstring>
#include <map>

namespace apls::cuda {

StepInputs::StepInputs(size_t rows, size_t entries, cudaStream_t stream) : stream_(stream), rows_(rows) {
    APLS_CUDA_CHECK(cudaEventCreateWithFlags(&copied_, cudaEventDisableTiming));
    layout(entries);
}

StepInputs::~StepInputs() {
    if (copied_) {
        cudaEventSynchronize(copied_);
        cudaEventDestroy(copied_);
    }
}

void StepInputs::layout(size_t entries) {
    const size_t t = rows_;
    seg_.anc = 0;  // (t) uint64: first, so 8-byte aligned
    seg_.tokens = 2 * t;
    seg_.pos = 3 * t;
    seg_.slots = 4 * t;
    seg_.out_rows = 5 * t;
    seg_.off = 6 * t;
    seg_.n_end = 7 * t;
    seg_.n_old = 8 * t;
    seg_.entry_slot = 9 * t;
    seg_.entry_pos = 9 * t + entries;
    seg_.total = 9 * t + 2 * entries;
    entry_cap_ = entries;
    if (copied_) APLS_CUDA_CHECK(cudaEventSynchronize(copied_));  // the old buffers are no longer read
    dev_ = DeviceBuffer<int32_t>(seg_.total);
    mask_dev_ = DeviceBuffer<uint8_t>(entries);
    host_.resize(seg_.total);
    mask_host_.resize(entries);
    ++generation_;
}

int StepInputs::write(const Batch& batch, const Visibility& vis, const KVCache& kv, const int64_t* slots) {
    const KVView* view = vis.view;
    const int n = batch.size();
    // Sequences of the batch in order of appearance, each with its entries listed once.
    std::map<int32_t, int32_t> seq_off;
    size_t entries = 0;
    for (int i = 0; i < n; ++i)
        if (seq_off.emplace(batch.seq[i], 0).second) entries += kv.seq_len(batch.seq[i]);
    if (entries > entry_cap_) layout(std::max(entries, entry_cap_ * 2));

    APLS_CUDA_CHECK(cudaEventSynchronize(copied_));  // the previous upload has left the buffer
    int32_t* in = host_.get();
    uint8_t* mask = mask_host_.get();
    has_view_ = view != nullptr;
    explicit_view_ = view && view->explicit_list();
    tree_ = batch.tree();
    view_ = vis.rule;
    size_t e = 0;
    for (auto& [seq, off] : seq_off) {
        off = static_cast<int32_t>(e);
        const int32_t len = kv.seq_len(seq);
        for (int32_t j = 0; j < len; ++j, ++e) {
            in[seg_.entry_slot + e] = static_cast<int32_t>(kv.slot_of(seq, j));
            in[seg_.entry_pos + e] = kv.entry_pos(seq, j);
        }
        if (explicit_view_)  // the old entries the view lists
            for (int32_t j = 0; j < len; ++j) mask[off + j] = view->lists(kv.entry_pos(seq, j)) ? 1 : 0;
    }
    int m = 0;
    for (int i = 0; i < n; ++i) {
        const int32_t seq = batch.seq[i];
        in[seg_.tokens + i] = batch.token[i];
        in[seg_.pos + i] = batch.pos[i];
        in[seg_.slots + i] = static_cast<int32_t>(slots[i]);
        if (batch.out[i]) in[seg_.out_rows + m++] = i;
        in[seg_.off + i] = seq_off[seq];
        in[seg_.n_end + i] = kv.seq_sorted(seq) ? kv.lower_entry(seq, batch.pos[i] + 1) : kv.seq_len(seq);
        in[seg_.n_old + i] = vis.n_old[seq];
        if (tree_) std::memcpy(in + seg_.anc + 2 * i, &vis.anc[i], sizeof(uint64_t));
    }
    one_list_entries_ = seq_off.size() == 1 ? static_cast<int>(e) : 0;
    // One upload for the per-token arrays (contiguous from offset 0) and one for each entry array.
    APLS_CUDA_CHECK(cudaMemcpyAsync(dev_.get(), in, seg_.entry_slot * 4, cudaMemcpyHostToDevice, stream_));
    APLS_CUDA_CHECK(
        cudaMemcpyAsync(dev_.get() + seg_.entry_slot, in + seg_.entry_slot, e * 4, cudaMemcpyHostToDevice, stream_));
    APLS_CUDA_CHECK(
        cudaMemcpyAsync(dev_.get() + seg_.entry_pos, in + seg_.entry_pos, e * 4, cudaMemcpyHostToDevice, stream_));
    if (explicit_view_) APLS_CUDA_CHECK(cudaMemcpyAsync(mask_dev_.get(), mask, e, cudaMemcpyHostToDevice, stream_));
    APLS_CUDA_CHECK(cudaEventRecord(copied_, stream_));
    return m;
}

}  // namespace apls::cuda
