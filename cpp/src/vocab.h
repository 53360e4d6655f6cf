// vocab.h — the tokenizer: a model's vocabulary, text -> token ids and back.
//
// Two tokenizer families, chosen by tokenizer.ggml.model:
//   "gpt2"  : byte-level BPE. Text is split by a regex pre-tokenizer (tokenizer.ggml.pre), each
//             piece's bytes are mapped to the GPT-2 byte alphabet and merged by merge rank.
//   "llama" : SentencePiece-style BPE. Spaces become U+2581 (a leading one is added when
//             tokenizer.ggml.add_space_prefix), symbols are merged by token score, and symbols
//             outside the vocabulary fall back to <0xNN> byte tokens.
// Before either, the text is split on special tokens: user-defined tokens always (as the
// reference tokenizers do), control tokens only with parse_special.
//
// A Vocab is immutable after loading and may be used from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common.h"
#include "gguf.h"
#include "pretokenize.h"

namespace apls {

// Token types as stored in tokenizer.ggml.token_type.
enum TokenType : int32_t {
    kTokUndefined = 0,
    kTokNormal = 1,
    kTokUnknown = 2,
    kTokControl = 3,
    kTokUserDefined = 4,
    kTokUnused = 5,
    kTokByte = 6,
};

class Vocab {
public:
    // Throws apls::Error: APLS_STATUS_UNSUPPORTED for an unknown tokenizer.ggml.model or .pre,
    // APLS_STATUS_FORMAT for missing or inconsistent tokenizer metadata.
    static std::unique_ptr<Vocab> from_gguf(const gguf::File& f);

    int32_t n_tokens() const { return static_cast<int32_t>(text_.size()); }

    // add_special: prepend BOS (and append EOS) as the file says. parse_special: control tokens
    // written in the text become their ids; otherwise they are tokenized as plain text.
    std::vector<int32_t> tokenize(std::string_view text, bool add_special, bool parse_special) const;
    // Raw bytes of one token; control/unknown/unused tokens give their text only when `special`.
    std::string token_to_piece(int32_t id, bool special) const;
    // Concatenated pieces; for SentencePiece models the space added by add_space_prefix is
    // removed again, so detokenize(tokenize(s)) == s. Throws APLS_STATUS_INVALID_ARGUMENT for an
    // id outside [0, n_tokens).
    std::string detokenize(const std::vector<int32_t>& ids, bool special) const;

    int32_t bos() const { return bos_; }
    int32_t eos() const { return eos_; }
    int32_t eot() const { return eot_; }
    int32_t unk() const { return unk_; }
    int32_t pad() const { return pad_; }
    bool is_eog(int32_t id) const;
    bool add_bos() const { return add_bos_; }
    bool add_eos() const { return add_eos_; }
    bool add_space_prefix() const { return add_space_prefix_; }
    const std::string& model_name() const { return model_; }
    const std::string& pre() const { return pre_; }

    const std::string& token_text(int32_t id) const;  // as stored in the file
    int32_t token_type(int32_t id) const;
    float token_score(int32_t id) const;

private:
    Vocab() = default;
    struct Fragment {
        bool is_token;
        int32_t id;
        std::string_view text;
    };

    void load_tokens(const gguf::File& f);
    void load_special_ids(const gguf::File& f);
    void load_bpe(const gguf::File& f);
    void load_spm();
    void build_pieces();
    void build_special_matcher();

    void check_id(int32_t id) const;
    int32_t find_text(const std::string& s) const;
    std::vector<Fragment> split_special(std::string_view text, bool parse_special) const;
    void tokenize_bpe(std::string_view text, std::vector<int32_t>& out) const;
    void bpe_word(std::string_view piece, std::vector<int32_t>& out) const;
    void tokenize_spm(std::string_view text, bool add_prefix, std::vector<int32_t>& out) const;
    void byte_fallback(std::string_view bytes, std::vector<int32_t>& out) const;

    bool is_spm_ = false;
    std::string model_, pre_;
    PreTokenizer pre_type_ = PreTokenizer::Gpt2;
    bool ignore_merges_ = false;  // a piece that is a whole token is emitted as is (Llama 3)

    std::vector<std::string> text_;     // token text as stored
    std::vector<int32_t> type_;
    std::vector<float> score_;
    std::vector<std::string> piece_;    // decoded bytes of each token (for detokenization)
    std::unordered_map<std::string, int32_t> text_to_id_;  // first id with that text
    int32_t byte_token_[256];           // token of each byte (GPT-2 char / <0xNN>), -1 if none

    // BPE merges: (left id << 32 | right id) -> rank and merged id.
    struct Merge {
        int32_t rank;
        int32_t id;
    };
    std::unordered_map<uint64_t, Merge> merges_;

    // Special tokens for splitting, by first byte, longest first.
    struct Special {
        std::string_view text;
        int32_t id;
        bool control;
    };
    std::vector<Special> specials_[256];

    int32_t bos_ = -1, eos_ = -1, eot_ = -1, eom_ = -1, unk_ = -1, pad_ = -1;
    bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = true;
    std::vector<uint8_t> eog_;  // per token: ends generation

    // Word cache for BPE: pre-tokenized pieces repeat a lot in real text.
    mutable std::mutex cache_mu_;
    mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

// Streaming detokenization: bytes in, only complete UTF-8 characters out. Bytes that can never
// form a valid character come out as U+FFFD, so the output is always valid UTF-8.
class Utf8Stream {
public:
    std::string push(const std::string& bytes);
    std::string flush();  // whatever is pending, an incomplete tail as U+FFFD
private:
    std::string pending_;
};

}  // namespace apls
