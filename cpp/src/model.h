// model.h — a loaded model: hyperparameters and weights (views into the mapped GGUF file).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "device.h"
#include "ggml_types.h"
#include "gguf.h"
#include "hparams.h"
#include "vocab.h"

namespace apls {

// A weight matrix as GGUF stores it: `rows` rows of `k` elements (ne[0] = k, ne[1] = rows),
// row r at data + r * row_bytes. Vectors have rows == 1.
struct Weight {
    std::string name;
    TensorType type = TensorType::F32;
    const uint8_t* data = nullptr;
    int64_t k = 0;
    int64_t rows = 0;
    // The CPU kernels' packed copy (cpu/kernels.h: packed_bytes, pack_rows), owned by the Model,
    // or nullptr: made at load on the CPU device for the types the kernels pack (cpu::packs: Q5_0
    // and Q5_1; with AVX2, Q4_0, Q4_1 and Q8_0 too), beside data, which stays the GGUF bytes for
    // everything else that reads them.
    const uint8_t* packed = nullptr;
    uint64_t row_bytes() const;
};

struct Layer {
    std::vector<float> attn_norm;  // (d)
    Weight wq;                     // (q_dim rows, d)
    Weight wk, wv;                 // (kv_dim rows, d)
    Weight wo;                     // (d rows, q_dim)
    std::vector<float> ffn_norm;   // (d)
    Weight w_gate, w_up;           // (n_ff rows, d)
    Weight w_down;                 // (d rows, n_ff)
    // Optional, empty when the architecture/file has none:
    std::vector<float> bq;                 // (q_dim) attention q bias (qwen2; llama attention_bias)
    std::vector<float> bk, bv;             // (kv_dim) k, v biases
    std::vector<float> bo;                 // (d) attention output bias (llama attention_bias)
    std::vector<float> q_norm, k_norm;     // (head_dim) per-head RMSNorm of q and k before RoPE (qwen3)
};

class Model {
public:
    // Map (or read) and validate a GGUF file, check every tensor's presence, shape and type.
    // Throws apls::Error: APLS_STATUS_IO, _FORMAT, or _UNSUPPORTED naming the architecture,
    // tensor type or tensor.
    // device (APLS_DEVICE_*): where the weights go and the forward pass runs (CUDA: copied to
    // the GPU at load). AUTO takes CUDA when a GPU is usable and the CUDA backend runs this
    // model (cuda::unsupported_reason), else the CPU; CUDA for a model it does not run throws
    // APLS_STATUS_UNSUPPORTED with the reason.
    static std::unique_ptr<Model> load(const std::string& path, bool use_mmap = true, int32_t device = APLS_DEVICE_CPU);
    ~Model();

    Device device() const { return device_; }
    // Why device AUTO chose the CPU ("" when it chose CUDA or a device was named).
    const std::string& device_note() const { return device_note_; }
    // The backend's copy of the weights (nullptr on the CPU, which reads the mapping directly).
    DeviceModel* device_model() const { return device_model_.get(); }

    const HParams& hparams() const { return hp_; }
    const gguf::File& file() const { return *file_; }
    const Weight& tok_embd() const { return tok_embd_; }   // (n_vocab rows, d)
    const Weight& output() const { return output_; }       // (n_vocab rows, d); tok_embd when tied
    const std::vector<float>& output_norm() const { return output_norm_; }  // (d)
    const std::vector<Layer>& layers() const { return layers_; }
    // The tokenizer, or nullptr when the file carries none (tokenizer.ggml.model absent).
    const Vocab* vocab() const { return vocab_.get(); }
    // The tokenizer; throws APLS_STATUS_UNSUPPORTED when the file has none.
    const Vocab& require_vocab() const;
    uint64_t n_params() const { return n_params_; }
    uint64_t n_bytes() const { return n_bytes_; }
    // Bytes of the CPU kernels' packed weight copies (Weight::packed), 0 when none were made.
    uint64_t packed_bytes() const { return packed_bytes_; }

private:
    Model() = default;
    Weight matrix(const std::string& name, int64_t k, int64_t rows, bool required = true);
    std::vector<float> vector(const std::string& name, int64_t n);
    std::vector<float> optional_vector(const std::string& name, int64_t n);  // empty when absent
    // The packed copies of the matrices the CPU kernels pack (when repack_enabled).
    void pack_for_cpu();

    std::unique_ptr<gguf::File> file_;
    HParams hp_;
    Weight tok_embd_, output_;
    std::vector<float> output_norm_;
    std::vector<Layer> layers_;
    std::unique_ptr<Vocab> vocab_;
    uint64_t n_params_ = 0, n_bytes_ = 0;
    std::unique_ptr<uint8_t[]> packed_buf_;  // every Weight::packed, 64-byte aligned within
    uint64_t packed_bytes_ = 0;
    Device device_ = Device::CPU;
    std::string device_note_;
    std::unique_ptr<DeviceModel> device_model_;
};

// Types the CPU matrix kernels run.
bool is_supported_weight_type(TensorType t);

}  // namespace apls
