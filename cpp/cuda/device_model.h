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

    std::vector<DeviceBuffer<uint8_t>> buffers_;
    uint64_t bytes_ = 0;
};

}  // namespace apls::cuda
