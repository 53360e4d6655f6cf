// sampling.h — token samplers as a chain of stages over one logits row.
//
// A Sampler holds an ordered list of stages (penalties, top-k, top-p, min-p, temperature), each
// narrowing or reshaping a candidate list (token id, logit, prob), and one selector at the end
// (greedy or dist) that picks the token. probs() exposes the distribution the selector draws
// from, for rejection sampling in speculative decoding.
//
// Buffers live in the sampler: after the first call, sample()/probs() do not allocate.
// A Sampler is used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace apls {

struct SamplerParams {
    float temperature = 0.8f;      // <= 0: greedy
    int32_t top_k = 40;            // 0: off
    float top_p = 0.95f;           // 1: off
    float min_p = 0.05f;           // 0: off
    float repeat_penalty = 1.0f;   // 1: off
    float frequency_penalty = 0.0f;
    float presence_penalty = 0.0f;
    int32_t penalty_last_n = 64;   // 0: penalties off
    uint64_t seed = 0;
};

struct Candidate {
    int32_t id;
    float logit;
    float p;
};

// The working set the stages transform. The flags let stages skip work: `sorted` means
// descending logit (ties: ascending id); `identity` means v[i].id == i over the full vocabulary.
struct Candidates {
    std::vector<Candidate> v;
    bool sorted = false;
    bool identity = false;

    size_t size() const { return v.size(); }
    void softmax();  // fills p from logit over the current set
};

class Stage {
public:
    virtual ~Stage() = default;
    virtual void apply(Candidates& c) = 0;
    virtual void accept(int32_t /*token*/) {}
    virtual void unaccept() {}  // take back the last accepted token
    virtual void reset() {}
    virtual std::string describe() const = 0;
    // True when the stage depends on the accepted-token history (penalties that change logits).
    virtual bool uses_history() const { return false; }
    // True when the stage never removes or demotes the highest candidate (ties: lowest id): a
    // greedy chain skips such stages, its choice being the same without them.
    virtual bool keeps_argmax() const { return false; }
};

class Sampler {
public:
    Sampler() = default;                        // an empty chain: add stages, then a selector
    explicit Sampler(const SamplerParams& p);   // penalties → top-k → top-p → min-p → temperature → dist|greedy
    ~Sampler();
    Sampler(const Sampler&) = delete;
    Sampler& operator=(const Sampler&) = delete;

    // Chain building. Each checks its arguments (apls::Error INVALID_ARGUMENT) and fails once
    // the chain already ends with a selector.
    void add_penalties(int32_t last_n, float repeat, float frequency, float presence);
    void add_top_k(int32_t k);
    void add_top_p(float p, int32_t min_keep = 1);
    void add_min_p(float p, int32_t min_keep = 1);
    void add_temperature(float t);
    void add_greedy();
    void add_dist(uint64_t seed);

    // The chosen token. The first call fixes n_vocab; later rows must match it.
    int32_t sample(const float* logits, int32_t n_vocab);
    // The selector's distribution over the full vocabulary (zeros for removed tokens) into
    // out[0..n_vocab). Does not advance the random generator.
    void probs(const float* logits, int32_t n_vocab, float* out);
    std::vector<float> probs(const float* logits, int32_t n_vocab);

    void accept(int32_t token);  // record a generated token for the penalties
    // Take back the last n accepted tokens (speculative decoding tries drafts in the history;
    // at most 1024 beyond the penalty window).
    void unaccept(int32_t n);
    void reset();                // clear the history and reseed

    int32_t n_vocab() const { return n_vocab_; }
    bool greedy() const { return selector_ == Selector::GREEDY; }
    bool uses_history() const;  // some stage depends on accepted tokens
    // The chosen token is always the largest raw logit (ties: the lowest id): greedy, and no
    // stage changes logits (top-k/p, min-p and temperature keep the largest one; penalties
    // do not). Then Context::argmax gives the same token, on a GPU without copying logits.
    bool picks_argmax() const { return greedy() && !uses_history(); }
    // A uniform double in [0, 1) from the chain's seeded generator (speculative acceptance draws
    // from the same stream, so a seed reproduces a whole run).
    double uniform();
    std::string describe() const;  // "top_k(40) -> temperature(0.7) -> dist(seed=1)"

private:
    enum class Selector { NONE, GREEDY, DIST };

    void check_open() const;
    void run_stages(const float* logits, int32_t n_vocab);
    void fill(const float* logits, int32_t n_vocab);

    std::vector<std::unique_ptr<Stage>> stages_;
    Selector selector_ = Selector::NONE;
    uint64_t seed_ = 0;
    std::mt19937_64 rng_;
    int32_t n_vocab_ = 0;  // 0 until the first row
    Candidates cand_;
};

}  // namespace apls
