// apls-speculative — self-speculative decoding from a C++ application through apls.hpp: the
// draft is the model itself under a layer plan read from a JSON file, verified by the full model
// with apls_spec_round. Greedy, so the text equals plain greedy decoding.
//
//   apls-speculative MODEL.gguf PLAN.json [PROMPT] [N_TOKENS]
//
// PLAN.json is the format `apls tune` and apls.Plan.save write:
//   {"skip_attn": [..], "skip_mlp": [..], "groups": [[first, last], ..], "head_rows": N,
//    "n_draft": K, "p_min": P}
// every key optional; other keys ("comment", "metrics", ...) are ignored.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "apls/apls.hpp"

namespace {

// ---- a minimal JSON reader ---------------------------------------------------------------------
// Just enough JSON for a plan file: objects, arrays, numbers, strings (escapes kept verbatim
// apart from \" and \\, since plan strings are only comments), true/false/null. Written here to
// keep the example free of third-party dependencies.
struct Json {
    enum Kind { NUL, BOOL, NUM, STR, ARR, OBJ } kind = NUL;
    double num = 0;
    std::string str;
    std::vector<Json> arr;
    std::map<std::string, Json> obj;
};

class JsonParser {
public:
    explicit JsonParser(const std::string& s) : s_(s) {}
    Json parse() {
        Json v = value();
        ws();
        if (i_ != s_.size()) error("trailing characters");
        return v;
    }

private:
    [[noreturn]] void error(const std::string& what) const {
        throw std::runtime_error("plan JSON: " + what + " at offset " + std::to_string(i_));
    }
    void ws() {
        while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    bool eat(char c) {
        ws();
        if (i_ < s_.size() && s_[i_] == c) {
            ++i_;
            return true;
        }
        return false;
    }
    void expect(char c) {
        if (!eat(c)) error(std::string("expected '") + c + "'");
    }
    bool word(const char* w) {
        const std::string ww(w);
        if (s_.compare(i_, ww.size(), ww) != 0) return false;
        i_ += ww.size();
        return true;
    }
    std::string string() {
        expect('"');
        std::string out;
        while (i_ < s_.size() && s_[i_] != '"') {
            if (s_[i_] == '\\' && i_ + 1 < s_.size()) ++i_;
            out += s_[i_++];
        }
        if (i_ >= s_.size()) error("unterminated string");
        ++i_;
        return out;
    }
    Json value() {
        if (++depth_ > 64) error("nesting too deep");
        ws();
        if (i_ >= s_.size()) error("unexpected end");
        Json v;
        const char c = s_[i_];
        if (c == '{') {
            ++i_;
            v.kind = Json::OBJ;
            if (!eat('}')) {
                do {
                    ws();
                    std::string k = string();
                    expect(':');
                    v.obj[k] = value();
                } while (eat(','));
                expect('}');
            }
        } else if (c == '[') {
            ++i_;
            v.kind = Json::ARR;
            if (!eat(']')) {
                do v.arr.push_back(value());
                while (eat(','));
                expect(']');
            }
        } else if (c == '"') {
            v.kind = Json::STR;
            v.str = string();
        } else if (word("true")) {
            v.kind = Json::BOOL;
            v.num = 1;
        } else if (word("false")) {
            v.kind = Json::BOOL;
        } else if (word("null")) {
            v.kind = Json::NUL;
        } else {
            const char* start = s_.c_str() + i_;
            char* end = nullptr;
            v.num = std::strtod(start, &end);
            if (end == start) error("unexpected character");
            v.kind = Json::NUM;
            i_ += static_cast<size_t>(end - start);
        }
        --depth_;
        return v;
    }

    const std::string& s_;
    size_t i_ = 0;
    int depth_ = 0;
};

int32_t as_int(const Json& v, const char* what) {
    if (v.kind != Json::NUM || v.num != static_cast<double>(static_cast<int32_t>(v.num)))
        throw std::runtime_error(std::string("plan JSON: ") + what + " must be an integer");
    return static_cast<int32_t>(v.num);
}

// ---- the plan ------------------------------------------------------------------------------------

// A plan's arrays, kept alive for as long as the apls_plan pointing at them is used.
struct PlanArrays {
    std::vector<uint8_t> attn, mlp;
    std::vector<int32_t> group;
    apls_plan plan{};
    int32_t n_draft = 8;
    float p_min = 0.0f;
};

std::unique_ptr<PlanArrays> read_plan(const std::string& path, int32_t n_layer) {
    std::ifstream f(path);
    if (!f) throw std::runtime_error("cannot open plan file " + path);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string text = ss.str();
    const Json root = JsonParser(text).parse();
    if (root.kind != Json::OBJ) throw std::runtime_error("plan JSON: the top level must be an object");

    auto p = std::make_unique<PlanArrays>();
    p->attn.assign(n_layer, 1);
    p->mlp.assign(n_layer, 1);
    p->group.assign(n_layer, -1);
    auto layer = [&](const Json& v, const char* what) {
        const int32_t l = as_int(v, what);
        if (l < 0 || l >= n_layer)
            throw std::runtime_error(std::string("plan JSON: ") + what + " layer " + std::to_string(l) +
                                     " is out of range for a " + std::to_string(n_layer) + "-layer model");
        return l;
    };
    auto list = [&](const char* key) -> const std::vector<Json>* {
        auto it = root.obj.find(key);
        if (it == root.obj.end()) return nullptr;
        if (it->second.kind != Json::ARR)
            throw std::runtime_error(std::string("plan JSON: ") + key + " must be a list");
        return &it->second.arr;
    };
    if (auto* a = list("skip_attn"))
        for (const Json& v : *a) p->attn[layer(v, "skip_attn")] = 0;
    if (auto* a = list("skip_mlp"))
        for (const Json& v : *a) p->mlp[layer(v, "skip_mlp")] = 0;
    if (auto* a = list("groups")) {
        int32_t gid = 0;
        for (const Json& g : *a) {
            if (g.kind != Json::ARR || g.arr.size() != 2)
                throw std::runtime_error("plan JSON: a group must be [first, last]");
            const int32_t first = layer(g.arr[0], "groups"), last = layer(g.arr[1], "groups");
            if (first > last) throw std::runtime_error("plan JSON: a group's first layer is after its last");
            for (int32_t l = first; l <= last; ++l) {
                if (p->group[l] >= 0)
                    throw std::runtime_error("plan JSON: groups overlap at layer " + std::to_string(l));
                p->group[l] = gid;
            }
            ++gid;
        }
    }
    auto num = [&](const char* key) -> const Json* {
        auto it = root.obj.find(key);
        return it == root.obj.end() ? nullptr : &it->second;
    };
    p->plan.n_layer = n_layer;
    p->plan.attn = p->attn.data();
    p->plan.mlp = p->mlp.data();
    p->plan.group = p->group.data();
    if (const Json* v = num("head_rows")) p->plan.head_rows = as_int(*v, "head_rows");
    if (const Json* v = num("n_draft")) p->n_draft = as_int(*v, "n_draft");
    if (const Json* v = num("p_min")) {
        if (v->kind != Json::NUM) throw std::runtime_error("plan JSON: p_min must be a number");
        p->p_min = static_cast<float>(v->num);
    }
    if (p->n_draft < 1) throw std::runtime_error("plan JSON: n_draft must be >= 1");
    return p;
}

int run(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s MODEL.gguf PLAN.json [PROMPT] [N_TOKENS]\n", argv[0]);
        return 2;
    }
    const std::string prompt = argc > 3 ? argv[3] : "The three primary colors are";
    const int n_gen = argc > 4 ? std::atoi(argv[4]) : 64;
    if (n_gen <= 0) {
        std::fprintf(stderr, "apls-speculative: N_TOKENS must be positive\n");
        return 2;
    }

