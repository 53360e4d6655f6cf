// python/arrays.h — NumPy arguments shared by the bindings: typed arrays read in place (a
// std::vector argument would convert them element by element, ~30 us for a plan's three arrays).
#pragma once

#include <pybind11/numpy.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "common.h"

namespace apls_bind {

namespace py = pybind11;

using I32Array = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using U8Array = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

// A 1-D array's elements; throws APLS_STATUS_INVALID_ARGUMENT naming `what` otherwise.
template <typename T>
std::vector<T> to_vec(const py::array_t<T, py::array::c_style | py::array::forcecast>& a, const char* what) {
    if (a.ndim() != 1) apls::fail(APLS_STATUS_INVALID_ARGUMENT, what, " must be 1-D");
    return std::vector<T>(a.data(), a.data() + a.shape(0));
}

}  // namespace apls_bind
