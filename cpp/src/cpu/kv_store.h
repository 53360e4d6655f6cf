// cpu/kv_store.h — the CPU backend's K/V store: every layer's K and V rows in host memory.
//
// Layout: per layer, K and V are (capacity, kv_dim) arrays of F32 or F16; slot s of a layer is
// row s. The block bookkeeping (which slots a sequence holds) is KVCache's; this store only
// keeps rows and moves or re-rotates them when the cache asks (kv_cache.h KVStore).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kv_cache.h"
#include "rope.h"

namespace apls::cpu {

// What re-rotating a cached key needs: RoPE of `style` on the first n_rot dimensions of each of
// n_head_kv heads of head_dim, theta_i = pos * freq_scale * base^(-2i / n_rot).
struct RopeParams {
    int32_t n_rot = 0;
    int32_t head_dim = 0;
    int32_t n_head_kv = 0;
    float base = 10000.0f;
    float freq_scale = 1.0f;
    RopeStyle style = RopeStyle::NORM;
};

class HostKVStore final : public KVStore {
public:
    // Throws APLS_STATUS_OUT_OF_MEMORY naming the size when the rows cannot be allocated.
    HostKVStore(int32_t n_layer, int32_t kv_dim, uint32_t capacity, bool f16, const RopeParams& rope);

    bool f16() const { return f16_; }
    size_t row_bytes() const { return static_cast<size_t>(kv_dim_) * (f16_ ? 2 : 4); }
    uint8_t* k_row(int32_t layer, int64_t slot) { return k_[layer].data() + slot * row_bytes(); }
    uint8_t* v_row(int32_t layer, int64_t slot) { return v_[layer].data() + slot * row_bytes(); }
    const uint8_t* k_row(int32_t layer, int64_t slot) const { return k_[layer].data() + slot * row_bytes(); }
    const uint8_t* v_row(int32_t layer, int64_t slot) const { return v_[layer].data() + slot * row_bytes(); }

    void copy_slot(int64_t dst, int64_t src) override;
    void rerotate(int64_t slot, int32_t shift) override;
    void flush() override {}

private:
    int32_t n_layer_, kv_dim_;
    bool f16_;
    RopeParams rope_;
    std::vector<std::vector<uint8_t>> k_, v_;  // per layer: (capacity, kv_dim)
    int32_t cs_shift_ = 0;                     // the shift cs_ was computed for
    std::vector<float> cs_, row_;              // (n_rot) cos/sin of the shift; (kv_dim) a key in F32
};

}  // namespace apls::cpu
