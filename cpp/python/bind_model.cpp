// bind_model.cpp — Model and Context for Python (thin: argument conversion only).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <algorithm>

#include <optional>

#include "arrays.h"
#include "common.h"
#include "context.h"
#include "cpu/cores.h"
#include "cpu/kernels.h"
#include "model.h"

namespace py = pybind11;
using apls::Context;
using apls::Model;

namespace {

using apls_bind::I32Array;
using apls_bind::to_vec;
using apls_bind::U8Array;

int32_t parse_device(const std::string& device) {
    if (device == "auto") return APLS_DEVICE_AUTO;
    if (device == "cpu") return APLS_DEVICE_CPU;
    if (device == "cuda" || device == "gpu") return APLS_DEVICE_CUDA;
    apls::fail(APLS_STATUS_INVALID_ARGUMENT, "device must be 'auto', 'cpu' or 'cuda', not '", device, "'");
}

std::shared_ptr<Model> load_model(const std::string& path, bool use_mmap, const std::string& device) {
    const int32_t d = parse_device(device);
    py::gil_scoped_release release;
    return std::shared_ptr<Model>(Model::load(path, use_mmap, d).release());
}

std::unique_ptr<Context> make_context(std::shared_ptr<Model> model, uint32_t n_ctx, uint32_t n_batch, int32_t n_threads,
                                      uint32_t n_seq_max, uint32_t kv_block_size, const std::string& kv_type) {
    apls_context_params p = apls_context_default_params();
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.n_threads = n_threads;
    p.n_seq_max = n_seq_max;
    p.kv_block_size = kv_block_size;
    if (kv_type == "f16") p.kv_type = APLS_KV_TYPE_F16;
    else if (kv_type == "f32") p.kv_type = APLS_KV_TYPE_F32;
    else apls::fail(APLS_STATUS_INVALID_ARGUMENT, "kv_type must be 'f16' or 'f32', not '", kv_type, "'");
    return std::make_unique<Context>(*model, p);
}

// The forward of decode(tokens, pos=None, seq_ids=None, logits="last"|"all"|mask, plan=None,
// view=None, parent=None); plan nullptr: the full model; view nullptr: attention sees the whole
// cache; parent: a token tree (apls_batch.parent).
void run_decode(Context& ctx, const I32Array& tokens, std::optional<I32Array> pos, std::optional<I32Array> seq_ids,
                py::object logits, const apls::Plan* plan, const apls::KVView* view,
                std::optional<I32Array> parent = std::nullopt, const std::vector<bool>* fetch = nullptr) {
    const std::vector<int32_t> tok = to_vec(tokens, "tokens");
    const int32_t n = static_cast<int32_t>(tok.size());
    std::vector<int32_t> pv, sv, par;
    std::vector<int8_t> lv;
    apls_batch b{n, tok.data(), nullptr, nullptr, nullptr, nullptr};
    if (parent) {
        par = to_vec(*parent, "parent");
        if (static_cast<int32_t>(par.size()) != n)
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "parent has ", par.size(), " entries for ", n, " tokens");
        b.parent = par.data();
    }
    if (pos) {
        pv = to_vec(*pos, "pos");
        if (static_cast<int32_t>(pv.size()) != n)
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "pos has ", pv.size(), " entries for ", n, " tokens");
        b.pos = pv.data();
    }
    if (seq_ids) {
        sv = to_vec(*seq_ids, "seq_ids");
        if (static_cast<int32_t>(sv.size()) != n)
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "seq_ids has ", sv.size(), " entries for ", n, " tokens");
        b.seq_id = sv.data();
    }
    if (py::isinstance<py::str>(logits)) {
        const std::string mode = logits.cast<std::string>();
        if (mode == "all") lv.assign(n, 1);
        else if (mode != "last")
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "logits must be 'last', 'all' or a mask, not '", mode, "'");
    } else {
        U8Array mask = logits.cast<U8Array>();
        if (mask.ndim() != 1 || mask.shape(0) != n)
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "logits mask must have one entry per token");
        lv.assign(mask.data(), mask.data() + n);
    }
    if (!lv.empty()) b.logits = lv.data();
    if (fetch) {  // decode_choose: one flag per output row, checked before anything is decoded
        const size_t rows =
            lv.empty() ? 1 : static_cast<size_t>(std::count_if(lv.begin(), lv.end(), [](int8_t x) { return x != 0; }));
        if (fetch->size() != rows)
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "fetch has ", fetch->size(), " entries for ", rows,
                       " output rows");
    }

    static const apls::Plan full;
    if (!plan) plan = &full;
    plan->validate(ctx.model().hparams().n_layer, ctx.model().hparams().n_vocab);
    {
        apls::Batch batch = ctx.make_batch(b);
        py::gil_scoped_release release;
        ctx.decode(batch, *plan, view);
    }
}

