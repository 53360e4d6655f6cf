// capi_vocab.cpp — the tokenizer in the C API.
#include <cstring>

#include "capi_types.h"
#include "capi_util.h"

using apls::guard;
using apls::null_arg;

extern "C" {

apls_status apls_tokenize(const apls_model* model, const char* text, size_t text_len, int32_t* tokens, int32_t n_max,
                          bool add_special, bool parse_special, int32_t* n_out) {
    if (!model) return null_arg("model");
    if (!text && text_len > 0) return null_arg("text");
    if (!tokens && n_max > 0) return null_arg("tokens");
    if (!n_out) return null_arg("n_out");
    return guard([&] {
        const std::vector<int32_t> ids = model->impl->require_vocab().tokenize(
            std::string_view(text ? text : "", text_len), add_special, parse_special);
        *n_out = static_cast<int32_t>(ids.size());
        if (n_max < 0 || ids.size() > static_cast<size_t>(n_max))
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "token buffer of ", n_max, " entries is too small: ", ids.size(),
                       " needed");
        if (!ids.empty()) std::memcpy(tokens, ids.data(), ids.size() * sizeof(int32_t));
    });
}

apls_status apls_detokenize(const apls_model* model, const int32_t* tokens, int32_t n, char* buf, size_t buf_size,
                            bool special, size_t* len_out) {
    if (!model) return null_arg("model");
    if (!tokens && n > 0) return null_arg("tokens");
    if (!buf && buf_size > 0) return null_arg("buf");
    if (!len_out) return null_arg("len_out");
    return guard([&] {
        if (n < 0) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "n_tokens ", n, " is negative");
        const std::string text =
            model->impl->require_vocab().detokenize(std::vector<int32_t>(tokens, tokens + n), special);
        *len_out = text.size();
        if (text.size() > buf_size)
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "text buffer of ", buf_size, " bytes is too small: ", text.size(),
                       " needed");
        if (!text.empty()) std::memcpy(buf, text.data(), text.size());
    });
}

int32_t apls_token_bos(const apls_model* m) { return m && m->impl->vocab() ? m->impl->vocab()->bos() : -1; }
int32_t apls_token_eos(const apls_model* m) { return m && m->impl->vocab() ? m->impl->vocab()->eos() : -1; }
int32_t apls_token_eot(const apls_model* m) { return m && m->impl->vocab() ? m->impl->vocab()->eot() : -1; }

bool apls_token_is_eog(const apls_model* m, int32_t token) {
    if (!m || !m->impl->vocab() || token < 0 || token >= m->impl->vocab()->n_tokens()) return false;
    return m->impl->vocab()->is_eog(token);
}

}  // extern "C"
