// bind_sampling.cpp — _core.Sampler: apls::Sampler seen from Python.
//
// Sampler(temperature=..., ...) builds the standard chain; Sampler.chain([("top_k", 40),
// ("temperature", 0.7), ("dist", 1234)]) an explicit one. The GIL stays held: a sampler is not
// thread-safe, and holding the GIL keeps two Python threads from racing on one.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>

#include "common.h"
#include "sampling.h"

namespace py = pybind11;
using apls::Sampler;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

[[noreturn]] void bad_arg(const std::string& msg) { throw apls::Error(APLS_STATUS_INVALID_ARGUMENT, msg); }

// A 1-D logits row and its length as the engine's int32 n_vocab.
int32_t row_len(const FloatArray& logits) {
    if (logits.ndim() != 1) bad_arg(apls::str("logits must be 1-D, got ", logits.ndim(), " dimensions"));
    if (logits.shape(0) > INT32_MAX) bad_arg("logits has more than 2^31-1 entries");
    return static_cast<int32_t>(logits.shape(0));
}

// Argument i of a stage tuple (index 0 is the name), or `def` when the tuple is shorter.
template <typename T>
T stage_arg(const py::tuple& t, size_t i, const std::string& name, const T* def = nullptr) {
    if (i >= t.size()) {
        if (def) return *def;
        bad_arg(apls::str("sampler stage '", name, "' needs argument ", i, " (see Sampler.chain)"));
    }
    try {
        return t[i].cast<T>();
    } catch (const py::cast_error&) {
        bad_arg(apls::str("sampler stage '", name, "' argument ", i,
                          " has the wrong type: ", Py_TYPE(t[i].ptr())->tp_name));
    }
}

void check_arity(const py::tuple& t, const std::string& name, size_t max_args) {
    if (t.size() - 1 > max_args)
        bad_arg(apls::str("sampler stage '", name, "' takes at most ", max_args, " arguments, got ", t.size() - 1));
}

void add_stage(Sampler& s, const py::handle& item) {
    // A bare string is a stage without arguments: "greedy".
    py::tuple t = py::isinstance<py::str>(item) ? py::make_tuple(item) : py::tuple();
    if (!t.size()) {
        if (!py::isinstance<py::tuple>(item) && !py::isinstance<py::list>(item))
            bad_arg("each sampler stage must be a tuple (name, *args)");
        t = py::tuple(py::reinterpret_borrow<py::object>(item));
    }
    if (!t.size() || !py::isinstance<py::str>(t[0])) bad_arg("a sampler stage tuple must start with the stage name");
    const std::string name = t[0].cast<std::string>();
    const int32_t one = 1;
    const float zero = 0.0f;
    const uint64_t seed0 = 0;
    if (name == "penalties") {
        check_arity(t, name, 4);
        s.add_penalties(stage_arg<int32_t>(t, 1, name), stage_arg<float>(t, 2, name),
                        stage_arg<float>(t, 3, name, &zero), stage_arg<float>(t, 4, name, &zero));
    } else if (name == "top_k") {
        check_arity(t, name, 1);
        s.add_top_k(stage_arg<int32_t>(t, 1, name));
    } else if (name == "top_p") {
        check_arity(t, name, 2);
        s.add_top_p(stage_arg<float>(t, 1, name), stage_arg<int32_t>(t, 2, name, &one));
    } else if (name == "min_p") {
        check_arity(t, name, 2);
        s.add_min_p(stage_arg<float>(t, 1, name), stage_arg<int32_t>(t, 2, name, &one));
    } else if (name == "temperature") {
        check_arity(t, name, 1);
        s.add_temperature(stage_arg<float>(t, 1, name));
    } else if (name == "greedy") {
        check_arity(t, name, 0);
        s.add_greedy();
    } else if (name == "dist") {
        check_arity(t, name, 1);
        s.add_dist(stage_arg<uint64_t>(t, 1, name, &seed0));
    } else {
        bad_arg("unknown sampler stage '" + name +
                "' (known: penalties, top_k, top_p, min_p, temperature, greedy, dist)");
    }
}

std::unique_ptr<Sampler> make_chain(const py::list& stages) {
    auto s = std::make_unique<Sampler>();
    for (const py::handle& item : stages) add_stage(*s, item);
    return s;
}

}  // namespace

void bind_sampling(py::module_& m) {
    py::class_<Sampler>(m, "Sampler",
                        "A sampler chain over one logits row: stages (penalties, top_k, top_p, min_p, "
                        "temperature) then a selector (greedy or dist).")
        .def(py::init([](float temperature, int32_t top_k, float top_p, float min_p, float repeat_penalty,
                         float frequency_penalty, float presence_penalty, int32_t penalty_last_n, uint64_t seed) {
                 apls::SamplerParams p;
                 p.temperature = temperature;
                 p.top_k = top_k;
                 p.top_p = top_p;
                 p.min_p = min_p;
                 p.repeat_penalty = repeat_penalty;
                 p.frequency_penalty = frequency_penalty;
                 p.presence_penalty = presence_penalty;
                 p.penalty_last_n = penalty_last_n;
                 p.seed = seed;
                 return std::make_unique<Sampler>(p);
             }),
             py::kw_only(), py::arg("temperature") = 0.8f, py::arg("top_k") = 40, py::arg("top_p") = 0.95f,
             py::arg("min_p") = 0.05f, py::arg("repeat_penalty") = 1.0f, py::arg("frequency_penalty") = 0.0f,
             py::arg("presence_penalty") = 0.0f, py::arg("penalty_last_n") = 64, py::arg("seed") = 0,
             "The standard chain: penalties -> top_k -> top_p -> min_p -> temperature -> dist "
             "(greedy when temperature <= 0).")
        .def_static("chain", &make_chain, py::arg("stages"),
                    "An explicit chain from (name, *args) tuples, selector last: ('penalties', last_n, "
                    "repeat[, frequency[, presence]]), ('top_k', k), ('top_p', p[, min_keep]), "
                    "('min_p', p[, min_keep]), ('temperature', t), ('greedy',), ('dist'[, seed]).")
        .def(
            "sample", [](Sampler& s, const FloatArray& logits) { return s.sample(logits.data(), row_len(logits)); },
            py::arg("logits"), "The chosen token id for one float32 logits row.")
        .def(
            "probs",
            [](Sampler& s, const FloatArray& logits) {
                const int32_t n = row_len(logits);
                py::array_t<float> out(n);
                s.probs(logits.data(), n, out.mutable_data());
                return out;
            },
            py::arg("logits"), "The distribution the selector draws from (zeros for removed tokens).")
        .def_property_readonly("picks_argmax", &Sampler::picks_argmax,
                               "True when the chosen token is always the largest raw logit (greedy, no "
                               "penalties): Context.decode_greedy gives it without the logits.")
        .def("accept", &Sampler::accept, py::arg("token"), "Record a generated token for the penalties.")
        .def("reset", &Sampler::reset, "Clear the token history and reseed.")
        .def_property_readonly("n_vocab", &Sampler::n_vocab)
        .def("__repr__", [](const Sampler& s) { return "<Sampler " + s.describe() + ">"; });
}
