// apls.hpp — header-only C++17 RAII wrappers over the C API (apls.h).
//
// Why a separate header: the engine's own C++ classes are not exported from libapls (only the
// apls_* C functions are), so a C++ application talks to the library through the C API. These
// wrappers add what C++ code expects on top of it, and nothing else:
//   - ownership: Model, Context and Sampler own their handle (unique, move-only) and free it in
//     the destructor; a Context keeps no reference to its Model object, so, as in C, destroy every
//     Context before the Model it was made from;
//   - errors: a failing call throws apls::c::Error carrying the apls_status and the library's
//     message (apls_last_error());
//   - convenience: tokenize / detokenize with std::string and std::vector, decode of a token span.
// Every method is a thin inline call; get() returns the C handle for anything not wrapped here.
#ifndef APLS_HPP
#define APLS_HPP

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "apls/apls.h"

namespace apls {
namespace c {

// A failed C API call: status() is the apls_status, what() the library's message.
class Error : public std::runtime_error {
public:
    Error(apls_status status, const std::string& message)
        : std::runtime_error(message.empty() ? std::string(apls_status_name(status)) : message), status_(status) {}
    apls_status status() const noexcept { return status_; }

private:
    apls_status status_;
};

// Throw Error for a non-OK status, with the message the library left for this thread.
inline void check(apls_status status) {
    if (status != APLS_STATUS_OK) throw Error(status, apls_last_error());
}

namespace detail {
// Unique ownership of a C handle freed by Free; the base of the three wrappers.
template <typename T, void (*Free)(T*)>
class Handle {
public:
    Handle() noexcept = default;
    explicit Handle(T* h) noexcept : h_(h) {}
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    Handle(Handle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
    Handle& operator=(Handle&& o) noexcept {
        if (this != &o) reset(std::exchange(o.h_, nullptr));
        return *this;
    }
    ~Handle() { reset(); }

    T* get() const noexcept { return h_; }
    explicit operator bool() const noexcept { return h_ != nullptr; }
    // Give up ownership: the caller frees the handle.
    T* release() noexcept { return std::exchange(h_, nullptr); }
    void reset(T* h = nullptr) noexcept {
        if (h_) Free(h_);
        h_ = h;
    }

private:
    T* h_ = nullptr;
};
}  // namespace detail

class Model : public detail::Handle<apls_model, apls_model_free> {
public:
    Model() noexcept = default;
    explicit Model(const std::string& path, apls_model_params params = apls_model_default_params()) {
        apls_model* m = nullptr;
        check(apls_model_load(path.c_str(), params, &m));
        reset(m);
    }

    int32_t n_vocab() const noexcept { return apls_model_n_vocab(get()); }
    int32_t n_layer() const noexcept { return apls_model_n_layer(get()); }
    int32_t n_embd() const noexcept { return apls_model_n_embd(get()); }
    int32_t n_ctx_train() const noexcept { return apls_model_n_ctx_train(get()); }
    bool is_eog(int32_t token) const noexcept { return apls_token_is_eog(get(), token); }

    // Token ids of UTF-8 text (two calls: the first learns the count when the guess is short).
    std::vector<int32_t> tokenize(std::string_view text, bool add_special = true, bool parse_special = false) const {
        std::vector<int32_t> ids(text.size() + 2);
        int32_t n = 0;
        apls_status st = apls_tokenize(get(), text.data(), text.size(), ids.data(), static_cast<int32_t>(ids.size()),
                                       add_special, parse_special, &n);
        if (st == APLS_STATUS_INVALID_ARGUMENT && n > static_cast<int32_t>(ids.size())) {
            ids.resize(static_cast<size_t>(n));
            st = apls_tokenize(get(), text.data(), text.size(), ids.data(), n, add_special, parse_special, &n);
        }
        check(st);
        ids.resize(static_cast<size_t>(n));
        return ids;
    }

    // Bytes of the text of `tokens` (may end inside a UTF-8 character for a partial sequence).
    std::string detokenize(const std::vector<int32_t>& tokens, bool special = false) const {
        std::string text(tokens.size() * 8, '\0');
        size_t len = 0;
        apls_status st = apls_detokenize(get(), tokens.data(), static_cast<int32_t>(tokens.size()), &text[0],
                                         text.size(), special, &len);
        if (st == APLS_STATUS_INVALID_ARGUMENT && len > text.size()) {
            text.resize(len);
            st = apls_detokenize(get(), tokens.data(), static_cast<int32_t>(tokens.size()), &text[0], text.size(),
                                 special, &len);
        }
        check(st);
        text.resize(len);
        return text;
    }
    std::string detokenize(int32_t token, bool special = false) const {
        return detokenize(std::vector<int32_t>{token}, special);
    }
};

class Context : public detail::Handle<apls_context, apls_context_free> {
public:
    Context() noexcept = default;
    explicit Context(const Model& model, apls_context_params params = apls_context_default_params()) {
        apls_context* c = nullptr;
        check(apls_context_init(model.get(), params, &c));
        reset(c);
    }

