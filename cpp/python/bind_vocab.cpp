// bind_vocab.cpp — the tokenizer seen from Python: _core.Vocab and _core.Utf8Stream.
//
// _core.Vocab wraps apls::Vocab with the default (unique_ptr) holder. Vocab.from_file owns the
// vocabulary it loads; a model binding can hand out its own Vocab through this same class with
// return_value_policy::reference_internal.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "common.h"
#include "gguf.h"
#include "pretokenize.h"
#include "vocab.h"

namespace py = pybind11;
using apls::Vocab;

namespace {

// str -> its UTF-8 bytes (a str with lone surrogates raises UnicodeEncodeError); bytes as is.
std::string text_arg(const py::object& text) {
    if (py::isinstance<py::bytes>(text)) return text.cast<std::string>();
    if (py::isinstance<py::str>(text)) {
        Py_ssize_t n = 0;
        const char* s = PyUnicode_AsUTF8AndSize(text.ptr(), &n);
        if (!s) throw py::error_already_set();
        return std::string(s, static_cast<size_t>(n));
    }
    throw py::type_error("text must be str or bytes");
}

// Python ints of any size; ids outside int32 get the engine's out-of-range error.
std::vector<int32_t> ids_arg(const Vocab& v, const std::vector<int64_t>& ids) {
    std::vector<int32_t> out;
    out.reserve(ids.size());
    for (int64_t id : ids) {
        if (id < 0 || id >= v.n_tokens())
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "token id ", id, " out of range [0, ", v.n_tokens(), ")");
        out.push_back(static_cast<int32_t>(id));
    }
    return out;
}

int32_t id_arg(const Vocab& v, int64_t id) { return ids_arg(v, {id})[0]; }

}  // namespace

void bind_vocab(py::module_& m) {
    py::class_<Vocab>(m, "Vocab", "A model's tokenizer (byte-level BPE or SentencePiece BPE).")
        .def_static(
            "from_file",
            [](const std::string& path) {
                auto f = apls::gguf::File::open(path);
                return Vocab::from_gguf(*f);
            },
            py::arg("path"), "Load the tokenizer of a GGUF file.")
        .def(
            "tokenize",
            [](const Vocab& v, const py::object& text, bool add_special, bool parse_special) {
                std::string s = text_arg(text);
                py::gil_scoped_release nogil;
                return v.tokenize(s, add_special, parse_special);
            },
            py::arg("text"), py::arg("add_special") = true, py::arg("parse_special") = false)
        .def(
            "detokenize",
            [](const Vocab& v, const std::vector<int64_t>& ids, bool special) {
                std::vector<int32_t> t = ids_arg(v, ids);
                std::string s;
                {
                    py::gil_scoped_release nogil;
                    s = v.detokenize(t, special);
                }
                return py::bytes(s);
            },
            py::arg("ids"), py::arg("special") = false)
        .def(
            "token_to_piece",
            [](const Vocab& v, int64_t id, bool special) {
                return py::bytes(v.token_to_piece(id_arg(v, id), special));
            },
            py::arg("id"), py::arg("special") = false)
        .def(
            "is_eog",
            [](const Vocab& v, int64_t id) {
                return id >= 0 && id < v.n_tokens() && v.is_eog(static_cast<int32_t>(id));
            },
            py::arg("id"))
        .def(
            "token_type", [](const Vocab& v, int64_t id) { return v.token_type(id_arg(v, id)); }, py::arg("id"))
        .def_property_readonly("n_tokens", &Vocab::n_tokens)
        .def_property_readonly("bos", &Vocab::bos)
        .def_property_readonly("eos", &Vocab::eos)
        .def_property_readonly("eot", &Vocab::eot)
        .def_property_readonly("unk", &Vocab::unk)
        .def_property_readonly("pad", &Vocab::pad)
        .def_property_readonly("add_bos", &Vocab::add_bos)
        .def_property_readonly("add_eos", &Vocab::add_eos)
        .def_property_readonly("add_space_prefix", &Vocab::add_space_prefix)
        .def_property_readonly("model_name", &Vocab::model_name)
        .def_property_readonly("pre", &Vocab::pre)
        .def("__len__", &Vocab::n_tokens)
        .def("__repr__", [](const Vocab& v) {
            return "<apls._core.Vocab " + v.model_name() + "/" + v.pre() + " with " + std::to_string(v.n_tokens()) +
                   " tokens>";
        });

    // Testing hook: the pre-tokenizer pieces of `text` for a tokenizer.ggml.pre name.
    m.def(
        "_pretokenize",
        [](const std::string& pre, const py::object& text) {
            apls::PreTokenizer type;
            if (!apls::pretokenizer_from_name(pre, &type))
                apls::fail(APLS_STATUS_UNSUPPORTED, "tokenizer.ggml.pre '", pre, "' is not supported");
            std::string s = text_arg(text);
            py::list out;
            for (std::string_view p : apls::pretokenize(type, s)) out.append(py::bytes(p.data(), p.size()));
            return out;
        },
        py::arg("pre"), py::arg("text"));

    py::class_<apls::Utf8Stream>(m, "Utf8Stream", "Bytes in, complete UTF-8 characters out (invalid bytes as U+FFFD).")
        .def(py::init<>())
        .def(
            "push", [](apls::Utf8Stream& s, const py::bytes& b) { return py::str(s.push(b.cast<std::string>())); },
            py::arg("data"))
        .def("flush", [](apls::Utf8Stream& s) { return py::str(s.flush()); });
}
