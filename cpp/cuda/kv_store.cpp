// cuda/kv_store.cpp — device K/V rows: allocation, queued copies, batched re-rotation.
#include "cuda/kv_store.h"

#include "cpu/ops.h"
#include "cuda/launch.h"

namespace apls::cuda {

DeviceKVStore::DeviceKVStore(const HParams& hp, uint32_t capacity, bool f16, cudaStream_t stream)
    : hp_(hp), stream_(stream), f16_(f16), slot_stride_(static_cast<int64_t>(hp.n_layer) * 2 * hp.kv_dim()) {
    kv_.resize(static_cast<size_t>(capacity) * slot_stride_ * (f16 ? 2 : 4));
    APLS_CUDA_CHECK(cudaMemsetAsync(kv_.get(), 0, kv_.size(), stream_));
}

void DeviceKVStore::copy_slot(int64_t dst, int64_t src) {
    flush();  // rotations issued before this copy apply first
    const size_t bytes = static_cast<size_t>(slot_stride_) * (f16_ ? 2 : 4);
    APLS_CUDA_CHECK(
        cudaMemcpyAsync(kv_.get() + dst * bytes, kv_.get() + src * bytes, bytes, cudaMemcpyDeviceToDevice, stream_));
}

void DeviceKVStore::rerotate(int64_t slot, int32_t shift) {
    if (!rot_slots_.empty() && shift != rot_shift_) flush();
    rot_shift_ = shift;
    rot_slots_.push_back(static_cast<int32_t>(slot));
}

void DeviceKVStore::flush() {
    if (rot_slots_.empty()) return;
    std::vector<float> cs(static_cast<size_t>(hp_.n_rot));  // rotations compose: R(p + shift) = R(shift) R(p)
    cpu::rope_table(rot_shift_, hp_.n_rot, hp_.rope_freq_base, hp_.rope_freq_scale, cs.data());
    rot_slots_dev_.resize(rot_slots_.size());
    rot_cs_dev_.resize(cs.size());
    APLS_CUDA_CHECK(cudaMemcpyAsync(rot_slots_dev_.get(), rot_slots_.data(), rot_slots_.size() * 4,
                                    cudaMemcpyHostToDevice, stream_));
    APLS_CUDA_CHECK(cudaMemcpyAsync(rot_cs_dev_.get(), cs.data(), cs.size() * 4, cudaMemcpyHostToDevice, stream_));
    kv_rerotate(kv_.get(), f16_, slot_stride_, hp_.n_layer, hp_.kv_dim(), rot_slots_dev_.get(),
                static_cast<int>(rot_slots_.size()), rot_cs_dev_.get(), hp_.n_head_kv, hp_.head_dim, hp_.n_rot,
                hp_.rope_style, stream_);
    APLS_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the host vectors are reused
    rot_slots_.clear();
}

}  // namespace apls::cuda
