// sampling.cpp — the sampler stages and the chain that runs them.
#include "sampling.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unordered_map>

#include "common.h"

namespace apls {

namespace {

// Floats in messages as "%g" (std::to_string prints six decimals: "0.700000").
std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

[[noreturn]] void bad_arg(const std::string& msg) { throw Error(APLS_STATUS_INVALID_ARGUMENT, msg); }

// Descending logit, ties by ascending id: a total order, so every sort is deterministic.
bool higher(const Candidate& a, const Candidate& b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); }

size_t argmax(const Candidates& c) {
    size_t best = 0;
    for (size_t i = 1; i < c.size(); i++)
        if (higher(c.v[i], c.v[best])) best = i;
    return best;
}

void keep_only(Candidates& c, size_t i) {
    c.v[0] = c.v[i];
    c.v.resize(1);
    c.sorted = true;
    c.identity = false;
}

// Make v[0..m) the m highest candidates, in order: O(n log m), not a full sort.
void sort_prefix(Candidates& c, size_t m) { std::partial_sort(c.v.begin(), c.v.begin() + m, c.v.end(), higher); }

// ---- stages ---------------------------------------------------------------------------------

// Repetition / frequency / presence penalties over the last `last_n` accepted tokens. Counts
// are kept incrementally on accept so apply() touches only the tokens that occurred.
class Penalties : public Stage {
public:
    Penalties(int32_t last_n, float repeat, float freq, float presence)
        : last_n_(last_n), repeat_(repeat), freq_(freq), presence_(presence) {
        // The window grows as tokens are accepted: last_n comes from the caller (INT32_MAX is
        // "the whole history") and must not size an allocation up front.
        const size_t initial = std::min<size_t>(static_cast<size_t>(last_n), 4096);
        hist_.reserve(initial);
        counts_.reserve(initial * 2);
    }

    void accept(int32_t token) override {
        if (last_n_ == 0) return;
        hist_.push_back(token);
        counts_[token]++;
        if (hist_.size() > window()) leave(hist_[hist_.size() - 1 - window()]);  // the oldest leaves the window
        if (hist_.size() >= window() + 2 * kRewind) {
            hist_.erase(hist_.begin(), hist_.begin() + kRewind);
            trimmed_ += kRewind;
        }
    }

    void unaccept() override {
        if (last_n_ == 0) return;
        if (hist_.empty()) throw Error(APLS_STATUS_INTERNAL, "sampler: no accepted token to take back");
        leave(hist_.back());
        hist_.pop_back();
        if (hist_.size() >= window()) counts_[hist_[hist_.size() - window()]]++;  // back into the window
        else if (trimmed_ > 0) throw Error(APLS_STATUS_INTERNAL, "sampler: history taken back past what is kept");
    }

    bool uses_history() const override { return repeat_ != 1.0f || freq_ != 0.0f || presence_ != 0.0f; }

    void reset() override {
        counts_.clear();
        hist_.clear();
        trimmed_ = 0;
    }

    void apply(Candidates& c) override {
        if (counts_.empty() || (repeat_ == 1.0f && freq_ == 0.0f && presence_ == 0.0f)) return;
        if (c.identity) {  // full vocabulary in id order: index directly
            for (const auto& [tok, n] : counts_)
                if (static_cast<size_t>(tok) < c.size()) penalize(c.v[tok], n);
        } else {
            for (Candidate& cd : c.v) {
                auto it = counts_.find(cd.id);
                if (it != counts_.end()) penalize(cd, it->second);
            }
        }
        c.sorted = false;  // penalties reorder logits
    }

    std::string describe() const override {
        return str("penalties(last_n=", last_n_, ", repeat=", num(repeat_), ", frequency=", num(freq_),
                   ", presence=", num(presence_), ")");
    }

private:
    // Tokens that may be taken back (speculative drafts) beyond the window: hist_ keeps the
    // window plus up to 2 * kRewind older tokens, trimmed kRewind at a time.
    static constexpr size_t kRewind = 1024;

    size_t window() const { return static_cast<size_t>(last_n_); }
    void leave(int32_t token) {
        auto it = counts_.find(token);
        if (--it->second == 0) counts_.erase(it);
    }
    void penalize(Candidate& cd, int32_t n) const {
        // llama.cpp semantics: the repetition penalty always pushes a logit towards "less likely".
        cd.logit = cd.logit <= 0 ? cd.logit * repeat_ : cd.logit / repeat_;
        cd.logit -= static_cast<float>(n) * freq_ + presence_;
    }

