// bind_quantize.cpp — row quantization (quantize.h) and the engine's dequantization
// (cpu::dequantize_row) for apls.quantize and the tests.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "common.h"
#include "cpu/ops.h"
#include "ggml_types.h"
#include "quantize.h"

namespace py = pybind11;
using apls::TensorType;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using ByteArray = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

TensorType type_by_name(const std::string& name) {
    for (uint32_t id = 0; id < 64; ++id) {
        const apls::TypeTraits tt = apls::type_traits(id);
        if (tt.name && name == tt.name) return static_cast<TensorType>(id);
    }
    apls::fail(APLS_STATUS_INVALID_ARGUMENT, "unknown tensor type '", name, "'");
}

// x: (n_rows, k) float32 -> (n_rows, row_bytes) uint8.
py::array_t<uint8_t> quantize_rows(const std::string& type_name, FloatArray x, int n_threads) {
    const TensorType t = type_by_name(type_name);
    if (x.ndim() != 2) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "quantize_rows: x must be 2-D (n_rows, k)");
    const int64_t n_rows = x.shape(0), k = x.shape(1);
    if (!apls::can_quantize(t)) apls::quantize_row(t, nullptr, nullptr, k);  // throws, naming the type
    const apls::TypeTraits tt = apls::type_traits(t);
    if (k <= 0 || k % tt.block != 0) apls::quantize_row(t, nullptr, nullptr, k);  // throws, naming k
    py::array_t<uint8_t> y({n_rows, k / tt.block * tt.bytes});
    {
        py::gil_scoped_release nogil;
        apls::quantize_rows(t, x.data(), n_rows, k, y.mutable_data(), n_threads);
    }
    return y;
}

// data: n_rows rows of row_bytes(type, k) bytes -> (n_rows, k) float32.
py::array_t<float> dequantize_rows(const std::string& type_name, ByteArray data, int64_t k) {
    const TensorType t = type_by_name(type_name);
    const apls::TypeTraits tt = apls::type_traits(t);
    if (k <= 0 || k % tt.block != 0)
        apls::fail(APLS_STATUS_INVALID_ARGUMENT, "dequantize_rows: k=", k, " is not a multiple of ", tt.block);
    const uint64_t rb = static_cast<uint64_t>(k) / tt.block * tt.bytes;
    if (static_cast<uint64_t>(data.size()) % rb != 0)
        apls::fail(APLS_STATUS_INVALID_ARGUMENT, "dequantize_rows: ", data.size(),
                   " bytes is not a whole number of rows");
    const int64_t n_rows = static_cast<int64_t>(static_cast<uint64_t>(data.size()) / rb);
    py::array_t<float> y({n_rows, k});
    for (int64_t r = 0; r < n_rows; ++r) apls::cpu::dequantize_row(t, data.data() + r * rb, y.mutable_data(r, 0), k);
    return y;
}

}  // namespace

void bind_quantize(py::module_& m) {
    m.def("quantize_rows", &quantize_rows, py::arg("type_name"), py::arg("x"), py::arg("n_threads") = 1,
          "Quantize x (n_rows, k) float32 to `type_name`: (n_rows, row_bytes) uint8 in the GGUF block layout.");
    m.def("dequantize_rows", &dequantize_rows, py::arg("type_name"), py::arg("data"), py::arg("k"),
          "The engine's dequantization of rows of k elements: (n_rows, k) float32.");
    m.def(
        "type_row_size",
        [](const std::string& type_name, int64_t k) {
            const apls::TypeTraits tt = apls::type_traits(type_by_name(type_name));
            if (k <= 0 || k % tt.block != 0)
                apls::fail(APLS_STATUS_INVALID_ARGUMENT, "a row of ", k, " elements is not a whole number of ", tt.name,
                           " blocks");
            return static_cast<uint64_t>(k) / tt.block * tt.bytes;
        },
        py::arg("type_name"), py::arg("k"), "Bytes of one row of k elements in the type.");
    m.def(
        "quantize_types",
        [] {
            py::list out;
            for (uint32_t id = 0; id < 64; ++id)
                if (apls::type_traits(id).name && apls::can_quantize(static_cast<TensorType>(id)))
                    out.append(apls::type_traits(id).name);
            return out;
        },
        "Type names quantize_rows can write.");
}
