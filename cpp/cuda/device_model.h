// cuda/device_model.h — a model's weights on the GPU (one allocation per tensor, copied from the
// mapped GGUF file at load), laid out exactly as in the file.
#pragma once

#include <vector>

#include "cuda/cuda_common.h"
#include "device.h"
#include "model.h"

namespace apls::cuda {

struct DeviceLayer {
    const float* attn_norm = nullptr;  // (d)
    const float* ffn_norm = nullptr;   // (d)
    DeviceWeight wq, wk, wv, wo, w_gate, w_up, w_down;
    // Optional (nullptr when the model has none): attention biases, q/k norms (model.h Layer).
    const float *bq = nullptr, *bk = nullptr, *bv = nullptr;  // (q), (kv), (kv)
    const float* bo = nullptr;                                // (d)
    const float *q_norm = nullptr, *k_norm = nullptr;         // (hd)
};

class CudaModel : public DeviceModel {
public:
    explicit CudaModel(const Model& model);
    uint64_t bytes() const override { return bytes_; }

    int device = 0;
    DeviceWeight tok_embd, output;  // output == tok_embd when tied
    const float* output_norm = nullptr;
    std::vector<DeviceLayer> layers;

private:
    DeviceWeight upload(const Weight& w);
    const float* upload(const std::vector<float>& v);
    const float* upload_optional(const std::vector<float>& v) { return v.empty() ? nullptr : upload(v); }

    std::vector<DeviceBuffer<uint8_t>> buffers_;
    uint64_t bytes_ = 0;
};

}  // namespace apls::cuda