    int32_t last_n_;
    float repeat_, freq_, presence_;
    std::vector<int32_t> hist_;  // accepted tokens, oldest first: the window is the last last_n
    size_t trimmed_ = 0;         // tokens erased from hist_'s front
    std::unordered_map<int32_t, int32_t> counts_;  // occurrences in the window
};

class TopK : public Stage {
public:
    bool keeps_argmax() const override { return true; }
    explicit TopK(int32_t k) : k_(k) {}
    void apply(Candidates& c) override {
        const size_t k = static_cast<size_t>(k_);
        if (k == 0 || k >= c.size()) return;
        if (!c.sorted) sort_prefix(c, k);
        c.v.resize(k);
        c.sorted = true;
        c.identity = false;
    }
    std::string describe() const override { return str("top_k(", k_, ")"); }

private:
    int32_t k_;
};

class TopP : public Stage {
public:
    bool keeps_argmax() const override { return true; }
    TopP(float p, int32_t min_keep) : p_(p), min_keep_(min_keep) {}
    void apply(Candidates& c) override {
        if (p_ >= 1.0f || c.size() <= 1) return;
        c.softmax();
        const size_t n = c.size();
        size_t cut = c.sorted ? scan(c, 0, n, 0.0) : select(c);
        const size_t min_keep = std::min(n, static_cast<size_t>(min_keep_));
        if (cut < min_keep) {  // v[0..cut) are the top cut: pull in the next ones
            if (!c.sorted) std::nth_element(c.v.begin() + cut, c.v.begin() + min_keep - 1, c.v.end(), higher);
            cut = min_keep;
        }
        c.v.resize(cut);
        c.identity = false;
    }
    std::string describe() const override { return str("top_p(", num(p_), ", min_keep=", min_keep_, ")"); }

private:
    // v[lo..hi) sorted: the cut is after the first i with mass + p[lo..i] >= p_.
    size_t scan(const Candidates& c, size_t lo, size_t hi, double mass) const {
        for (size_t i = lo; i < hi; i++) {
            mass += c.v[i].p;
            if (mass >= p_) return i + 1;
        }
        return hi;
    }

    // Unsorted: bisect the cut with nth_element (expected O(n) overall) instead of sorting the
    // vocabulary; the nucleus can hold thousands of tokens. Leaves v[0..cut) the top cut
    // tokens, not in order.
    size_t select(Candidates& c) const {
        size_t lo = 0, hi = c.size();  // v[0..lo) are the top lo, holding `mass`; the cut is in (lo, hi]
        double mass = 0.0;
        while (hi - lo > 64) {
            const size_t mid = lo + (hi - lo) / 2;
            std::nth_element(c.v.begin() + lo, c.v.begin() + mid, c.v.begin() + hi, higher);
            double m = mass;
            for (size_t i = lo; i < mid; i++) m += c.v[i].p;
            if (m >= p_) {
                hi = mid;
            } else {
                lo = mid;
                mass = m;
            }
        }
        std::sort(c.v.begin() + lo, c.v.begin() + hi, higher);
        return scan(c, lo, hi, mass);
    }