    apls::c::Model model(argv[1]);
    const std::unique_ptr<PlanArrays> plan = read_plan(argv[2], model.n_layer());
    const std::vector<int32_t> ids = model.tokenize(prompt);
    if (ids.empty()) throw std::runtime_error("the prompt is empty");

    // Room for the prompt, the output and one round's drafts beyond it.
    apls_context_params cp = apls_context_default_params();
    cp.n_ctx = static_cast<uint32_t>(ids.size() + n_gen + plan->n_draft + 1);
    cp.n_batch = std::max<uint32_t>(cp.n_batch, static_cast<uint32_t>(ids.size()));
    apls::c::Context ctx(model, cp);

    // A round starts with every token before last_token in the cache: prefill the prompt but
    // its last token.
    const auto t0 = std::chrono::steady_clock::now();
    if (ids.size() > 1) ctx.decode(ids.data(), static_cast<int32_t>(ids.size() - 1));
    int32_t last = ids.back();

    apls_spec_params sp = apls_spec_default_params();
    sp.n_draft_max = plan->n_draft;
    sp.draft_p_min = plan->p_min;
    std::vector<int32_t> out(static_cast<size_t>(plan->n_draft) + 1);
    std::vector<int32_t> generated;
    int64_t rounds = 0, drafted = 0, accepted = 0;
    double t_draft = 0, t_verify = 0;

    std::printf("%s", prompt.c_str());
    std::fflush(stdout);
    bool eog = false;
    while (!eog && static_cast<int>(generated.size()) < n_gen) {
        int32_t n_out = 0;
        apls_spec_stats st{};
        // sampler NULL: greedy verification, output identical to plain greedy decoding.
        apls::c::check(apls_spec_round(ctx.get(), last, &plan->plan, nullptr, &sp, nullptr, out.data(),
                                       static_cast<int32_t>(out.size()), &n_out, &st));
        ++rounds;
        drafted += st.n_drafted;
        accepted += st.n_accepted;
        t_draft += st.t_draft_s;
        t_verify += st.t_verify_s;
        for (int32_t i = 0; i < n_out && static_cast<int>(generated.size()) < n_gen; ++i) {
            if (model.is_eog(out[i])) {
                eog = true;
                break;
            }
            generated.push_back(out[i]);
            const std::string piece = model.detokenize(out[i]);
            std::fwrite(piece.data(), 1, piece.size(), stdout);
        }
        std::fflush(stdout);
        last = out[n_out - 1];
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("\n");

    // tau: tokens per verification (accepted drafts + the verifier's token, per round).
    const double tau = rounds ? static_cast<double>(accepted + rounds) / rounds : 0.0;
    const double acceptance = drafted ? static_cast<double>(accepted) / drafted : 0.0;
    std::fprintf(stderr,
                 "rounds %lld  drafted %lld  accepted %lld  tau %.3f  acceptance %.3f\n"
                 "generated %zu tokens in %.3f s (%.1f tok/s; drafting %.3f s, verifying %.3f s)\n",
                 static_cast<long long>(rounds), static_cast<long long>(drafted), static_cast<long long>(accepted), tau,
                 acceptance, generated.size(), secs, secs > 0 ? generated.size() / secs : 0.0, t_draft, t_verify);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const apls::c::Error& e) {
        std::fprintf(stderr, "apls-speculative: %s (%s)\n", e.what(), apls_status_name(e.status()));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "apls-speculative: %s\n", e.what());
    }
    return 1;
}
