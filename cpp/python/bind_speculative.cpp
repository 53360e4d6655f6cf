// bind_speculative.cpp — one speculative round for the Python controller (apls_spec_round).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "common.h"
#include "context.h"
#include "speculative.h"

namespace py = pybind11;

void bind_speculative(py::module_& m) {
    m.def(
        "spec_round",
        [](apls::Context& ctx, int32_t last, const apls::Plan* plan, const apls::KVView* view, int32_t seq,
           int32_t n_draft_max, float draft_p_min, apls::Sampler* sampler) {
            static const apls::Plan full;
            const apls::SpecParams p{seq, n_draft_max, draft_p_min};
            apls::SpecResult r;
            {
                py::gil_scoped_release release;
                r = apls::spec_round(ctx, last, plan ? *plan : full, view, p, sampler);
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
        py::arg("ctx"), py::arg("last"), py::arg("plan") = py::none(), py::arg("view") = py::none(), py::arg("seq") = 0,
        py::arg("n_draft_max") = 8, py::arg("draft_p_min") = 0.0f, py::arg("sampler") = nullptr,
        "One speculative round (speculative.h): draft from `last` under `plan` (None: the full model) with "
        "attention restricted to `view` (None: the whole cache), verify with the full model, accept. Returns "
        "a dict: tokens (accepted drafts + the verifier's token) and statistics.");
}
