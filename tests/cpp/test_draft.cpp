// test_draft.cpp — the draft sources and the token tree against brute-force references on
// random token strings, and multi-candidate rejection sampling against the distribution it
// must keep.
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "check.h"
#include "common.h"
#include "draft/acceptance.h"
#include "draft/drafter.h"
#include "draft/prompt_lookup.h"
#include "draft/recycle.h"
#include "draft/suffix_index.h"
#include "draft/token_tree.h"
#include "runner.h"
#include "sampling.h"
#include "sampling_tree.h"

using namespace apls;
using namespace apls::draft;

namespace {

std::vector<int32_t> random_text(std::mt19937& rng, int32_t n, int32_t alphabet) {
    std::uniform_int_distribution<int32_t> tok(0, alphabet - 1);
    std::vector<int32_t> t(n);
    for (auto& x : t) x = tok(rng);
    return t;
}

bool ends_with_at(const std::vector<int32_t>& t, int32_t end, const std::vector<int32_t>& pat) {
    const int32_t n = static_cast<int32_t>(pat.size());
    if (end - n + 1 < 0) return false;
    return std::equal(pat.begin(), pat.end(), t.begin() + (end - n + 1));
}

// Prompt lookup by scanning: the longest n-gram (n_max..n_min) ending the text that also ends at
// an earlier position; what followed each earlier occurrence, most recent first.
LookupMatch lookup_reference(const std::vector<int32_t>& t, int32_t n_min, int32_t n_max, int32_t max_occ,
                             int32_t depth) {
    LookupMatch m;
    const int32_t end = static_cast<int32_t>(t.size()) - 1;
    for (int32_t n = std::min(n_max, end + 1); n >= n_min; --n) {
        const std::vector<int32_t> pat(t.end() - n, t.end());
        std::vector<int32_t> ends;
        for (int32_t e = end - 1; e >= 0; --e)
            if (ends_with_at(t, e, pat)) ends.push_back(e);
        if (ends.empty()) continue;
        m.n = n;
        for (int32_t e : ends) {
            if (static_cast<int32_t>(m.continuations.size()) >= max_occ) break;
            m.continuations.emplace_back(t.begin() + e + 1, t.begin() + std::min(end, e + depth) + 1);
        }
        return m;
    }
    return m;
}

// Occurrences of pat in s (as a substring), counted by brute force.
int32_t count_of(const std::vector<int32_t>& s, const std::vector<int32_t>& pat) {
    int32_t c = 0;
    for (size_t e = pat.size() - 1; e < s.size(); ++e) c += ends_with_at(s, static_cast<int32_t>(e), pat);
    return c;
}

}  // namespace

APLS_TEST(prompt_lookup_matches_a_scan_of_the_text) {
    std::mt19937 rng(1);
    for (int trial = 0; trial < 300; ++trial) {
        const int32_t alphabet = 2 + trial % 5, n_min = 1 + trial % 2, n_max = n_min + trial % 3;
        const int32_t max_occ = 1 + trial % 6, depth = 1 + trial % 7;
        const std::vector<int32_t> t = random_text(rng, 1 + trial % 60, alphabet);
        PromptLookup pl(n_min, n_max);
        // Appended in pieces: the index must not depend on how the text arrived.
        for (size_t i = 0; i < t.size();) {
            const int32_t n = std::min<int32_t>(1 + trial % 4, static_cast<int32_t>(t.size() - i));
            pl.append(t.data() + i, n);
            i += n;
            const std::vector<int32_t> prefix(t.begin(), t.begin() + i);
            const LookupMatch got = pl.find(max_occ, depth),
                              want = lookup_reference(prefix, n_min, n_max, max_occ, depth);
            CHECK(got.n == want.n);
            CHECK(got.continuations == want.continuations);
        }
    }
}

APLS_TEST(prompt_lookup_refuses_tokens_it_cannot_pack) {
    PromptLookup pl(1, 3);
    const int32_t bad[2] = {5, -1};
    CHECK_THROWS(pl.append(bad, 2), APLS_STATUS_INVALID_ARGUMENT, "out of range");
    CHECK(pl.text().empty());  // nothing appended
    CHECK_THROWS(PromptLookup(0, 3), APLS_STATUS_INVALID_ARGUMENT, "n_min");
}

