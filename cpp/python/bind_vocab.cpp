// bind_vocab.cpp — pending.
#include <pybind11/pybind11.h>
namespace py = pybind11;
void bind_vocab(py::module_& m) {}
