// cpu/kv_store.cpp — host K/V rows: allocation, copies, re-rotation; see kv_store.h.
#include "cpu/kv_store.h"

#include <cstring>
#include <new>

#include "common.h"
#include "cpu/kernels.h"
#include "cpu/ops.h"
#include "ggml_types.h"

namespace apls::cpu {

HostKVStore::HostKVStore(int32_t n_layer, int32_t kv_dim, uint32_t capacity, bool f16, const RopeParams& rope)
    : n_layer_(n_layer), kv_dim_(kv_dim), f16_(f16), rope_(rope) {
    const size_t bytes = static_cast<size_t>(capacity) * row_bytes();
    try {
        k_.assign(n_layer, std::vector<uint8_t>(bytes));
        v_.assign(n_layer, std::vector<uint8_t>(bytes));
    } catch (const std::bad_alloc&) {
        fail(APLS_STATUS_OUT_OF_MEMORY, "cannot allocate a KV cache of ", capacity, " tokens (",
             2 * n_layer * bytes / (1 << 20), " MiB)");
    }
    row_.resize(kv_dim);
}

void HostKVStore::copy_slot(int64_t dst, int64_t src) {
    const size_t rb = row_bytes();
    for (int32_t l = 0; l < n_layer_; ++l) {
        std::memcpy(k_row(l, dst), k_row(l, src), rb);
        std::memcpy(v_row(l, dst), v_row(l, src), rb);
    }
}

void HostKVStore::rerotate(int64_t slot, int32_t shift) {
    if (rope_.n_rot <= 0 || rope_.n_head_kv * rope_.head_dim != kv_dim_)
        fail(APLS_STATUS_INVALID_ARGUMENT, "a shift needs the model's RoPE parameters");
    if (cs_.empty() || cs_shift_ != shift) {  // rotations compose: R(p + shift) = R(shift) R(p)
        cs_.resize(static_cast<size_t>(rope_.n_rot));
        rope_table(shift, rope_.n_rot, rope_.base, rope_.freq_scale, cs_.data());
        cs_shift_ = shift;
    }
    float* row = row_.data();
    for (int32_t l = 0; l < n_layer_; ++l) {
        uint8_t* k = k_row(l, slot);
        if (f16_) {
            const uint16_t* h = reinterpret_cast<const uint16_t*>(k);
            for (int32_t i = 0; i < kv_dim_; ++i) row[i] = f16_to_f32(h[i]);
        } else {
            std::memcpy(row, k, static_cast<size_t>(kv_dim_) * 4);
        }
        rope_apply(rope_.style, row, rope_.n_head_kv, rope_.head_dim, rope_.n_rot, cs_.data());
        if (f16_) {
            kernels().f32_to_f16_row(row, reinterpret_cast<uint16_t*>(k), kv_dim_);
        } else {
            std::memcpy(k, row, static_cast<size_t>(kv_dim_) * 4);
        }
    }
}

}  // namespace apls::cpu