APLS_TEST(suffix_index_matches_brute_force_counts) {
    std::mt19937 rng(2);
    for (int trial = 0; trial < 60; ++trial) {
        const int32_t alphabet = 2 + trial % 4;
        SuffixIndex sx;
        std::vector<int32_t> all;  // the indexed string, separators as unique negatives
        std::vector<int32_t> doc;  // the current document
        int32_t n_sep = 0;
        const int32_t n_docs = 1 + trial % 3;
        for (int32_t d = 0; d < n_docs; ++d) {
            if (d > 0) {
                sx.end_document();
                all.push_back(-(++n_sep));
                doc.clear();
            }
            for (int32_t tok : random_text(rng, 1 + (trial * 7 + d * 13) % 50, alphabet)) {
                sx.append(tok);
                all.push_back(tok);
                doc.push_back(tok);
                // The longest suffix of the document occurring earlier with a token after it.
                int32_t want_len = 0;
                for (int32_t L = static_cast<int32_t>(doc.size()); L >= 1 && want_len == 0; --L) {
                    const std::vector<int32_t> pat(doc.end() - L, doc.end());
                    for (int32_t e = static_cast<int32_t>(all.size()) - 2; e >= 0; --e)
                        if (ends_with_at(all, e, pat)) {
                            want_len = L;
                            break;
                        }
                }
                const int32_t s = sx.match();
                CHECK(sx.length(s) == want_len);
                if (want_len == 0) continue;
                // Two levels of continuations: tokens, counts, totals, order.
                std::vector<int32_t> u(doc.end() - want_len, doc.end());
                std::vector<std::pair<int32_t, int32_t>> frontier = {{s, -1}};
                for (int level = 0; level < 2; ++level) {
                    std::vector<std::pair<int32_t, int32_t>> next_frontier;
                    for (auto [state, via] : frontier) {
                        std::vector<int32_t> base = u;
                        if (via >= 0) base.push_back(via);
                        int32_t total = 0;
                        const std::vector<SuffixChild> ch = sx.children(state, &total);
                        std::vector<std::pair<int32_t, int32_t>> want;  // (-count, token)
                        int32_t want_total = 0;
                        for (int32_t c = -n_sep; c < alphabet; ++c) {
                            std::vector<int32_t> pat = base;
                            pat.push_back(c);
                            const int32_t k = count_of(all, pat);
                            want_total += k;
                            if (k > 0 && c >= 0) want.emplace_back(-k, c);
                        }
                        std::sort(want.begin(), want.end());
                        CHECK(total == want_total);
                        CHECK(ch.size() == want.size());
                        for (size_t i = 0; i < std::min(ch.size(), want.size()); ++i) {
                            CHECK(ch[i].token == want[i].second && ch[i].count == -want[i].first);
                            if (level == 0) next_frontier.emplace_back(ch[i].state, ch[i].token);
                        }
                    }
                    frontier = next_frontier;
                }
            }
        }
    }
}

APLS_TEST(suffix_index_matches_stay_inside_the_document) {
    SuffixIndex sx;
    for (int32_t t : {1, 2, 3}) sx.append(t);
    sx.end_document();
    sx.append(3);  // "3" occurred before, followed by the separator only: no continuation
    CHECK(sx.length(sx.match()) == 1);
    CHECK(sx.children(sx.match()).empty());
    sx.end_document();
    sx.append(2);  // "2" -> "3" from the first document, never across a separator
    const auto ch = sx.children(sx.match());
    CHECK(sx.length(sx.match()) == 1 && ch.size() == 1 && ch[0].token == 3 && ch[0].count == 1);
    CHECK_THROWS(sx.append(-4), APLS_STATUS_INVALID_ARGUMENT, "negative");
}