    uint32_t n_ctx() const noexcept { return apls_context_n_ctx(get()); }
    int32_t seq_len(int32_t seq_id = 0) const noexcept { return apls_kv_seq_len(get(), seq_id); }
    void truncate(int32_t seq_id, int32_t n) { check(apls_kv_seq_truncate(get(), seq_id, n)); }

    // Decode `n` tokens of sequence 0 continuing its positions, logits for the last token only;
    // returns that row (n_vocab floats, valid until the next decode). `plan` NULL = full model.
    const float* decode(const int32_t* tokens, int32_t n, const apls_plan* plan = nullptr) {
        apls_batch b{};
        b.n_tokens = n;
        b.token = tokens;
        check(apls_decode(get(), &b, plan));
        return logits(0);
    }
    const float* decode(const std::vector<int32_t>& tokens, const apls_plan* plan = nullptr) {
        return decode(tokens.data(), static_cast<int32_t>(tokens.size()), plan);
    }
    // Any batch (positions, sequences, several output rows).
    void decode(const apls_batch& batch, const apls_plan* plan = nullptr) { check(apls_decode(get(), &batch, plan)); }

    // Output row i of the last decode.
    const float* logits(int32_t i) const {
        const float* row = apls_get_logits_ith(get(), i);
        if (!row) throw Error(APLS_STATUS_INVALID_ARGUMENT, apls_last_error());
        return row;
    }
    // The greedy choice for output row i (largest logit; on a GPU without copying the logits).
    int32_t argmax(int32_t i) const {
        int32_t token = -1;
        check(apls_get_argmax_ith(get(), i, &token));
        return token;
    }
    // The k best ids of every output row, row by row (largest logit first; on a GPU without
    // copying the logits): n_outputs * k ids.
    std::vector<int32_t> top_k(int32_t k) const {
        std::vector<int32_t> out(static_cast<size_t>(apls_get_n_outputs(get())) * (k > 0 ? k : 0) + 1);
        check(apls_get_top_k(get(), k, out.data()));
        out.pop_back();
        return out;
    }
    // Greedy generation after `last` (chosen, not yet decoded): up to n_max tokens, ending
    // after an end-of-generation token when stop_at_eog (apls_generate_greedy).
    std::vector<int32_t> generate_greedy(int32_t last, int32_t n_max, bool stop_at_eog = true, int32_t seq_id = 0) {
        std::vector<int32_t> out(n_max > 0 ? static_cast<size_t>(n_max) : 1);  // never a NULL buffer
        int32_t n = 0;
        check(apls_generate_greedy(get(), seq_id, last, n_max, stop_at_eog, out.data(), &n));
        out.resize(static_cast<size_t>(n));
        return out;
    }
};

class Sampler : public detail::Handle<apls_sampler, apls_sampler_free> {
public:
    Sampler() noexcept = default;
    // The standard chain from params (temperature <= 0: greedy).
    explicit Sampler(const apls_sampler_params& params) {
        apls_sampler* s = nullptr;
        check(apls_sampler_init(&params, &s));
        reset(s);
    }
    // A chain with only the greedy selector.
    static Sampler greedy() {
        apls_sampler* s = nullptr;
        check(apls_sampler_chain_init(&s));
        Sampler out;
        out.reset(s);  // owned before the next call can throw
        check(apls_sampler_chain_add_greedy(s));
        return out;
    }

    int32_t sample(const float* logits, int32_t n_vocab) {
        int32_t tok = -1;
        check(apls_sampler_sample(get(), logits, n_vocab, &tok));
        return tok;
    }
    void accept(int32_t token) { check(apls_sampler_accept(get(), token)); }
};

// Free-function spellings of the helpers, for code that prefers them.
inline std::vector<int32_t> tokenize(const Model& m, std::string_view text, bool add_special = true,
                                     bool parse_special = false) {
    return m.tokenize(text, add_special, parse_special);
}
inline std::string detokenize(const Model& m, const std::vector<int32_t>& tokens, bool special = false) {
    return m.detokenize(tokens, special);
}
inline const float* decode(Context& ctx, const std::vector<int32_t>& tokens, const apls_plan* plan = nullptr) {
    return ctx.decode(tokens, plan);
}

}  // namespace c
}  // namespace apls

#endif  // APLS_HPP
