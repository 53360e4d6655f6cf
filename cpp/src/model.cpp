// model.cpp — load a llama-family model from GGUF: resolve every tensor by name, check shapes
// and types, keep views into the mapping (no copies of matrices).
#include "model.h"

#include <cstdlib>
#include <cstring>

#include "common.h"
#include "cpu/kernels.h"
#include "cpu/ops.h"

namespace apls {

uint64_t Weight::row_bytes() const {
    TypeTraits tt = type_traits(type);
    return static_cast<uint64_t>(k) / tt.block * tt.bytes;
}

bool is_supported_weight_type(TensorType t) {
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

Model::~Model() = default;

const char* device_name(Device d) { return d == Device::CUDA ? "cuda" : "cpu"; }

namespace {

// What APLS_DEVICE_AUTO asks for in this process: the environment variable APLS_DEVICE names
// "cpu" or "cuda" (as if the caller had named it); unset, empty or "auto" leaves AUTO. Throws
// APLS_STATUS_INVALID_ARGUMENT for any other value.
int32_t device_from_environment() {
    const char* e = std::getenv("APLS_DEVICE");
    if (!e || !*e || std::strcmp(e, "auto") == 0) return APLS_DEVICE_AUTO;
    if (std::strcmp(e, "cpu") == 0) return APLS_DEVICE_CPU;
    if (std::strcmp(e, "cuda") == 0) return APLS_DEVICE_CUDA;
    fail(APLS_STATUS_INVALID_ARGUMENT, "APLS_DEVICE='", e, "' is not a device (use auto, cpu or cuda)");
}

// APLS_DEVICE_* (apls.h) to a device, before the model is known: AUTO is CUDA when a GPU is
// usable (Model::load then checks that the CUDA backend runs the model). Throws
// APLS_STATUS_INVALID_ARGUMENT for an unknown value.
Device resolve_device(int32_t requested) {
    switch (requested) {
        case APLS_DEVICE_AUTO:
            return cuda::device_count() > 0 ? Device::CUDA : Device::CPU;
        case APLS_DEVICE_CPU:
            return Device::CPU;
        case APLS_DEVICE_CUDA:
            return Device::CUDA;
        default:
            fail(APLS_STATUS_INVALID_ARGUMENT, "unknown device ", requested, " (use APLS_DEVICE_AUTO, _CPU or _CUDA)");
    }
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path, bool use_mmap, int32_t requested_device) {
    // The device asked for: the caller's, or for auto the one APLS_DEVICE names (auto when unset).
    const int32_t named = requested_device == APLS_DEVICE_AUTO ? device_from_environment() : requested_device;
    const bool by_environment = named != requested_device;
    Device device = resolve_device(named);  // an unknown value fails before the file is read
    std::unique_ptr<Model> m(new Model());
    m->file_ = gguf::File::open(path, use_mmap);
    m->hp_ = HParams::from_gguf(*m->file_);
    HParams& hp = m->hp_;

    const gguf::TensorInfo* emb = m->file_->find_tensor(tensor_name(TensorId::TOKEN_EMBD));
    if (!emb) fail(APLS_STATUS_FORMAT, "missing tensor '", tensor_name(TensorId::TOKEN_EMBD), "'");
    if (emb->ne.size() != 2 || emb->ne[1] < 1 || emb->ne[1] > (1 << 24))
        fail(APLS_STATUS_FORMAT, "tensor '", emb->name, "' must be 2-D (n_embd, n_vocab)");
    hp.n_vocab = static_cast<int32_t>(emb->ne[1]);
    const int64_t d = hp.n_embd;
    m->tok_embd_ = m->matrix(tensor_name(TensorId::TOKEN_EMBD), d, hp.n_vocab);
    m->output_norm_ = m->vector(tensor_name(TensorId::OUTPUT_NORM), d);
    m->output_ = m->matrix(tensor_name(TensorId::OUTPUT), d, hp.n_vocab, /*required=*/false);
    if (!m->output_.data) m->output_ = m->tok_embd_;  // tied embeddings

    m->layers_.resize(hp.n_layer);
    for (int i = 0; i < hp.n_layer; ++i) {
        Layer& L = m->layers_[i];
        L.attn_norm = m->vector(tensor_name(TensorId::ATTN_NORM, i), d);
        L.wq = m->matrix(tensor_name(TensorId::ATTN_Q, i), d, hp.q_dim());
        L.wk = m->matrix(tensor_name(TensorId::ATTN_K, i), d, hp.kv_dim());
        L.wv = m->matrix(tensor_name(TensorId::ATTN_V, i), d, hp.kv_dim());
        L.wo = m->matrix(tensor_name(TensorId::ATTN_OUT, i), hp.q_dim(), d);
        L.ffn_norm = m->vector(tensor_name(TensorId::FFN_NORM, i), d);
        L.w_gate = m->matrix(tensor_name(TensorId::FFN_GATE, i), d, hp.n_ff);
        L.w_up = m->matrix(tensor_name(TensorId::FFN_UP, i), d, hp.n_ff);
        L.w_down = m->matrix(tensor_name(TensorId::FFN_DOWN, i), hp.n_ff, d);
        // Per-architecture extras: qwen2 always has q/k/v biases, llama may; qwen3 has q/k norms.
        auto bias = [&](TensorId id, int64_t n) {
            const std::string name = tensor_name(id, i, "bias");
            return hp.arch == Arch::QWEN2 ? m->vector(name, n) : m->optional_vector(name, n);
        };
        L.bq = bias(TensorId::ATTN_Q, hp.q_dim());
        L.bk = bias(TensorId::ATTN_K, hp.kv_dim());
        L.bv = bias(TensorId::ATTN_V, hp.kv_dim());
        if (L.bq.empty() != L.bk.empty() || L.bq.empty() != L.bv.empty())
            fail(APLS_STATUS_FORMAT, "layer ", i, " has biases for some of attn_q, attn_k, attn_v but not all");
        L.bo = m->optional_vector(tensor_name(TensorId::ATTN_OUT, i, "bias"), d);
        if (hp.arch == Arch::QWEN3) {
            L.q_norm = m->vector(tensor_name(TensorId::ATTN_Q_NORM, i), hp.head_dim);
            L.k_norm = m->vector(tensor_name(TensorId::ATTN_K_NORM, i), hp.head_dim);
        }
    }
    if (m->file_->find("tokenizer.ggml.model")) {
        m->vocab_ = Vocab::from_gguf(*m->file_);
        if (m->vocab_->n_tokens() != hp.n_vocab)
            fail(APLS_STATUS_FORMAT, "the tokenizer has ", m->vocab_->n_tokens(), " tokens but '",
                 tensor_name(TensorId::TOKEN_EMBD), "' has ", hp.n_vocab, " rows");
    }
    for (const gguf::TensorInfo& t : m->file_->tensors()) {
        m->n_params_ += t.n_elements;
        m->n_bytes_ += t.n_bytes;
    }
    if (named == APLS_DEVICE_AUTO) {
        if (device == Device::CPU) {
            std::string why = cuda::describe();  // "CUDA: unavailable (reason)", "CUDA: no device"
            if (why.rfind("CUDA: ", 0) == 0) why.erase(0, 6);
            m->device_note_ =
                cuda::compiled() ? "no usable CUDA device: " + why : "this build of APLS has no CUDA backend";
        } else if (std::string why = cuda::unsupported_reason(*m); !why.empty()) {
            device = Device::CPU;
            m->device_note_ = std::move(why);
        }
    }
    if (by_environment) m->device_note_ = std::string("named by APLS_DEVICE=") + device_name(device);
    m->device_ = device;
    if (device == Device::CUDA) m->device_model_ = cuda::upload(*m);
    else m->pack_for_cpu();
    return m;
}

// One allocation for all packed copies; the GGUF bytes stay as they are. Mapped, the pages of a
// packed tensor are dropped from the process once packed (the forward pass no longer reads them;
// anything that does, e.g. the embedding lookup of a tied matrix, maps them again): the packed
// copy takes their place in memory instead of adding to it, up to 48 bytes a row.
void Model::pack_for_cpu() {
    if (!cpu::repack_enabled(cpu::kernels())) return;
    std::vector<Weight*> ws = {&output_};
    for (Layer& L : layers_)
        for (Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) ws.push_back(w);
    const cpu::KernelTable& kt = cpu::kernels();
    auto bytes = [&](const Weight& w) {
        return cpu::packs(kt, w.type) ? (cpu::packed_bytes(w.type, w.k, w.rows) + 63) / 64 * 64 : 0;
    };
    uint64_t total = 0;
    for (const Weight* w : ws) total += bytes(*w);
    if (total == 0) return;
    packed_buf_.reset(new uint8_t[total + 64]);
    uint8_t* p = packed_buf_.get() + (64 - reinterpret_cast<uintptr_t>(packed_buf_.get()) % 64) % 64;
    for (Weight* w : ws) {
        if (const uint64_t b = bytes(*w); b > 0) {
            cpu::pack_rows(w->type, w->data, w->k, w->rows, p);
            file_->release(w->data, w->row_bytes() * w->rows);
            w->packed = p;
            p += b;
        }
    }
    packed_bytes_ = total;
}

const Vocab& Model::require_vocab() const {
    if (!vocab_) fail(APLS_STATUS_UNSUPPORTED, "the model file has no tokenizer (tokenizer.ggml.model is absent)");
    return *vocab_;
}

Weight Model::matrix(const std::string& name, int64_t k, int64_t rows, bool required) {
    const gguf::TensorInfo* t = file_->find_tensor(name);
    if (!t) {
        if (required) fail(APLS_STATUS_FORMAT, "missing tensor '", name, "'");
        return {};
    }
    const int64_t rows_found = t->ne.size() >= 2 ? t->ne[1] : 1;
    bool extra_dims = false;
    for (size_t i = 2; i < t->ne.size(); ++i) extra_dims |= t->ne[i] != 1;
    if (t->ne.empty() || t->ne[0] != k || rows_found != rows || extra_dims)
        fail(APLS_STATUS_FORMAT, "tensor '", name, "' has shape [", t->ne[0], ", ", rows_found, "], expected [", k,
             ", ", rows, "]");
    if (!is_supported_weight_type(t->type))
        fail(APLS_STATUS_UNSUPPORTED, "tensor '", name, "' has type ", type_name(t->type),
             " (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)");
    if (type_traits(t->type).block > 1 && k % type_traits(t->type).block != 0)
        fail(APLS_STATUS_FORMAT, "tensor '", name, "' row length ", k, " is not a multiple of its block size");
    return Weight{name, t->type, t->data, k, rows};
}

std::vector<float> Model::optional_vector(const std::string& name, int64_t n) {
    return file_->find_tensor(name) ? vector(name, n) : std::vector<float>();
}

std::vector<float> Model::vector(const std::string& name, int64_t n) {
    Weight w = matrix(name, n, 1);
    std::vector<float> out(static_cast<size_t>(n));
    cpu::dequantize_row(w.type, w.data, out.data(), n);
    return out;
}

}  // namespace apls