    float p_;
    int32_t min_keep_;
};

class MinP : public Stage {
public:
    bool keeps_argmax() const override { return true; }
    MinP(float p, int32_t min_keep) : p_(p), min_keep_(min_keep) {}
    void apply(Candidates& c) override {
        if (p_ <= 0.0f || c.size() <= 1) return;
        // p_i >= min_p * p_max  <=>  logit_i - logit_max >= log(min_p): no softmax needed.
        const float top = c.sorted ? c.v[0].logit : c.v[argmax(c)].logit;
        const float floor = top + std::log(p_);
        size_t kept = 0;
        for (const Candidate& cd : c.v) kept += cd.logit >= floor;
        if (kept < static_cast<size_t>(min_keep_)) {  // too few pass: keep the min_keep best
            kept = std::min(c.size(), static_cast<size_t>(min_keep_));
            if (!c.sorted) sort_prefix(c, kept);
            c.v.resize(kept);
            c.sorted = true;
            c.identity = false;
            return;
        }
        if (kept == c.size()) return;
        size_t j = 0;
        for (size_t i = 0; i < c.size(); i++)  // stable, so `sorted` survives
            if (c.v[i].logit >= floor) c.v[j++] = c.v[i];
        c.v.resize(kept);
        c.identity = false;
    }
    std::string describe() const override { return str("min_p(", num(p_), ", min_keep=", min_keep_, ")"); }

private:
    float p_;
    int32_t min_keep_;
};

class Temperature : public Stage {
public:
    bool keeps_argmax() const override { return true; }
    explicit Temperature(float t) : t_(t) {}
    void apply(Candidates& c) override {
        if (t_ <= 0.0f) {  // zero temperature is the limit of sharpening: only the argmax remains
            keep_only(c, argmax(c));
            return;
        }
        if (t_ == 1.0f) return;
        for (Candidate& cd : c.v) cd.logit /= t_;  // order preserved: `sorted` still holds
    }
    std::string describe() const override { return str("temperature(", num(t_), ")"); }

private:
    float t_;
};

}  // namespace

// ---- candidates ---------------------------------------------------------------------------

void Candidates::softmax() {
    float top = -INFINITY;
    for (const Candidate& cd : v) top = std::max(top, cd.logit);
    double sum = 0.0;
    for (Candidate& cd : v) {
        // The equality test keeps inf - inf (an overflowed logit) from becoming NaN.
        cd.p = cd.logit == top ? 1.0f : std::exp(cd.logit - top);
        sum += cd.p;
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (Candidate& cd : v) cd.p *= inv;
}

// ---- sampler --------------------------------------------------------------------------------

Sampler::Sampler(const SamplerParams& p) {
    add_penalties(p.penalty_last_n, p.repeat_penalty, p.frequency_penalty, p.presence_penalty);
    add_top_k(p.top_k);
    add_top_p(p.top_p);
    add_min_p(p.min_p);
    add_temperature(p.temperature);
    if (p.temperature <= 0.0f) add_greedy();
    else add_dist(p.seed);
}

Sampler::~Sampler() = default;

void Sampler::check_open() const {
    if (selector_ != Selector::NONE)
        bad_arg("the sampler chain already ends with a selector (greedy or dist); add stages before it");
}

bool Sampler::uses_history() const {
    for (const auto& st : stages_)
        if (st->uses_history()) return true;
    return false;
}

double Sampler::uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

void Sampler::add_penalties(int32_t last_n, float repeat, float frequency, float presence) {
    check_open();
    if (last_n < 0) bad_arg(str("penalty_last_n must be >= 0 (0 = off), got ", last_n));
    if (!(repeat > 0.0f) || !std::isfinite(repeat))
        bad_arg("repeat_penalty must be a finite value > 0, got " + num(repeat));
    if (!std::isfinite(frequency)) bad_arg("frequency_penalty must be finite, got " + num(frequency));
    if (!std::isfinite(presence)) bad_arg("presence_penalty must be finite, got " + num(presence));
    stages_.push_back(std::make_unique<Penalties>(last_n, repeat, frequency, presence));
}

void Sampler::add_top_k(int32_t k) {
    check_open();
    if (k < 0) bad_arg(str("top_k must be >= 0 (0 = off), got ", k));
    stages_.push_back(std::make_unique<TopK>(k));
}

void Sampler::add_top_p(float p, int32_t min_keep) {
    check_open();
    if (!(p > 0.0f && p <= 1.0f)) bad_arg("top_p must be in (0, 1], got " + num(p));
    if (min_keep < 1) bad_arg(str("top_p min_keep must be >= 1, got ", min_keep));
    stages_.push_back(std::make_unique<TopP>(p, min_keep));
}

void Sampler::add_min_p(float p, int32_t min_keep) {
    check_open();
    if (!(p >= 0.0f && p <= 1.0f)) bad_arg("min_p must be in [0, 1], got " + num(p));
    if (min_keep < 1) bad_arg(str("min_p min_keep must be >= 1, got ", min_keep));
    stages_.push_back(std::make_unique<MinP>(p, min_keep));
}

void Sampler::add_temperature(float t) {
    check_open();
    if (!std::isfinite(t)) bad_arg("temperature must be finite, got " + num(t));
    stages_.push_back(std::make_unique<Temperature>(t));
}

void Sampler::add_greedy() {
    check_open();
    selector_ = Selector::GREEDY;
}

void Sampler::add_dist(uint64_t seed) {
    check_open();
    selector_ = Selector::DIST;
    seed_ = seed;
    rng_.seed(seed);
}

void Sampler::fill(const float* logits, int32_t n_vocab) {
    if (selector_ == Selector::NONE) bad_arg("the sampler chain has no selector: add greedy or dist last");
    if (!logits) bad_arg("logits is NULL");
    if (n_vocab <= 0) bad_arg(str("n_vocab must be > 0, got ", n_vocab));
    if (n_vocab_ != 0 && n_vocab != n_vocab_)
        bad_arg(
            str("n_vocab ", n_vocab, " does not match the sampler's n_vocab ", n_vocab_, " (fixed by its first row)"));
    cand_.v.resize(static_cast<size_t>(n_vocab));  // allocates on the first row only
    float top = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++) {
        const float l = logits[i];
        if (std::isnan(l)) bad_arg(str("logits[", i, "] is NaN"));
        if (l == INFINITY) bad_arg(str("logits[", i, "] is +inf"));
        top = std::max(top, l);
        cand_.v[static_cast<size_t>(i)] = Candidate{i, l, 0.0f};
    }
    if (top == -INFINITY) bad_arg("all logits are -inf: no token can be sampled");
    cand_.sorted = false;
    cand_.identity = true;
    n_vocab_ = n_vocab;
}

