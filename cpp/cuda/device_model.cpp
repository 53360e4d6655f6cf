// cuda/device_model.cpp — weight upload, and the backend's entry points (device.h).
#include "cuda/device_model.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "context.h"
#include "cuda/launch.h"
#include "cuda/weight_layout.h"

namespace apls::cuda {

[[noreturn]] void cuda_fail(cudaError_t e, const char* call, const char* file, int line) {
    cudaGetLastError();  // clear a sticky launch error so that later calls report their own
    const apls_status st = e == cudaErrorMemoryAllocation ? APLS_STATUS_OUT_OF_MEMORY : APLS_STATUS_INTERNAL;
    fail(st, "CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ") in ", call, " at ", file, ":", line);
}

namespace {
// The device used: APLS_CUDA_DEVICE (an index), else 0.
int chosen_device() {
    const char* e = std::getenv("APLS_CUDA_DEVICE");
    return e ? std::atoi(e) : 0;
}
// Weight types the matrix kernels run.
bool has_kernels(TensorType t) {
    switch (t) {
        case TensorType::F32:
        case TensorType::F16:
        case TensorType::BF16:
        case TensorType::Q8_0:
        case TensorType::Q4_0:
        case TensorType::Q4_1:
        case TensorType::Q5_0:
        case TensorType::Q5_1:
        case TensorType::Q4_K:
        case TensorType::Q5_K:
        case TensorType::Q6_K:
            return true;
        default:
            return false;
    }
}

}  // namespace

bool compiled() { return true; }

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

std::string describe() {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return std::string("CUDA: unavailable (") + cudaGetErrorString(e) + ")";
    }
    if (n == 0) return "CUDA: no device";
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, chosen_device()) != cudaSuccess) return "CUDA: cannot query device";
    return str("CUDA: ", p.name, " (sm_", p.major, p.minor, ", ", p.totalGlobalMem >> 20, " MiB, ",
               p.multiProcessorCount, " SMs; F16 products on ", f16_on_tensor_cores() ? "tensor cores" : "FMA units",
               ")");
}

std::unique_ptr<DeviceModel> upload(const Model& model) {
    const int n = device_count();
    if (n == 0)
        fail(APLS_STATUS_UNSUPPORTED, "device 'cuda' requested but no CUDA device is usable (", describe(), ")");
    if (chosen_device() < 0 || chosen_device() >= n)
        fail(APLS_STATUS_INVALID_ARGUMENT, "APLS_CUDA_DEVICE=", chosen_device(), " but ", n,
             " CUDA devices are present");
    return std::make_unique<CudaModel>(model);
}

std::string unsupported_reason(const Model& model) {
    const HParams& hp = model.hparams();
    // The CUDA forward is the llama one (RMSNorm, NORM-style RoPE, no attention biases or q/k
    // norms): other architectures run on the CPU until their pieces have CUDA kernels.
    bool extras = false;
    for (const Layer& L : model.layers())
        extras |=
            !L.bq.empty() || !L.bk.empty() || !L.bv.empty() || !L.bo.empty() || !L.q_norm.empty() || !L.k_norm.empty();
    if (hp.arch != Arch::LLAMA || hp.rope_style != RopeStyle::NORM || extras)
        return str("the CUDA backend runs llama-architecture models without attention biases or q/k norms, not this ",
                   arch_name(hp.arch), " model");
    if (hp.head_dim % 8 != 0 || hp.head_dim > kMaxAttentionHeadDim)
        return str("the CUDA attention takes head dimensions that are multiples of 8 up to ", kMaxAttentionHeadDim,
                   ", not ", hp.head_dim);
    std::vector<const Weight*> ws = {&model.tok_embd(), &model.output()};
    for (const Layer& L : model.layers())
        for (const Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) ws.push_back(w);
    for (const Weight* w : ws)
        if (!has_kernels(w->type))
            return str("the CUDA backend has no kernels for tensor '", w->name, "' of type ", type_name(w->type),
                       " (it runs F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)");
    return "";
}

CudaModel::CudaModel(const Model& model) {
    const HParams& hp = model.hparams();
    if (const std::string why = unsupported_reason(model); !why.empty())
        fail(APLS_STATUS_UNSUPPORTED, why, ": this model needs device 'cpu'");
    device = chosen_device();
    APLS_CUDA_CHECK(cudaSetDevice(device));
    tok_embd = upload(model.tok_embd());
    output = model.output().data == model.tok_embd().data ? tok_embd : upload(model.output());
    output_norm = upload(model.output_norm());
    layers.resize(hp.n_layer);
    for (int l = 0; l < hp.n_layer; ++l) {
        const Layer& L = model.layers()[l];
        DeviceLayer& D = layers[l];
        D.attn_norm = upload(L.attn_norm);
        D.ffn_norm = upload(L.ffn_norm);
        D.wq = upload(L.wq);
        D.wk = upload(L.wk);
        D.wv = upload(L.wv);
        D.wo = upload(L.wo);
        D.w_gate = upload(L.w_gate);
        D.w_up = upload(L.w_up);
        D.w_down = upload(L.w_down);
    }
    APLS_CUDA_CHECK(cudaDeviceSynchronize());
}

DeviceWeight CudaModel::upload(const Weight& w) {
    if (!has_kernels(w.type))  // unsupported_reason() checked every matrix: a new one was missed there
        fail(APLS_STATUS_INTERNAL, "the CUDA backend has no kernels for tensor '", w.name, "' of type ",
             type_name(w.type));
    const size_t row_bytes = device_row_bytes(w.type, w.k), n = row_bytes * static_cast<size_t>(w.rows);
    DeviceBuffer<uint8_t> buf(n);
    if (quant_split(w.type).quant_bytes == 0) {  // float rows: as in the file
        APLS_CUDA_CHECK(cudaMemcpy(buf.get(), w.data, n, cudaMemcpyHostToDevice));
    } else {  // quantized rows: quants and scales apart (weight_layout.h)
        std::vector<uint8_t> rows(n);
        to_device_rows(w.type, w.data, w.k, w.rows, rows.data());
        APLS_CUDA_CHECK(cudaMemcpy(buf.get(), rows.data(), n, cudaMemcpyHostToDevice));
    }
    DeviceWeight d{w.type, buf.get(), w.k, w.rows, row_bytes};
    bytes_ += n;
    buffers_.push_back(std::move(buf));
    return d;
}

const float* CudaModel::upload(const std::vector<float>& v) {
    DeviceBuffer<uint8_t> buf(v.size() * sizeof(float));
    APLS_CUDA_CHECK(cudaMemcpy(buf.get(), v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice));
    const float* p = reinterpret_cast<const float*>(buf.get());
    bytes_ += v.size() * sizeof(float);
    buffers_.push_back(std::move(buf));
    return p;
}

}  // namespace apls::cuda
