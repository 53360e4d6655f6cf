// cuda/kv_store.h — the CUDA backend's K/V store: every layer's K and V rows in device memory.
//
// Layout: slot-major. Slot s holds, for every layer l, its K row then its V row (kv_dim values
// each, F16 or F32), so a slot is n_layer * 2 * kv_dim values and moving an entry is one copy.
// KVCache (kv_cache.h) keeps the bookkeeping on the host and asks this store to move and
// re-rotate rows: copies are queued on the stream; re-rotations are gathered per shift and run
// as one kernel at flush() (RoPE of the model's style, as the CPU store does it).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "cuda/cuda_common.h"
#include "hparams.h"
#include "kv_cache.h"

namespace apls::cuda {

class DeviceKVStore final : public KVStore {
public:
    DeviceKVStore(const HParams& hp, uint32_t capacity, bool f16, cudaStream_t stream);

    void* data() const { return kv_.get(); }
    bool f16() const { return f16_; }
    int64_t slot_stride() const { return slot_stride_; }  // values per slot
    // Values from a slot's start to layer l's K and V rows.
    int64_t k_offset(int32_t l) const { return static_cast<int64_t>(l) * 2 * hp_.kv_dim(); }
    int64_t v_offset(int32_t l) const { return k_offset(l) + hp_.kv_dim(); }

    void copy_slot(int64_t dst, int64_t src) override;
    void rerotate(int64_t slot, int32_t shift) override;
    void flush() override;

private:
    const HParams& hp_;
    cudaStream_t stream_;
    bool f16_;
    int64_t slot_stride_;
    DeviceBuffer<uint8_t> kv_;
    std::vector<int32_t> rot_slots_;  // slots waiting to be re-rotated by rot_shift_
    int32_t rot_shift_ = 0;
    DeviceBuffer<int32_t> rot_slots_dev_;
    DeviceBuffer<float> rot_cs_dev_;
};

}  // namespace apls::cuda
