// bind_draft.cpp — token-tree speculative decoding for the Python controller: the drafter (its
// text and tables), the round's parameters, and one round (speculative_tree.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "arrays.h"
#include "common.h"
#include "context.h"
#include "draft/drafter.h"
#include "speculative_tree.h"

namespace py = pybind11;

using apls::TreeParams;
using apls::draft::Drafter;
using apls::draft::Source;
using apls::draft::TokenTree;
using apls_bind::I32Array;

namespace {

py::dict result_dict(const apls::TreeResult& r) {
    py::dict out;
    out["tokens"] = r.tokens;
    out["n_plain_steps"] = r.n_plain_steps;
    out["n_candidates"] = r.n_candidates;
    out["n_drafted"] = r.n_drafted;
    out["n_accepted"] = r.n_accepted;
    out["n_skip_drafted"] = r.n_skip_drafted;
    out["drafted_by"] = r.drafted_by;
    out["accepted_by"] = r.accepted_by;
    out["draft_conf"] = r.draft_conf;
    out["n_draft_waits"] = r.n_draft_waits;
    out["t_draft_s"] = r.t_draft_s;
    out["t_verify_s"] = r.t_verify_s;
    out["t_plain_s"] = r.t_plain_s;
    out["t_host_s"] = r.t_host_s;
    py::list steps;
    for (const apls::TreeStep& st : r.steps)
        steps.append(py::make_tuple(st.n_plain_steps, st.n_drafted, st.n_accepted, st.t_verify_s, st.t_plain_s));
    out["steps"] = steps;
    return out;
}

void bind_drafter(py::module_& m) {
    py::class_<Drafter>(m, "Drafter",
                        "The draft sources of one generation session (draft/drafter.h): the current text, "
                        "prompt lookup's n-gram index, the suffix automaton over the session's texts, token "
                        "recycling's successor table and the measured acceptance of each source.")
        .def(py::init([](const apls::Model& model) { return new Drafter(model.hparams().n_vocab); }), py::arg("model"))
        .def(
            "start",
            [](Drafter& d, const I32Array& ids) {
                const std::vector<int32_t> v = apls_bind::to_vec(ids, "tokens");
                d.start(v.data(), static_cast<int32_t>(v.size()));
            },
            py::arg("tokens"), "A new text (the prompt); the suffix index keeps the session's earlier texts.")
        .def(
            "append",
            [](Drafter& d, const I32Array& ids) {
                const std::vector<int32_t> v = apls_bind::to_vec(ids, "tokens");
                d.append(v.data(), static_cast<int32_t>(v.size()));
            },
            py::arg("tokens"), "Tokens generated outside the rounds (the first one) join the text.")
        .def("reset", &Drafter::reset, "Forget the session's texts and the successor and acceptance tables.")
        .def_property_readonly("text", [](const Drafter& d) { return d.text(); })
        .def(
            "recycle",
            [](Drafter& d, int32_t token, const py::array_t<float, py::array::c_style | py::array::forcecast>& row) {
                if (row.ndim() != 1 || row.shape(0) != d.n_vocab())
                    apls::fail(APLS_STATUS_INVALID_ARGUMENT, "logits must be a row of n_vocab ", d.n_vocab(),
                               " floats");
                d.recycle(token, row.data());
            },
            py::arg("token"), py::arg("logits"),
            "The verifier's logits after `token`: their top k become its successors (a round does this itself).")
        .def(
            "learn",
            [](Drafter& d, const TokenTree& tree, const std::vector<int32_t>& path) {
                for (size_t i = 0; i < path.size(); ++i) {
                    const int32_t want_parent = i ? path[i - 1] : TokenTree::kRoot;
                    if (path[i] < 0 || path[i] >= tree.size() || tree.node(path[i]).parent != want_parent)
                        apls::fail(APLS_STATUS_INVALID_ARGUMENT, "path[", i, "] is not a child of the node before it");
                }
                d.learn(tree, path);
            },
            py::arg("tree"), py::arg("path"),
            "A verified tree's outcome: path = the accepted nodes from the root down (a round does this itself).")
        .def(
            "propose_chain",
            [](const Drafter& d, int32_t k, uint32_t sources) {
                if (k < 0 || k > 64) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "k must be in [0, 64], got ", k);
                constexpr uint32_t kSkipBit = 1u << static_cast<int>(Source::SKIP);
                if (sources & ~apls::draft::kAllSources || sources & kSkipBit)
                    apls::fail(APLS_STATUS_INVALID_ARGUMENT,
                               "sources must be bits of the model-free sources "
                               "(lookup, suffix, recycle), got ",
                               sources);
                std::vector<int32_t> out;
                if (k == 0 || d.text().empty()) return out;
                apls::draft::TextParams p;
                p.lookup_depth = p.suffix_depth = p.recycle_depth = k;
                TokenTree tree;
                d.propose(tree, sources, p);
                if (tree.empty()) return out;
                d.calibrate(tree);
                tree.finish();
                const std::vector<int32_t> path = tree.best_path();
                out = tree.path_tokens(path.back());
                if (static_cast<int32_t>(out.size()) > k) out.resize(static_cast<size_t>(k));
                return out;
            },
            py::arg("k"), py::arg("sources"),
            "The likeliest chain of at most k tokens after the text, from the model-free `sources` (bits of "
            "DRAFT_SOURCES): what a caller verifying one chain per step (the server's shared batches) drafts.")
        .def(
            "acceptance",
            [](const Drafter& d, int source) {
                if (source < 0 || source >= apls::draft::kNumSources)
                    apls::fail(APLS_STATUS_INVALID_ARGUMENT, "source ", source, " is out of range");
                const auto& s = d.acceptance().by_depth(static_cast<Source>(source));
                return py::make_tuple(std::vector<int64_t>(s.tried.begin(), s.tried.end()),
                                      std::vector<int64_t>(s.accepted.begin(), s.accepted.end()));
            },
            py::arg("source"),
            "(tried, accepted) nodes of a source (index in DRAFT_SOURCES) judged by the verifier, by depth "
            "1..16 (the last: deeper).");
}