APLS_TEST(top_k_row_matches_a_stable_sort) {
    std::mt19937 rng(3);
    std::uniform_int_distribution<int32_t> val(-4, 4);  // many ties
    for (int trial = 0; trial < 260; ++trial) {
        // Rows past 200 are long (runs of 16 skipped whole once the list is full, and a tail).
        const int32_t n = trial < 200 ? 1 + trial % 40 : 1000 + 37 * (trial % 7), k = 1 + trial % std::min(n, 9);
        std::vector<float> x(n);
        for (auto& v : x) v = static_cast<float>(val(rng)) * 0.5f;
        if (trial % 5 == 0) x[trial % n] = -INFINITY;
        std::vector<int32_t> order(n);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return x[a] > x[b]; });
        std::vector<int32_t> got(k);
        top_k_row(x.data(), n, k, got.data());
        CHECK(std::equal(got.begin(), got.end(), order.begin()));
    }
}

APLS_TEST(argmax_row_is_the_first_maximum) {
    std::mt19937 rng(5);
    std::uniform_int_distribution<int32_t> val(-6, 6);  // many ties: the first index must win
    for (int trial = 0; trial < 400; ++trial) {
        const int32_t n = trial < 300 ? 1 + trial : 49152 + trial % 17;
        std::vector<float> x(n);
        for (auto& v : x) v = static_cast<float>(val(rng)) * 0.25f;
        if (trial % 3 == 0) x[(trial * 7919) % n] = 2.0f;  // one clear maximum somewhere
        if (trial % 11 == 0) x[0] = -INFINITY;
        int32_t want = 0;
        for (int32_t i = 1; i < n; ++i)
            if (x[i] > x[want]) want = i;
        CHECK(argmax_row(x.data(), n) == want);
    }
}

APLS_TEST(recycling_keeps_the_latest_top_k_per_token) {
    TokenRecycling r(6, 2);
    CHECK(r.successors(3)[0] == -1 && r.successors(3)[1] == -1);
    const float a[6] = {0, 5, 1, 4, 2, 3}, b[6] = {9, 0, 0, 0, 0, 8};
    r.update(3, a);
    CHECK(r.successors(3)[0] == 1 && r.successors(3)[1] == 3);
    r.update(3, b);  // the newer row replaces the older
    CHECK(r.successors(3)[0] == 0 && r.successors(3)[1] == 5);
    CHECK(r.successors(2)[0] == -1);
    CHECK_THROWS(r.update(6, a), APLS_STATUS_INVALID_ARGUMENT, "out of range");
}

APLS_TEST(token_tree_merges_and_cuts_by_path_probability) {
    std::mt19937 rng(4);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (int trial = 0; trial < 100; ++trial) {
        TokenTree t;
        std::vector<std::vector<int32_t>> paths;
        for (int i = 0; i < 30; ++i) {  // random candidates, often sharing prefixes
            const int32_t parent = t.size() && i % 4 ? static_cast<int32_t>(rng() % t.size()) : TokenTree::kRoot;
            const int32_t before = t.size();
            const int32_t node = t.add(parent, static_cast<int32_t>(rng() % 3), u(rng), Proposal{Source::LOOKUP, 0});
            if (node == before) paths.push_back(t.path_tokens(node));
        }
        t.finish();
        // Every distinct path is one node; p_path is the product along it.
        CHECK(static_cast<int32_t>(paths.size()) == t.size());
        for (int32_t i = 0; i < t.size(); ++i) {
            float p = 1.0f;
            for (int32_t j = i; j != TokenTree::kRoot; j = t.node(j).parent) p *= t.node(j).p_accept;
            CHECK(std::fabs(p - t.node(i).p_path) <= 1e-6f);
        }
        for (int32_t n = 0; n <= t.size(); n += 3) {
            const std::vector<int32_t> keep = t.best(n);
            std::vector<float> want = t.sorted_p_path();
            float got_sum = 0.0f, want_sum = std::accumulate(want.begin(), want.begin() + n, 0.0f);
            for (int32_t i : keep) got_sum += t.node(i).p_path;
            CHECK(static_cast<int32_t>(keep.size()) == n && std::fabs(got_sum - want_sum) <= 1e-5f);
            std::vector<int32_t> map;
            const TokenTree s = t.subtree(keep, &map);
            CHECK(s.size() == n);
            for (int32_t i = 0; i < s.size(); ++i) {  // closed under ancestors, depth-first order
                const int32_t p = s.node(i).parent;
                CHECK(p < i);
                CHECK(t.path_tokens(map[i]) == s.path_tokens(i));
                int32_t a = i - 1;  // preorder: the parent is the previous node or one of its ancestors
                while (a != TokenTree::kRoot && a != p) a = s.node(a).parent;
                CHECK(a == p);
            }
        }
    }
}

