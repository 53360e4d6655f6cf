// fuzz_tokenizer.cpp — tokenize and detokenize arbitrary bytes with real vocabularies.
//
// Input: byte 0 picks the vocabulary (SmolLM2's byte-level BPE vocabulary under each supported
// pre-tokenizer, or a SentencePiece-style one with and without the space prefix), byte 1 the
// flags (add_special, parse_special, special pieces), the rest is the text.
//
// Invariants: ids are in range; the pre-tokenizer's pieces cover the text exactly; byte-level
// BPE round-trips every input whose bytes all have tokens (detokenize(tokenize(s)) == s with
// special pieces shown);
// SentencePiece round-trips text without special tokens; streaming the pieces through
// Utf8Stream gives valid UTF-8; ids outside the vocabulary are refused with INVALID_ARGUMENT.
#include <algorithm>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <vector>

#include "fuzz_util.h"
#include "gguf.h"
#include "pretokenize.h"
#include "unicode.h"
#include "vocab.h"

#ifndef APLS_FUZZ_DATA_DIR
#define APLS_FUZZ_DATA_DIR "tests/fuzz/data"
#endif

namespace {

std::vector<uint8_t> read_file(const std::string& name) {
    const char* dir = std::getenv("APLS_FUZZ_DATA");
    std::string path = std::string(dir ? dir : APLS_FUZZ_DATA_DIR) + "/" + name;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "fuzz_tokenizer: cannot read %s (set APLS_FUZZ_DATA)\n", path.c_str());
        std::exit(2);
    }
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void put_u64(std::vector<uint8_t>& out, uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// The image with the value of `key` (a STRING or a BOOL) replaced. The fixture files have no
// tensors, so nothing after the metadata depends on offsets.
std::vector<uint8_t> with_value(const std::vector<uint8_t>& img, const std::string& key, const std::string& str,
                                int boolean = -1) {
    std::vector<uint8_t> pat;
    put_u64(pat, key.size());
    pat.insert(pat.end(), key.begin(), key.end());
    auto it = std::search(img.begin(), img.end(), pat.begin(), pat.end());
    if (it == img.end()) {
        std::fprintf(stderr, "fuzz_tokenizer: key %s not in the fixture\n", key.c_str());
        std::exit(2);
    }
    size_t at = static_cast<size_t>(it - img.begin()) + pat.size() + 4;  // past the value type
    size_t old_len = boolean >= 0 ? 1 : 8 + img[at] + (size_t(img[at + 1]) << 8);
    std::vector<uint8_t> out(img.begin(), img.begin() + at);
    if (boolean >= 0) {
        out.push_back(static_cast<uint8_t>(boolean));
    } else {
        put_u64(out, str.size());
        out.insert(out.end(), str.begin(), str.end());
    }
    out.insert(out.end(), img.begin() + at + old_len, img.end());
    return out;
}

struct Tok {
    std::vector<uint8_t> image;
    bool has_byte[256];  // the byte has a token of its own (SmolLM2 lacks a few, e.g. 0xFF)
    std::unique_ptr<apls::gguf::File> file;
    std::unique_ptr<apls::Vocab> vocab;
};

std::vector<Tok>& vocabs() {
    static std::vector<Tok> v = [] {
        std::vector<uint8_t> bpe = read_file("vocab_bpe.gguf"), spm = read_file("vocab_spm.gguf");
        std::vector<std::vector<uint8_t>> images = {
            bpe,
            with_value(bpe, "tokenizer.ggml.pre", "llama-bpe"),
            with_value(bpe, "tokenizer.ggml.pre", "qwen2"),
            with_value(bpe, "tokenizer.ggml.pre", "gpt-2"),
            spm,
            with_value(spm, "tokenizer.ggml.add_space_prefix", "", 0),
        };
        std::vector<Tok> out(images.size());
        for (size_t i = 0; i < images.size(); ++i) {
            out[i].image = std::move(images[i]);
            out[i].file = apls::gguf::File::from_memory(out[i].image.data(), out[i].image.size());
            out[i].vocab = apls::Vocab::from_gguf(*out[i].file);
            for (int b = 0; b < 256; ++b) {
                const std::vector<int32_t> ids = out[i].vocab->tokenize(std::string(1, char(b)), false, false);
                out[i].has_byte[b] = !ids.empty() && ids[0] != out[i].vocab->unk();
            }
        }
        return out;
    }();
    return v;
}

bool is_valid_utf8(const std::string& s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    for (size_t i = 0; i < s.size();) {
        size_t len = apls::unicode::utf8_valid_len(p + i, s.size() - i);
        if (len == 0) return false;
        i += len;
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    (void)vocabs();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    apls_fuzz::Bytes in(data, size);
    auto& all = vocabs();
    const size_t which = in.byte() % all.size();
    const uint8_t flags = in.byte();
    const bool add_special = flags & 1, parse_special = flags & 2, show_special = flags & 4;
    const std::string text = in.rest();
    const apls::Vocab& v = *all[which].vocab;

    if (v.model_name() == "gpt2") {
        apls::PreTokenizer pt;
        FUZZ_CHECK(apls::pretokenizer_from_name(v.pre(), &pt), "unknown pre-tokenizer");
        std::string joined;
        for (std::string_view piece : apls::pretokenize(pt, text)) {
            FUZZ_CHECK(!piece.empty(), "empty pre-tokenizer piece");
            joined += piece;
        }
        FUZZ_CHECK(joined == text, "pre-tokenizer pieces do not cover the text");
    }

    const std::vector<int32_t> ids = v.tokenize(text, add_special, parse_special);
    for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < v.n_tokens(), "token id " + std::to_string(id) + " out of range");
    const std::string back = v.detokenize(ids, show_special || parse_special);
    bool representable = true;  // every byte has a token: no <unk> in the output
    for (unsigned char c : text) representable = representable && all[which].has_byte[c];
    if (!add_special && (show_special || parse_special) && representable) {
        // SentencePiece round-trips text without special tokens (they interrupt the prefix
        // space) and without U+2581 of its own (it is the visible space, read back as ' ').
        bool plain = text.find("\xE2\x96\x81") == std::string::npos;
        for (int32_t id : ids)
            plain = plain && v.token_type(id) != apls::kTokControl && v.token_type(id) != apls::kTokUserDefined;
        if (v.model_name() == "gpt2" || plain)
            FUZZ_CHECK(back == text, "round trip changed the text (vocab " + std::to_string(which) + ")");
    }

    apls::Utf8Stream stream;
    std::string streamed;
    for (int32_t id : ids) streamed += stream.push(v.token_to_piece(id, show_special));
    streamed += stream.flush();
    FUZZ_CHECK(is_valid_utf8(streamed), "Utf8Stream produced invalid UTF-8");
    if (v.model_name() == "gpt2" && is_valid_utf8(back) && !show_special && !parse_special && !add_special)
        FUZZ_CHECK(streamed == back, "streamed text differs from detokenize");

    // Ids from the input: in range they detokenize, out of range they are refused.
    apls_fuzz::Bytes raw(data, size);
    std::vector<int32_t> any;
    while (raw.left() >= 4 && any.size() < 64) any.push_back(raw.get<int32_t>());
    bool in_range = true;
    for (int32_t id : any) in_range = in_range && id >= 0 && id < v.n_tokens();
    try {
        (void)v.detokenize(any, flags & 8);
        FUZZ_CHECK(in_range, "detokenize accepted an id out of range");
    } catch (const apls::Error& e) {
        FUZZ_CHECK(!in_range && e.status() == APLS_STATUS_INVALID_ARGUMENT, e.what());
    }
    return 0;
}
