// bind_errors.cpp — engine errors become Python exceptions carrying the engine's message:
// apls.AplsError and one subclass per apls_status (FormatError, UnsupportedError, ...).
#include <pybind11/pybind11.h>

#include "common.h"

namespace py = pybind11;

namespace {
PyObject* g_classes[8] = {};
}

void bind_errors(py::module_& m) {
    py::object base =
        py::reinterpret_steal<py::object>(PyErr_NewException("apls._core.AplsError", PyExc_RuntimeError, nullptr));
    m.attr("AplsError") = base;
    struct Sub {
        apls_status s;
        const char* name;
        PyObject* extra;
    };
    const Sub subs[] = {
        {APLS_STATUS_INVALID_ARGUMENT, "InvalidArgumentError", PyExc_ValueError},
        {APLS_STATUS_IO, "FileError", PyExc_OSError},
        {APLS_STATUS_FORMAT, "FormatError", nullptr},
        {APLS_STATUS_UNSUPPORTED, "UnsupportedError", nullptr},
        {APLS_STATUS_OUT_OF_MEMORY, "OutOfMemoryError", PyExc_MemoryError},
        {APLS_STATUS_KV_FULL, "KVCacheFullError", nullptr},
        {APLS_STATUS_INTERNAL, "InternalError", nullptr},
    };
    g_classes[0] = base.inc_ref().ptr();
    for (const Sub& sub : subs) {
        py::tuple bases =
            sub.extra ? py::tuple(py::make_tuple(base, py::handle(sub.extra))) : py::tuple(py::make_tuple(base));
        py::object cls = py::reinterpret_steal<py::object>(
            PyErr_NewException((std::string("apls._core.") + sub.name).c_str(), bases.ptr(), nullptr));
        m.attr(sub.name) = cls;
        g_classes[sub.s] = cls.inc_ref().ptr();
    }
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const apls::Error& e) {
            int s = static_cast<int>(e.status());
            PyObject* cls = (s > 0 && s < 8 && g_classes[s]) ? g_classes[s] : g_classes[0];
            PyErr_SetString(cls, e.what());
        }
    });
}