APLS_TEST(best_size_maximizes_tokens_per_cost) {
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (int trial = 0; trial < 200; ++trial) {
        std::vector<float> p(trial % 12);
        for (auto& x : p) x = u(rng);
        std::sort(p.begin(), p.end(), [](float a, float b) { return a > b; });
        std::vector<float> cost = {1.0f};
        for (int i = 1; i < 1 + trial % 15; ++i) cost.push_back(cost.back() + 0.05f + u(rng) * 0.6f);
        int32_t want = 0;
        double best = 1.0 / cost[0];
        for (size_t n = 1; n <= p.size() && n < cost.size(); ++n) {
            const double r = (1.0 + std::accumulate(p.begin(), p.begin() + n, 0.0)) / cost[n];
            if (r > best + 1e-12) best = r, want = static_cast<int32_t>(n);
        }
        CHECK(best_size(p, cost) == want);
    }
    CHECK(best_size({0.5f, 0.4f}, {}) == 2);  // no cost model: keep everything
}

APLS_TEST(rejection_sampling_over_candidates_keeps_the_distribution) {
    // Output frequencies over many draws against p, for candidate sets mixing deterministic
    // proposals and draws from a q; chi-square at significance 1e-4 (fixed seeds: deterministic).
    const int32_t V = 6, N = 200000;
    const std::vector<float> p0 = {0.30f, 0.25f, 0.2f, 0.15f, 0.1f, 0.0f};
    const std::vector<float> q = {0.05f, 0.1f, 0.1f, 0.25f, 0.3f, 0.2f};  // 5 is outside p's support
    Sampler pick;  // draws the q candidates
    pick.add_dist(11);
    Sampler s;
    s.add_dist(7);
    for (int variant = 0; variant < 4; ++variant) {
        std::vector<int64_t> counts(V, 0);
        for (int32_t it = 0; it < N; ++it) {
            std::vector<Proposed> cands;
            const int32_t x = draw_from(q, pick.uniform());
            if (variant == 0) cands = {{0, nullptr}, {3, nullptr}};
            if (variant == 1) cands = {{x, q.data()}};
            if (variant == 2) cands = {{1, nullptr}, {x, q.data()}};
            if (variant == 3) cands = {{5, nullptr}, {x, q.data()}, {2, nullptr}};
            std::vector<float> p = p0;
            int32_t next = -1;
            const int32_t k = accept_one_of(p, cands, s, &next);
            ++counts[k >= 0 ? cands[k].token : next];
        }
        double stat = 0.0;
        for (int32_t i = 0; i < V; ++i) {
            if (p0[i] == 0.0f) {
                CHECK(counts[i] == 0);
                continue;
            }
            const double e = p0[i] * N;
            stat += (counts[i] - e) * (counts[i] - e) / e;
        }
        CHECK(stat < 23.5);  // chi-square, 4 degrees of freedom, p = 1e-4
    }
}

APLS_TEST(acceptance_estimates_follow_the_outcomes) {
    AcceptanceTable t;
    const int32_t c = AcceptanceTable::text_cell(3, 4, 4, 1);
    const float before = t.estimate(Source::LOOKUP, c);
    for (int i = 0; i < 50; ++i) t.record(Source::LOOKUP, c, 1, i % 10 != 0);  // 90% accepted
    CHECK(t.estimate(Source::LOOKUP, c) > before && std::fabs(t.estimate(Source::LOOKUP, c) - 0.9f) < 0.05f);
    for (int i = 0; i < 400; ++i) t.record(Source::LOOKUP, c, 1, false);  // the text changed
    CHECK(t.estimate(Source::LOOKUP, c) < 0.1f);
    CHECK(t.by_depth(Source::LOOKUP).tried[0] == 450);
    CHECK(t.estimate(Source::SUFFIX, c) == before);  // another source's cells untouched
}

