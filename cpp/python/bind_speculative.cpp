// bind_speculative.cpp — one speculative round for the Python controller.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "arrays.h"
#include "common.h"
#include "context.h"
#include "speculative.h"

namespace py = pybind11;

using apls_bind::I32Array;
using apls_bind::U8Array;

void bind_speculative(py::module_& m) {
    m.def(
        "spec_round",
        [](apls::Context& ctx, int32_t last, std::optional<U8Array> attn, std::optional<U8Array> mlp,
           std::optional<I32Array> group, int32_t head_rows, std::optional<int32_t> view_sink,
           std::optional<int32_t> view_window, int32_t seq, int32_t n_draft_max, float draft_p_min,
           apls::Sampler* sampler) {
            const apls::Plan plan = apls_bind::plan_from_arrays(attn, mlp, group, head_rows);
            apls::KVView view;
            const bool use_view = view_sink.has_value() || view_window.has_value();
            if (use_view) {
                view.n_sink = view_sink.value_or(0);
                view.n_window = view_window.value_or(-1);
            }
            apls::SpecParams p{seq, n_draft_max, draft_p_min};
            apls::SpecResult r;
            {
                py::gil_scoped_release release;
                r = apls::spec_round(ctx, last, plan, use_view ? &view : nullptr, p, sampler);
            }
            py::dict out;
            out["tokens"] = r.tokens;
            out["n_drafted"] = r.n_drafted;
            out["n_accepted"] = r.n_accepted;
            out["draft_conf"] = r.draft_conf;
            out["n_draft_waits"] = r.n_draft_waits;
            out["t_draft_s"] = r.t_draft_s;
            out["t_verify_s"] = r.t_verify_s;
            return out;
        },
        py::arg("ctx"), py::arg("last"), py::arg("attn") = py::none(), py::arg("mlp") = py::none(),
        py::arg("group") = py::none(), py::arg("head_rows") = 0, py::arg("view_sink") = py::none(),
        py::arg("view_window") = py::none(), py::arg("seq") = 0, py::arg("n_draft_max") = 8,
        py::arg("draft_p_min") = 0.0f, py::arg("sampler") = nullptr,
        "One speculative round (see speculative.h): returns tokens (accepted drafts + the verifier's "
        "token) and statistics.");
}