void bind_tree_params(py::module_& m) {
    py::class_<TreeParams>(m, "TreeParams", "What one token-tree round drafts (speculative_tree.h).")
        .def(py::init<>())
        .def_readwrite("seq", &TreeParams::seq)
        .def_readwrite("sources", &TreeParams::sources, "bit i: DRAFT_SOURCES[i]")
        .def_readwrite("n_nodes_max", &TreeParams::n_nodes_max)
        .def_readwrite("branching", &TreeParams::branching, "verify a tree; False: only its likeliest path")
        .def_readwrite("max_plain_steps", &TreeParams::max_plain_steps,
                       "greedy, no skip draft: plain steps a round may run on while nothing is worth drafting")
        .def_readwrite("verify_cost", &TreeParams::verify_cost,
                       "[n]: a verify batch of n + 1 tokens relative to a plain step; [] = no cost model")
        .def_property(
            "skip_n_max", [](const TreeParams& p) { return p.skip.n_max; },
            [](TreeParams& p, int32_t v) { p.skip.n_max = v; })
        .def_property(
            "skip_p_min", [](const TreeParams& p) { return p.skip.p_min; },
            [](TreeParams& p, float v) { p.skip.p_min = v; })
        .def_property(
            "skip_branch_below", [](const TreeParams& p) { return p.skip.branch_below; },
            [](TreeParams& p, float v) { p.skip.branch_below = v; })
        .def_property(
            "lookup_occurrences", [](const TreeParams& p) { return p.text.lookup_occurrences; },
            [](TreeParams& p, int32_t v) { p.text.lookup_occurrences = v; })
        .def_property(
            "lookup_depth", [](const TreeParams& p) { return p.text.lookup_depth; },
            [](TreeParams& p, int32_t v) { p.text.lookup_depth = v; })
        .def_property(
            "suffix_branches", [](const TreeParams& p) { return p.text.suffix_branches; },
            [](TreeParams& p, int32_t v) { p.text.suffix_branches = v; })
        .def_property(
            "suffix_depth", [](const TreeParams& p) { return p.text.suffix_depth; },
            [](TreeParams& p, int32_t v) { p.text.suffix_depth = v; })
        .def_property(
            "recycle_branches", [](const TreeParams& p) { return p.text.recycle_branches; },
            [](TreeParams& p, int32_t v) { p.text.recycle_branches = v; })
        .def_property(
            "recycle_depth", [](const TreeParams& p) { return p.text.recycle_depth; },
            [](TreeParams& p, int32_t v) { p.text.recycle_depth = v; })
        .def_property(
            "max_candidates", [](const TreeParams& p) { return p.text.max_candidates; },
            [](TreeParams& p, int32_t v) { p.text.max_candidates = v; });
}