APLS_TEST(drafter_proposes_the_text_continuations_and_learns) {
    Drafter d(10);
    const std::vector<int32_t> prompt = {1, 2, 3, 4, 1, 2, 3, 5, 6, 1, 2};
    d.start(prompt.data(), static_cast<int32_t>(prompt.size()));
    TokenTree t;
    d.propose(t, 1u << static_cast<int>(Source::LOOKUP), TextParams{});
    t.finish();
    // "1 2" occurred twice before: followed by "3 4 1 2 3 5 6 1 2" and "3 5 6 1 2".
    CHECK(t.children(TokenTree::kRoot).size() == 1 && t.node(t.children(TokenTree::kRoot)[0]).token == 3);
    const int32_t n3 = t.children(TokenTree::kRoot)[0];
    CHECK(t.children(n3).size() == 2);
    CHECK(t.child(n3, 4) >= 0 && t.child(n3, 5) >= 0);
    CHECK(t.node(t.child(n3, 4)).p_path < t.node(n3).p_path);
    // The suffix index agrees on the first token; the merged node carries both proposals.
    d.propose(t, 1u << static_cast<int>(Source::SUFFIX), TextParams{});
    CHECK(t.children(TokenTree::kRoot).size() == 1 && t.node(n3).proposals.size() == 2);
    // The verifier took 3 then 5: the judged nodes are 3 (accepted), 4 and 5 (5 accepted), 6.
    t.finish();
    const float before = d.acceptance().estimate(Source::LOOKUP, t.node(n3).proposals[0].cell);
    d.learn(t, {n3, t.child(n3, 5)});
    CHECK(d.acceptance().estimate(Source::LOOKUP, t.node(n3).proposals[0].cell) > before);
    CHECK(d.acceptance().by_depth(Source::LOOKUP).tried[0] == 1 &&
          d.acceptance().by_depth(Source::LOOKUP).accepted[0] == 1);
    CHECK(d.acceptance().by_depth(Source::LOOKUP).tried[1] == 2 &&
          d.acceptance().by_depth(Source::LOOKUP).accepted[1] == 1);
    const int32_t bad = 10;
    CHECK_THROWS(d.append(&bad, 1), APLS_STATUS_INVALID_ARGUMENT, "out of range");
    CHECK(d.text().size() == prompt.size());
}

APLS_TEST(calibration_maps_estimates_to_outcomes_and_siblings_share_what_is_left) {
    Drafter d(10);
    const std::vector<int32_t> text = {1, 2};
    d.start(text.data(), 2);
    TokenTree t;
    const int32_t a = t.add(TokenTree::kRoot, 3, 0.7f, Proposal{Source::LOOKUP, 0});
    const int32_t b = t.add(TokenTree::kRoot, 4, 0.6f, Proposal{Source::RECYCLE, 0});
    t.add(TokenTree::kRoot, 5, 0.2f, Proposal{Source::RECYCLE, 1});
    d.calibrate(t);  // nothing learned yet: the identity, then siblings cut to sum 1
    float sum = 0.0f;
    for (int32_t c : t.children(TokenTree::kRoot)) sum += t.node(c).p_accept;
    CHECK(std::fabs(t.node(a).p_accept - 0.7f) < 1e-6f && std::fabs(sum - 1.0f) < 1e-5f);
    CHECK(std::fabs(t.node(b).p_accept - 0.3f * 0.6f / 0.8f) < 1e-5f);
    // Nodes estimated at 0.7 by lookup alone were accepted 1 time in 5: the estimate follows.
    AcceptanceTable tab;
    for (int i = 0; i < 200; ++i) tab.record_calibration(0.7f, 1, Source::LOOKUP, i % 5 == 0);
    CHECK(std::fabs(tab.calibrated(0.7f, 1, Source::LOOKUP) - 0.2f) < 0.03f);
    CHECK(tab.calibrated(0.7f, 2, Source::LOOKUP) == 0.7f);  // agreeing sources: another cell
    CHECK(tab.calibrated(0.7f, 1, Source::SUFFIX) == 0.7f);
}

APLS_TEST_MAIN()