// run_decode, then the logits: float32 (n_outputs, n_vocab).
py::array_t<float> decode(Context& ctx, const I32Array& tokens, std::optional<I32Array> pos,
                          std::optional<I32Array> seq_ids, py::object logits, const apls::Plan* plan,
                          const apls::KVView* view, std::optional<I32Array> parent = std::nullopt) {
    run_decode(ctx, tokens, pos, seq_ids, logits, plan, view, parent);
    const int64_t rows = ctx.n_outputs(), n_vocab = ctx.model().hparams().n_vocab;
    py::array_t<float> out({rows, n_vocab});
    std::memcpy(out.mutable_data(), ctx.logits(), static_cast<size_t>(rows * n_vocab) * sizeof(float));
    return out;
}

}  // namespace

void bind_model(py::module_& m) {
    m.def("version", [] { return std::string(apls_version()); });
    m.def("cpu_isa", [] { return std::string(apls::cpu::kernels().isa); });
    m.def("cuda_compiled", &apls::cuda::compiled, "True when this build has the CUDA backend.");
    m.def("cuda_device_count", &apls::cuda::device_count, "Usable CUDA devices (0 without the backend or a GPU).");
    m.def(
        "physical_cores", [] { return apls::cpu::physical_cores(); },
        "Default worker threads: physical cores of the CPU affinity, capped by the cgroup CPU quota.");
    m.def("cuda_describe", &apls::cuda::describe, "The CUDA device in use, or why CUDA is unavailable.");

    py::class_<Model, std::shared_ptr<Model>>(m, "Model")
        .def(py::init(&load_model), py::arg("path"), py::arg("use_mmap") = true, py::arg("device") = "auto")
        .def_property_readonly("device", [](const Model& x) { return std::string(apls::device_name(x.device())); })
        .def_property_readonly(
            "device_note", [](const Model& x) { return x.device_note(); },
            "Why device 'auto' chose the CPU ('' when it chose CUDA or a device was named).")
        .def_property_readonly("n_vocab", [](const Model& x) { return x.hparams().n_vocab; })
        .def_property_readonly("n_layer", [](const Model& x) { return x.hparams().n_layer; })
        .def_property_readonly("n_embd", [](const Model& x) { return x.hparams().n_embd; })
        .def_property_readonly("n_ff", [](const Model& x) { return x.hparams().n_ff; })
        .def_property_readonly("n_head", [](const Model& x) { return x.hparams().n_head; })
        .def_property_readonly("n_head_kv", [](const Model& x) { return x.hparams().n_head_kv; })
        .def_property_readonly("n_ctx_train", [](const Model& x) { return x.hparams().n_ctx_train; })
        .def_property_readonly("n_params", &Model::n_params)
        .def_property_readonly("size", &Model::n_bytes)
        .def_property_readonly("arch", [](const Model& x) { return std::string(apls::arch_name(x.hparams().arch)); })
        .def_property_readonly("path", [](const Model& x) { return x.file().path(); })
        .def_property_readonly("vocab", &Model::vocab, py::return_value_policy::reference_internal,
                               "The model's tokenizer (apls._core.Vocab), or None if the file has none.")
        .def(
            "meta",
            [](const Model& x, const std::string& key) -> py::object {
                const apls::gguf::Value* v = x.file().find(key);
                if (!v || v->type != apls::gguf::ValueType::STRING) return py::none();
                return py::str(v->str);
            },
            py::arg("key"), "A string metadata value, or None.");

    py::class_<Context>(m, "Context")
        .def(py::init(&make_context), py::arg("model"), py::arg("n_ctx") = 0, py::arg("n_batch") = 512,
             py::arg("n_threads") = 0, py::arg("n_seq_max") = 1, py::arg("kv_block_size") = 16,
             py::arg("kv_type") = "f16", py::keep_alive<1, 2>())
        .def("decode", &decode, py::arg("tokens"), py::arg("pos") = py::none(), py::arg("seq_ids") = py::none(),
             py::arg("logits") = "last", py::arg("plan") = py::none(), py::arg("view") = py::none(),
             py::arg("parent") = py::none(),
             "Decode a batch under a plan (None: the full model) with attention restricted to a view (None: "
             "the whole cache); parent: a token tree of one sequence (each token's parent batch index, -1 for "
             "a root; apls_batch.parent). Returns float32 logits (n_outputs, n_vocab).")
        .def(
            "decode_greedy",
            [](Context& ctx, const I32Array& tokens, std::optional<I32Array> pos, std::optional<I32Array> seq_ids) {
                run_decode(ctx, tokens, pos, seq_ids, py::str("last"), nullptr, nullptr);
                return ctx.argmax(ctx.n_outputs() - 1);
            },
            py::arg("tokens"), py::arg("pos") = py::none(), py::arg("seq_ids") = py::none(),
            "decode(tokens) and the greedy choice after the last token (largest logit, ties to the lowest "
            "id); on a GPU chosen there, so the logits are not copied back.")
        .def(
            "decode_choose",
            [](Context& ctx, const I32Array& tokens, const std::vector<bool>& fetch, std::optional<I32Array> pos,
               std::optional<I32Array> seq_ids, py::object logits, std::optional<I32Array> parent) {
                run_decode(ctx, tokens, pos, seq_ids, logits, nullptr, nullptr, parent, &fetch);
                const int32_t rows = ctx.n_outputs();
                const int64_t n_vocab = ctx.model().hparams().n_vocab;
                std::vector<int32_t> ids(static_cast<size_t>(rows));
                for (int32_t r = 0; r < rows; ++r) ids[r] = ctx.argmax(r);
                int64_t n_fetch = 0;
                for (bool f : fetch) n_fetch += f;
                py::array_t<float> out({n_fetch, n_vocab});
                if (n_fetch > 0) {
                    const float* all = ctx.logits();
                    float* dst = out.mutable_data();
                    for (int32_t r = 0; r < rows; ++r)
                        if (fetch[r]) {
                            std::memcpy(dst, all + r * n_vocab, static_cast<size_t>(n_vocab) * sizeof(float));
                            dst += n_vocab;
                        }
                }
                return py::make_tuple(ids, out);
            },
            py::arg("tokens"), py::arg("fetch"), py::arg("pos") = py::none(), py::arg("seq_ids") = py::none(),
            py::arg("logits") = "last", py::arg("parent") = py::none(),
            "decode, then the greedy choice of every output row (largest logit, ties to the lowest id; on a GPU "
            "chosen there) and the logits of the output rows `fetch` marks: (ids, float32 (n_fetched, n_vocab)). "
            "No logits are copied back when none is marked. parent: a token tree, as for decode.")
        .def(
            "top_k",
            [](const Context& ctx, int32_t k) {
                const int32_t rows = ctx.n_outputs();
                py::array_t<int32_t> out({static_cast<int64_t>(rows), static_cast<int64_t>(std::max(k, 0))});
                {
                    py::gil_scoped_release release;
                    ctx.top_k(k, out.mutable_data());
                }
                return out;
            },
            py::arg("k"),
            "The k best ids of every output row of the last decode, int32 (n_outputs, k): largest logit "
            "first, ties to the lowest id; on a GPU picked there (the logits are not copied back).")
        .def(
            "generate_greedy",
            [](Context& ctx, int32_t last, int32_t n_max, int32_t seq, bool stop_at_eog) {
                std::vector<int32_t> ids;
                {
                    py::gil_scoped_release release;
                    ids = ctx.generate_greedy(seq, last, n_max, stop_at_eog);
                }
                return ids;
            },
            py::arg("last"), py::arg("n_max"), py::arg("seq") = 0, py::arg("stop_at_eog") = true,
            "Greedy generation after `last` (chosen, not yet decoded): up to n_max tokens with the full "
            "model, ending after an end-of-generation token when stop_at_eog; on a GPU queued as one chain "
            "(apls_generate_greedy).")
        .def_property_readonly("n_ctx", [](const Context& c) { return c.params().n_ctx; })
        .def_property_readonly("n_batch", [](const Context& c) { return c.params().n_batch; })
        .def_property_readonly("n_threads", [](Context& c) { return c.n_threads(); })
        .def(
            "kv_seq_len",
            [](const Context& c, int32_t seq) {
                if (!c.kv().valid_seq(seq)) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "unknown sequence ", seq);
                return c.kv().seq_len(seq);
            },
            py::arg("seq"))
        .def(
            "kv_truncate",
            [](Context& c, int32_t seq, int32_t n) {
                if (!c.kv().valid_seq(seq)) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "unknown sequence ", seq);
                c.kv().truncate(seq, n);
            },
            py::arg("seq"), py::arg("n"))
        .def("kv_clear", [](Context& c) { c.kv().clear(); })
        // ---- KV cache operations (kv_cache.h; Python facade: apls/kv.py) ----
        .def(
            "kv_delete",
            [](Context& c, int32_t seq, int32_t p0, int32_t p1, bool shift) { c.kv().seq_delete(seq, p0, p1, shift); },
            py::arg("seq"), py::arg("p0"), py::arg("p1"), py::arg("shift") = false)
        .def(
            "kv_fork", [](Context& c, int32_t src, int32_t dst) { c.kv().fork(src, dst); }, py::arg("src"),
            py::arg("dst"))
        .def(
            "kv_keep", [](Context& c, int32_t seq) { c.kv().keep(seq); }, py::arg("seq"))
        .def(
            "kv_keep_path",
            [](Context& c, int32_t seq, int32_t n_keep, const I32Array& entries) {
                const std::vector<int32_t> e = to_vec(entries, "entries");
                c.kv().keep_path(seq, n_keep, e.data(), static_cast<int32_t>(e.size()));
            },
            py::arg("seq"), py::arg("n_keep"), py::arg("entries"),
            "After a tree decode: keep entries [0, n_keep) and the accepted path `entries` (apls_kv_seq_keep_path).")
        .def(
            "kv_clear_seq", [](Context& c, int32_t seq) { c.kv().clear_seq(seq); }, py::arg("seq"))
        .def(
            "kv_pos_min",
            [](const Context& c, int32_t seq) {
                if (!c.kv().valid_seq(seq)) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "unknown sequence ", seq);
                return c.kv().seq_pos_min(seq);
            },
            py::arg("seq"))
        .def(
            "kv_pos_max",
            [](const Context& c, int32_t seq) {
                if (!c.kv().valid_seq(seq)) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "unknown sequence ", seq);
                return c.kv().seq_pos_max(seq);
            },
            py::arg("seq"))
        .def(
            "kv_positions",
            [](const Context& c, int32_t seq) {  // positions in entry order (debug)
                if (!c.kv().valid_seq(seq)) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "unknown sequence ", seq);
                std::vector<int32_t> p(c.kv().seq_len(seq));
                for (int32_t j = 0; j < static_cast<int32_t>(p.size()); ++j) p[j] = c.kv().entry_pos(seq, j);
                return p;
            },
            py::arg("seq"))
        .def("kv_block_tables",
             [](const Context& c) {  // debug: every sequence's block table
                 std::vector<std::vector<int32_t>> t;
                 for (uint32_t s = 0; s < c.kv().n_seq_max(); ++s)
                     t.push_back(c.kv().block_table(static_cast<int32_t>(s)));
                 return t;
             })
        .def("kv_stats",
             [](const Context& c) {
                 const apls::KVStats s = c.kv().stats();
                 py::dict d;
                 d["n_blocks"] = s.n_blocks, d["block_size"] = s.block_size, d["blocks_used"] = s.blocks_used;
                 d["blocks_free"] = s.blocks_free, d["blocks_shared"] = s.blocks_shared, d["n_seq_used"] = s.n_seq_used;
                 d["tokens"] = s.tokens, d["entries"] = s.entries, d["holes"] = s.holes;
                 d["fragmentation"] = s.fragmentation;
                 return d;
             })
        .def_property_readonly("n_seq_max", [](const Context& c) { return c.kv().n_seq_max(); })
        .def_property_readonly("kv_block_size", [](const Context& c) { return c.kv().block_size(); })
        .def("kv_check", [](const Context& c) { c.kv().check_invariants(); });
}
