// cuda/step_inputs.h — a decode call's small inputs on the device.
//
// Per call the host writes the batch's tokens, positions, KV slots, output rows, each token's
// entry list (offset, length, entries held before the call, tree ancestors) and the entries
// themselves (slot and position of each, once per sequence; an explicit view's mask) into one
// pinned buffer and uploads it in one transfer (three with the entries). The device arrays sit
// at fixed offsets, so a captured graph reads each step's inputs from the same addresses;
// generation() changes when they move (a longer cache than any before), and graphs captured
// before must go.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "batch.h"
#include "cuda/cuda_common.h"
#include "cuda/pinned_buffer.h"
#include "kv_cache.h"

namespace apls::cuda {

class StepInputs {
public:
    // rows: the most tokens of a batch; entries: initial room for the entry lists.
    StepInputs(size_t rows, size_t entries, cudaStream_t stream);
    ~StepInputs();

    // Write and upload the inputs of `batch` (validated) over `kv` (its entries appended,
    // slots[i] the KV slot of token i); waits until the previous upload has left the host
    // buffer. Returns the number of output rows.
    int write(const Batch& batch, const Visibility& vis, const KVCache& kv, const int64_t* slots);
    uint64_t generation() const { return generation_; }

    // Device arrays (t = tokens of the batch): tokens, pos, slots (t); out_rows (outputs);
    // off, n_end, n_old (t); anc (t, tree batches); entry_slot, entry_pos (all lists); mask.
    int32_t* tokens() const { return dev_.get() + seg_.tokens; }
    const int32_t* pos() const { return dev_.get() + seg_.pos; }
    const int32_t* slots() const { return dev_.get() + seg_.slots; }
    const int32_t* out_rows() const { return dev_.get() + seg_.out_rows; }
    const int32_t* off() const { return dev_.get() + seg_.off; }
    const int32_t* n_end() const { return dev_.get() + seg_.n_end; }
    const int32_t* n_old() const { return dev_.get() + seg_.n_old; }
    const uint64_t* anc() const { return reinterpret_cast<const uint64_t*>(dev_.get() + seg_.anc); }
    const int32_t* entry_slot() const { return dev_.get() + seg_.entry_slot; }
    const int32_t* entry_pos() const { return dev_.get() + seg_.entry_pos; }
    const uint8_t* mask() const { return mask_dev_.get(); }

    // What the last write held.
    bool has_view() const { return has_view_; }
    bool explicit_view() const { return explicit_view_; }
    bool tree() const { return tree_; }
    ViewRule view() const { return view_; }
    // Entries of the batch's one sequence (0: several sequences).
    int one_list_entries() const { return one_list_entries_; }

private:
    // Offsets (int32 elements) of the arrays in the buffer: t = rows for the per-token arrays,
    // E entries for the lists. anc first (8-byte aligned).
    struct Segments {
        size_t anc, tokens, pos, slots, out_rows, off, n_end, n_old, entry_slot, entry_pos, total;
    };
    void layout(size_t entries);

    cudaStream_t stream_;
    size_t rows_;
    Segments seg_{};
    size_t entry_cap_ = 0;
    DeviceBuffer<int32_t> dev_;
    DeviceBuffer<uint8_t> mask_dev_;
    PinnedBuffer<int32_t> host_;
    PinnedBuffer<uint8_t> mask_host_;
    cudaEvent_t copied_ = nullptr;
    uint64_t generation_ = 0;
    bool has_view_ = false, explicit_view_ = false, tree_ = false;
    ViewRule view_;
    int one_list_entries_ = 0;
};

}  // namespace apls::cuda
