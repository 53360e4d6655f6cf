// module.cpp — the apls._core extension: one bind_<area>() per area, no logic here.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_errors(py::module_& m);
void bind_gguf(py::module_& m);
void bind_kernels(py::module_& m);
void bind_model(py::module_& m);
void bind_plan(py::module_& m);
void bind_sampling(py::module_& m);
void bind_vocab(py::module_& m);
void bind_speculative(py::module_& m);
void bind_draft(py::module_& m);
void bind_quantize(py::module_& m);

PYBIND11_MODULE(_core, m) {
    m.doc() = "APLS engine core (C++). Use the `apls` package rather than this module directly.";
    bind_errors(m);
    bind_gguf(m);
    bind_kernels(m);
    bind_plan(m);
    bind_model(m);
    bind_sampling(m);
    bind_vocab(m);
    bind_speculative(m);
    bind_draft(m);
    bind_quantize(m);
}
