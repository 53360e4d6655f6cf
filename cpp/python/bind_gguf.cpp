// bind_gguf.cpp — the GGUF reader seen from Python: gguf_read (header, metadata, tensor table)
// and gguf_tensor_data (one tensor's raw bytes). Used by tests to compare against gguf-py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>

#include "common.h"
#include "gguf.h"

namespace py = pybind11;
using apls::gguf::File;
using apls::gguf::Value;
using apls::gguf::ValueType;

namespace {

// Text from the file: str when it is valid UTF-8, else the raw bytes (never a decode error).
py::object text_or_bytes(const std::string& s) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "strict");
    if (o) return py::reinterpret_steal<py::object>(o);
    PyErr_Clear();
    return py::bytes(s);
}

// Dict keys and names must be str: undecodable bytes become lone surrogates (round-trippable
// with .encode("utf-8", "surrogateescape")).
py::str text_key(const std::string& s) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "surrogateescape");
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(o);
}

py::object to_python(const Value& v) {
    switch (v.type) {
        case ValueType::U8:
        case ValueType::U16:
        case ValueType::U32:
        case ValueType::U64:
            return py::int_(v.scalar.u);
        case ValueType::I8:
        case ValueType::I16:
        case ValueType::I32:
        case ValueType::I64:
            return py::int_(v.scalar.i);
        case ValueType::F32:
        case ValueType::F64:
            return py::float_(v.scalar.f);
        case ValueType::BOOL:
            return py::bool_(v.scalar.b);
        case ValueType::STRING:
            return text_or_bytes(v.str);
        case ValueType::ARRAY: {
            py::list l(v.arr.size());
            for (size_t i = 0; i < v.arr.size(); i++) l[i] = to_python(v.arr[i]);
            return std::move(l);
        }
    }
    return py::none();
}

py::dict tensor_dict(const apls::gguf::TensorInfo& t) {
    py::dict d;
    d["name"] = text_key(t.name);
    py::list shape;
    for (int64_t ne : t.ne) shape.append(ne);
    d["shape"] = shape;
    d["type"] = apls::type_name(t.type);
    d["offset"] = t.offset;
    d["n_bytes"] = t.n_bytes;
    return d;
}

py::dict gguf_read(const std::string& path, bool use_mmap) {
    std::unique_ptr<File> f = File::open(path, use_mmap);
    py::dict out;
    out["version"] = f->version();
    out["alignment"] = f->alignment();
    out["data_offset"] = f->data_offset();
    py::dict meta, types;
    for (const auto& [key, value] : f->metadata()) {
        py::str k = text_key(key);
        meta[k] = to_python(value);
        types[k] = value.type_string();
    }
    out["metadata"] = meta;
    out["metadata_types"] = types;
    py::list tensors;
    for (const auto& t : f->tensors()) tensors.append(tensor_dict(t));
    out["tensors"] = tensors;
    return out;
}

py::array_t<uint8_t> gguf_tensor_data(const std::string& path, const std::string& name, bool use_mmap) {
    std::unique_ptr<File> f = File::open(path, use_mmap);
    const apls::gguf::TensorInfo* t = f->find_tensor(name);
    if (!t) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "no tensor named '", name, "' in '", path, "'");
    py::array_t<uint8_t> a(static_cast<py::ssize_t>(t->n_bytes));
    if (t->n_bytes) std::memcpy(a.mutable_data(), t->data, t->n_bytes);
    return a;
}

}  // namespace

void bind_gguf(py::module_& m) {
    m.def("gguf_read", &gguf_read, py::arg("path"), py::arg("use_mmap") = true,
          "Validate a GGUF file and return {version, alignment, data_offset, metadata, metadata_types, "
          "tensors}; raises apls.FormatError for malformed files, apls.FileError if unreadable.");
    m.def("gguf_tensor_data", &gguf_tensor_data, py::arg("path"), py::arg("name"), py::arg("use_mmap") = true,
          "The raw bytes of one tensor as a uint8 numpy array (a copy).");
}