void bind_token_tree(py::module_& m) {
    py::class_<TokenTree>(m, "TokenTree", "A round's token tree (draft/token_tree.h), read-only.")
        .def("__len__", &TokenTree::size)
        .def_property_readonly("tokens",
                               [](const TokenTree& t) {
                                   std::vector<int32_t> v;
                                   for (int32_t i = 0; i < t.size(); ++i) v.push_back(t.node(i).token);
                                   return v;
                               })
        .def_property_readonly("parents",
                               [](const TokenTree& t) {
                                   std::vector<int32_t> v;
                                   for (int32_t i = 0; i < t.size(); ++i) v.push_back(t.node(i).parent);
                                   return v;
                               })
        .def_property_readonly("p_path",
                               [](const TokenTree& t) {
                                   std::vector<float> v;
                                   for (int32_t i = 0; i < t.size(); ++i) v.push_back(t.node(i).p_path);
                                   return v;
                               })
        .def(
            "sources",
            [](const TokenTree& t, int32_t i) {
                if (i < 0 || i >= t.size()) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "node ", i, " is out of range");
                uint32_t bits = 0;
                for (const auto& pr : t.node(i).proposals) bits |= 1u << static_cast<int>(pr.source);
                return bits;
            },
            py::arg("node"), "Bits of the sources that proposed node i.");
}

}  // namespace

void bind_draft(py::module_& m) {
    std::vector<std::string> names;
    for (int i = 0; i < apls::draft::kNumSources; ++i) names.push_back(source_name(static_cast<Source>(i)));
    m.attr("DRAFT_SOURCES") = py::tuple(py::cast(names));
    bind_drafter(m);
    bind_tree_params(m);
    bind_token_tree(m);
    m.def(
        "draft_tree",
        [](const Drafter& d, const TreeParams& params, int32_t n_max) {
            return apls::draft_tree(d, params, n_max, nullptr, -1);
        },
        py::arg("drafter"), py::arg("params"), py::arg("n_max"),
        "The model-free sources' tree after the drafter's text, cut to at most n_max nodes by params' cost "
        "model, without verifying it (simulations of rounds over known text).");
    m.def("max_verify_batch", &apls::Context::max_invariant_batch, py::arg("ctx"),
          "The largest verify batch (tokens) of a context: n_batch on the CPU, the device's invariant batch there.");
    m.def(
        "time_verify",
        [](apls::Context& ctx, int32_t n_tokens, int32_t reps, int32_t seq, const apls::Plan* plan) {
            py::gil_scoped_release release;
            return apls::time_verify(ctx, seq, n_tokens, reps, plan);
        },
        py::arg("ctx"), py::arg("n_tokens"), py::arg("reps") = 2, py::arg("seq") = 0, py::arg("plan") = nullptr,
        "Seconds of a verify batch of n_tokens after what `seq` holds, as a round runs it (best of reps); "
        "the cache is left as it was. With a plan: the same batch under it (a draft step's cost).");
    m.def(
        "spec_tree_round",
        [](apls::Context& ctx, Drafter& drafter, int32_t last, const TreeParams& params, const apls::Plan* plan,
           const apls::KVView* view, apls::Sampler* sampler, int32_t max_rounds, int32_t max_tokens, bool stop_at_eog) {
            static const apls::Plan full;
            apls::TreeResult r;
            {
                py::gil_scoped_release release;
                r = apls::spec_tree_rounds(ctx, drafter, last, plan ? *plan : full, view, params, sampler, max_rounds,
                                           max_tokens, stop_at_eog);
            }
            return result_dict(r);
        },
        py::arg("ctx"), py::arg("drafter"), py::arg("last"), py::arg("params"), py::arg("plan") = py::none(),
        py::arg("view") = py::none(), py::arg("sampler") = nullptr, py::arg("max_rounds") = 1,
        py::arg("max_tokens") = 0, py::arg("stop_at_eog") = true,
        "Token-tree rounds (speculative_tree.h: spec_tree_round, or up to max_rounds of them back to back "
        "while fewer than max_tokens tokens came out, ending after an end-of-generation token when "
        "stop_at_eog); `plan` and `view` are the layer-skip draft's (used when params.sources has the skip "
        "bit; None: the full model, the whole cache). Returns a dict: tokens (each round's accepted nodes + "
        "its verifier's token), statistics summed over the rounds, and steps: one (n_plain_steps, "
        "n_drafted, n_accepted, t_verify_s, t_plain_s) per round.");
}
