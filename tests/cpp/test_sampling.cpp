// test_sampling.cpp — the sampler's C API under misuse: every bad call returns a status and a
// message naming the problem, and nothing crashes. Plus a few engine-level checks.
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "apls/apls.h"
#include "check.h"
#include "common.h"
#include "sampling.h"

namespace {

bool error_mentions(const char* what) { return std::strstr(apls_last_error(), what) != nullptr; }

// A sampler from a chain of calls that must all succeed.
apls_sampler* greedy_chain() {
    apls_sampler* s = nullptr;
    if (apls_sampler_chain_init(&s) != APLS_STATUS_OK) return nullptr;
    apls_sampler_chain_add_greedy(s);
    return s;
}

}  // namespace

APLS_TEST(default_params_match_the_documented_defaults) {
    apls_sampler_params p = apls_sampler_default_params();
    CHECK(p.temperature == 0.8f);
    CHECK(p.top_k == 40);
    CHECK(p.top_p == 0.95f);
    CHECK(p.min_p == 0.05f);
    CHECK(p.repeat_penalty == 1.0f);
    CHECK(p.frequency_penalty == 0.0f && p.presence_penalty == 0.0f);
    CHECK(p.penalty_last_n == 64);
}

APLS_TEST(null_handles_and_outputs) {
    apls_sampler_params p = apls_sampler_default_params();
    CHECK(apls_sampler_init(&p, nullptr) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(error_mentions("out is NULL"));
    apls_sampler* s = reinterpret_cast<apls_sampler*>(0x1);
    CHECK(apls_sampler_init(nullptr, &s) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(s == nullptr && error_mentions("params is NULL"));
    CHECK(apls_sampler_chain_init(nullptr) == APLS_STATUS_INVALID_ARGUMENT);

    CHECK(apls_sampler_chain_add_top_k(nullptr, 5) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(error_mentions("sampler is NULL"));
    CHECK(apls_sampler_chain_add_penalties(nullptr, 64, 1.1f, 0, 0) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(apls_sampler_chain_add_top_p(nullptr, 0.9f, 1) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(apls_sampler_chain_add_min_p(nullptr, 0.1f, 1) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(apls_sampler_chain_add_temperature(nullptr, 0.7f) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(apls_sampler_chain_add_greedy(nullptr) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(apls_sampler_chain_add_dist(nullptr, 1) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(apls_sampler_accept(nullptr, 3) == APLS_STATUS_INVALID_ARGUMENT);

    const float logits[3] = {0.f, 1.f, 2.f};
    int32_t tok = 7;
    CHECK(apls_sampler_sample(nullptr, logits, 3, &tok) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(tok == -1 && error_mentions("sampler is NULL"));
    apls_sampler* g = greedy_chain();
    CHECK(g != nullptr);
    tok = 7;
    CHECK(apls_sampler_sample(g, nullptr, 3, &tok) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(tok == -1 && error_mentions("logits is NULL"));
    CHECK(apls_sampler_sample(g, logits, 3, nullptr) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(error_mentions("out_token is NULL"));
    CHECK(apls_sampler_probs(g, logits, 3, nullptr) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(error_mentions("out_probs is NULL"));
    float probs[3];
    CHECK(apls_sampler_probs(nullptr, logits, 3, probs) == APLS_STATUS_INVALID_ARGUMENT);

    apls_sampler_reset(nullptr);  // no-ops, no crash
    apls_sampler_free(nullptr);
    apls_sampler_free(g);
}

APLS_TEST(bad_rows) {
    apls_sampler* g = greedy_chain();
    const float ok[4] = {0.f, 3.f, 1.f, 2.f};
    int32_t tok = 0;
    CHECK(apls_sampler_sample(g, ok, 0, &tok) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(tok == -1 && error_mentions("n_vocab must be > 0, got 0"));
    CHECK(apls_sampler_sample(g, ok, -5, &tok) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(error_mentions("got -5"));

    const float nan_row[4] = {0.f, NAN, 1.f, 2.f};
    CHECK(apls_sampler_sample(g, nan_row, 4, &tok) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(error_mentions("logits[1] is NaN"));
    const float inf_row[4] = {0.f, 1.f, INFINITY, 2.f};
    CHECK(apls_sampler_sample(g, inf_row, 4, &tok) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(error_mentions("logits[2] is +inf"));
    const float masked[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    CHECK(apls_sampler_sample(g, masked, 4, &tok) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(error_mentions("all logits are -inf"));

    // A failed row does not fix n_vocab; the first good one does.
    CHECK(apls_sampler_sample(g, ok, 4, &tok) == APLS_STATUS_OK && tok == 1);
    CHECK(std::string(apls_last_error()).empty());
    CHECK(apls_sampler_sample(g, ok, 3, &tok) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(error_mentions("n_vocab 3 does not match the sampler's n_vocab 4"));
    CHECK(apls_sampler_accept(g, 4) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(error_mentions("token 4 out of range [0, 4)"));
    CHECK(apls_sampler_accept(g, -1) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(error_mentions("token -1 is negative"));
    apls_sampler_free(g);
}

APLS_TEST(bad_parameters_name_the_parameter) {
    apls_sampler_params p = apls_sampler_default_params();
    apls_sampler* s = nullptr;
    p.top_p = 1.5f;
    CHECK(apls_sampler_init(&p, &s) == APLS_STATUS_INVALID_ARGUMENT && s == nullptr);
    CHECK(error_mentions("top_p must be in (0, 1], got 1.5"));
    p = apls_sampler_default_params();
    p.top_k = -1;
    CHECK(apls_sampler_init(&p, &s) == APLS_STATUS_INVALID_ARGUMENT && error_mentions("top_k"));
    p = apls_sampler_default_params();
    p.min_p = -0.1f;
    CHECK(apls_sampler_init(&p, &s) == APLS_STATUS_INVALID_ARGUMENT && error_mentions("min_p"));
    p = apls_sampler_default_params();
    p.temperature = NAN;
    CHECK(apls_sampler_init(&p, &s) == APLS_STATUS_INVALID_ARGUMENT && error_mentions("temperature"));
    p = apls_sampler_default_params();
    p.repeat_penalty = 0.0f;
    CHECK(apls_sampler_init(&p, &s) == APLS_STATUS_INVALID_ARGUMENT && error_mentions("repeat_penalty"));
    p = apls_sampler_default_params();
    p.penalty_last_n = -1;
    CHECK(apls_sampler_init(&p, &s) == APLS_STATUS_INVALID_ARGUMENT && error_mentions("penalty_last_n"));
    p = apls_sampler_default_params();
    CHECK(apls_sampler_init(&p, &s) == APLS_STATUS_OK && s != nullptr);
    apls_sampler_free(s);
}

APLS_TEST(chain_order_is_enforced) {
    apls_sampler* s = nullptr;
    CHECK(apls_sampler_chain_init(&s) == APLS_STATUS_OK);
    const float row[3] = {0.f, 1.f, 2.f};
    int32_t tok = 0;
    CHECK(apls_sampler_sample(s, row, 3, &tok) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(error_mentions("no selector"));
    CHECK(apls_sampler_chain_add_top_p(s, 0.0f, 1) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(apls_sampler_chain_add_top_p(s, 0.9f, 0) == APLS_STATUS_INVALID_ARGUMENT && error_mentions("min_keep"));
    CHECK(apls_sampler_chain_add_top_k(s, 2) == APLS_STATUS_OK);
    CHECK(apls_sampler_chain_add_dist(s, 42) == APLS_STATUS_OK);
    CHECK(apls_sampler_chain_add_greedy(s) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(error_mentions("already ends with a selector"));
    CHECK(apls_sampler_chain_add_temperature(s, 0.5f) == APLS_STATUS_INVALID_ARGUMENT);
    CHECK(apls_sampler_sample(s, row, 3, &tok) == APLS_STATUS_OK);
    CHECK(tok == 1 || tok == 2);  // top-k 2 removed token 0
    float probs[3];
    CHECK(apls_sampler_probs(s, row, 3, probs) == APLS_STATUS_OK);
    // softmax of {1, 2}: e / (e + e^2) = 1 / (1 + e)
    CHECK(probs[0] == 0.0f);
    CHECK(std::fabs(probs[1] - 1.0f / (1.0f + std::exp(1.0f))) < 1e-6f);
    CHECK(std::fabs(probs[1] + probs[2] - 1.0f) < 1e-6f);
    apls_sampler_free(s);
}

APLS_TEST(reset_reseeds) {
    apls_sampler* s = nullptr;
    CHECK(apls_sampler_chain_init(&s) == APLS_STATUS_OK);
    CHECK(apls_sampler_chain_add_dist(s, 7) == APLS_STATUS_OK);
    std::vector<float> row(100, 0.0f);  // uniform over 100 tokens
    std::vector<int32_t> a, b;
    for (int i = 0; i < 20; i++) {
        int32_t t;
        apls_sampler_sample(s, row.data(), 100, &t);
        a.push_back(t);
    }
    apls_sampler_reset(s);
    for (int i = 0; i < 20; i++) {
        int32_t t;
        apls_sampler_sample(s, row.data(), 100, &t);
        b.push_back(t);
    }
    CHECK(a == b);
    apls_sampler_free(s);
}

APLS_TEST(engine_errors_are_invalid_argument) {
    apls::Sampler s;
    CHECK_THROWS(s.add_top_k(-3), APLS_STATUS_INVALID_ARGUMENT, "top_k must be >= 0");
    CHECK_THROWS(s.add_min_p(1.5f, 1), APLS_STATUS_INVALID_ARGUMENT, "min_p must be in [0, 1]");
    s.add_greedy();
    const float row[2] = {1.0f, 1.0f};
    CHECK(s.sample(row, 2) == 0);  // ties go to the lowest id
    CHECK_THROWS(s.sample(row, 5), APLS_STATUS_INVALID_ARGUMENT, "does not match");
}

// Taking tokens back restores the penalties exactly as a sampler that never saw them, also
// when the taken-back tokens had pushed older ones out of the window (last_n 4 here), and past
// the history's trimming (thousands of tokens accepted).
APLS_TEST(unaccept_restores_the_penalty_window) {
    const int32_t V = 16;
    std::vector<float> row(V);
    for (int32_t i = 0; i < V; ++i) row[i] = 0.1f * static_cast<float>((i * 7) % V);
    auto made = [&](const std::vector<int32_t>& hist) {
        auto s = std::make_unique<apls::Sampler>();
        s->add_penalties(4, 1.7f, 0.3f, 0.2f);
        s->add_temperature(1.0f);
        s->add_dist(1);
        for (int32_t t : hist) s->accept(t);
        return s;
    };
    std::vector<int32_t> hist;
    for (int32_t i = 0; i < 5000; ++i) hist.push_back((i * 5 + i / 3) % V);
    auto s = made(hist);
    for (int32_t back : {1, 3, 4, 9, 700}) {
        s->unaccept(back);
        hist.resize(hist.size() - back);
        CHECK(s->probs(row.data(), V) == made(hist)->probs(row.data(), V));
    }
    for (int32_t t : {3, 3, 9}) s->accept(t), hist.push_back(t);
    CHECK(s->probs(row.data(), V) == made(hist)->probs(row.data(), V));
    CHECK(s->probs(row.data(), V) != made({})->probs(row.data(), V));
}

APLS_TEST_MAIN()
