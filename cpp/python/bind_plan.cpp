// bind_plan.cpp — the two objects a decode call takes besides its batch: a layer plan
// (apls._core.Plan, plan.h / apls_plan) and a KV view (apls._core.KVView, kv_cache.h / apls_kv_view).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <sstream>

#include "arrays.h"
#include "common.h"
#include "kv_cache.h"
#include "plan.h"

namespace py = pybind11;

using apls_bind::I32Array;
using apls_bind::to_vec;
using apls_bind::U8Array;

namespace {

apls::Plan make_plan(std::optional<U8Array> attn, std::optional<U8Array> mlp, std::optional<I32Array> group,
                     int32_t head_rows) {
    apls::Plan plan;
    if (attn) plan.attn = to_vec(*attn, "attn");
    if (mlp) plan.mlp = to_vec(*mlp, "mlp");
    if (group) plan.group = to_vec(*group, "group");
    plan.head_rows = head_rows;
    return plan;
}

apls::KVView make_view(int32_t n_sink, int32_t n_window, std::optional<I32Array> positions) {
    apls::KVView view;
    view.n_sink = n_sink;
    view.n_window = n_window;
    if (positions) {
        view.positions = to_vec(*positions, "positions");
        // An empty list would read as "sinks + window" in kv_cache.h: refuse it instead.
        if (view.positions.empty())
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "an explicit view needs at least one position");
    }
    return view;
}

std::string view_repr(const apls::KVView& v) {
    std::ostringstream s;
    if (v.explicit_list()) {
        s << "KVView(positions=[";
        for (size_t i = 0; i < v.positions.size(); ++i) s << (i ? ", " : "") << v.positions[i];
        s << "])";
    } else {
        s << "KVView(n_sink=" << v.n_sink << ", n_window=" << v.n_window << ")";
    }
    return s.str();
}

}  // namespace

void bind_plan(py::module_& m) {
    py::class_<apls::Plan>(m, "Plan",
                           "A layer plan as the engine runs it (apls_plan): per-layer switches, built by "
                           "apls.Plan.layers(n_layer). Checked against the model by decode and spec_round.")
        .def(py::init(&make_plan), py::arg("attn") = py::none(), py::arg("mlp") = py::none(),
             py::arg("group") = py::none(), py::arg("head_rows") = 0,
             "attn, mlp: (n_layer) 1 = the sub-block runs (None: all run); group: (n_layer) parallel group "
             "id, -1 = none (None: no groups); head_rows: output head restricted to ids < head_rows (0: all).")
        .def_readonly("attn", &apls::Plan::attn)
        .def_readonly("mlp", &apls::Plan::mlp)
        .def_readonly("group", &apls::Plan::group)
        .def_readonly("head_rows", &apls::Plan::head_rows);

    py::class_<apls::KVView>(m, "KVView",
                             "What attention sees of the entries cached before a decode call (apls_kv_view); the "
                             "call's own tokens are always seen causally and are appended to the cache as usual.\n\n"
                             "Either sinks + window: a query at position p sees positions < n_sink and positions "
                             "in (p - n_window, p] (n_window < 0: no limit); or `positions`: exactly those cached "
                             "positions (strictly increasing; each must be in the cache, else "
                             "InvalidArgumentError at decode).")
        .def(py::init(&make_view), py::arg("n_sink") = 0, py::arg("n_window") = -1, py::arg("positions") = py::none())
        .def_static(
            "sinks_window", [](int32_t n_sink, int32_t n_window) { return make_view(n_sink, n_window, std::nullopt); },
            py::arg("n_sink"), py::arg("n_window"), "Positions < n_sink and the last n_window positions.")
        .def_static(
            "explicit", [](const I32Array& positions) { return make_view(0, -1, positions); }, py::arg("positions"),
            "Exactly these cached positions (strictly increasing, at least one).")
        .def_readonly("n_sink", &apls::KVView::n_sink)
        .def_readonly("n_window", &apls::KVView::n_window)
        .def_readonly("positions", &apls::KVView::positions, "The explicit positions ([] for sinks + window).")
        .def("__eq__",
             [](const apls::KVView& a, const apls::KVView& b) {
                 return a.n_sink == b.n_sink && a.n_window == b.n_window && a.positions == b.positions;
             })
        .def("__repr__", &view_repr);
}