void Sampler::run_stages(const float* logits, int32_t n_vocab) {
    fill(logits, n_vocab);
    for (auto& s : stages_) s->apply(cand_);
}

int32_t Sampler::sample(const float* logits, int32_t n_vocab) {
    if (selector_ == Selector::GREEDY) {  // only the stages that can change the argmax (penalties)
        fill(logits, n_vocab);
        for (auto& s : stages_)
            if (!s->keeps_argmax()) s->apply(cand_);
        return cand_.v[argmax(cand_)].id;
    }
    run_stages(logits, n_vocab);
    cand_.softmax();
    // A uniform double in [0, 1) from the top 53 bits: the same on every platform.
    const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
    double cum = 0.0;
    for (const Candidate& cd : cand_.v) {
        cum += cd.p;
        if (u < cum) return cd.id;
    }
    // Rounding left cum just below 1: the last token with any mass takes the remainder.
    for (size_t i = cand_.size(); i-- > 0;)
        if (cand_.v[i].p > 0.0f) return cand_.v[i].id;
    return cand_.v[0].id;
}

void Sampler::probs(const float* logits, int32_t n_vocab, float* out) {
    run_stages(logits, n_vocab);
    if (!out) bad_arg("out is NULL");
    std::fill(out, out + n_vocab, 0.0f);
    if (selector_ == Selector::GREEDY) {
        out[cand_.v[argmax(cand_)].id] = 1.0f;
        return;
    }
    cand_.softmax();
    for (const Candidate& cd : cand_.v) out[cd.id] = cd.p;
}

std::vector<float> Sampler::probs(const float* logits, int32_t n_vocab) {
    std::vector<float> out(n_vocab > 0 ? static_cast<size_t>(n_vocab) : 0);
    probs(logits, n_vocab, out.data());
    return out;
}

void Sampler::accept(int32_t token) {
    if (token < 0) bad_arg(str("token ", token, " is negative"));
    if (n_vocab_ != 0 && token >= n_vocab_) bad_arg(str("token ", token, " out of range [0, ", n_vocab_, ")"));
    for (auto& s : stages_) s->accept(token);
}

void Sampler::unaccept(int32_t n) {
    for (int32_t i = 0; i < n; ++i)
        for (auto& s : stages_) s->unaccept();
}

void Sampler::reset() {
    for (auto& s : stages_) s->reset();
    rng_.seed(seed_);
}

std::string Sampler::describe() const {
    std::string s;
    for (const auto& st : stages_) s += st->describe() + " -> ";
    if (selector_ == Selector::GREEDY) s += "greedy";
    else if (selector_ == Selector::DIST) s += str("dist(seed=", seed_, ")");
    else s += "(no selector)";
    return s;
}

}  // namespace apls
