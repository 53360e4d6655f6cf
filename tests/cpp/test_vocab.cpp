// test_vocab.cpp — the tokenizer on tiny vocabularies built in memory (GGUF images written here).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "common.h"
#include "gguf.h"
#include "pretokenize.h"
#include "unicode.h"
#include "vocab.h"

using apls::Vocab;

namespace {

// A minimal GGUF v3 writer: metadata only, no tensors.
struct GgufImage {
    std::vector<uint8_t> kv;
    uint64_t n_kv = 0;

    template <typename T>
    static void put(std::vector<uint8_t>& b, T v) {
        const uint8_t* p = reinterpret_cast<const uint8_t*>(&v);
        b.insert(b.end(), p, p + sizeof(T));
    }
    static void put_str(std::vector<uint8_t>& b, const std::string& s) {
        put<uint64_t>(b, s.size());
        b.insert(b.end(), s.begin(), s.end());
    }
    void key(const std::string& k, uint32_t type) {
        put_str(kv, k);
        put<uint32_t>(kv, type);
        n_kv++;
    }
    void str(const std::string& k, const std::string& v) {
        key(k, 8);
        put_str(kv, v);
    }
    void u32(const std::string& k, uint32_t v) {
        key(k, 4);
        put<uint32_t>(kv, v);
    }
    void boolean(const std::string& k, bool v) {
        key(k, 7);
        put<uint8_t>(kv, v ? 1 : 0);
    }
    void strs(const std::string& k, const std::vector<std::string>& v) {
        key(k, 9);
        put<uint32_t>(kv, 8);
        put<uint64_t>(kv, v.size());
        for (const auto& s : v) put_str(kv, s);
    }
    void i32s(const std::string& k, const std::vector<int32_t>& v) {
        key(k, 9);
        put<uint32_t>(kv, 5);
        put<uint64_t>(kv, v.size());
        for (int32_t x : v) put<int32_t>(kv, x);
    }
    void f32s(const std::string& k, const std::vector<float>& v) {
        key(k, 9);
        put<uint32_t>(kv, 6);
        put<uint64_t>(kv, v.size());
        for (float x : v) put<float>(kv, x);
    }
    std::vector<uint8_t> bytes() const {
        std::vector<uint8_t> b = {'G', 'G', 'U', 'F'};
        put<uint32_t>(b, 3);
        put<uint64_t>(b, 0);
        put<uint64_t>(b, n_kv);
        b.insert(b.end(), kv.begin(), kv.end());
        while (b.size() % 32) b.push_back(0);
        return b;
    }
};

std::unique_ptr<Vocab> load(const GgufImage& img) {
    std::vector<uint8_t> b = img.bytes();
    auto f = apls::gguf::File::from_memory(b.data(), b.size());
    return Vocab::from_gguf(*f);  // the Vocab copies what it needs
}

// GPT-2 alphabet spelling of a byte.
std::string byte_char(unsigned b) {
    bool self = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    unsigned cp = b;
    if (!self) {
        unsigned n = 0;
        for (unsigned x = 0; x < b; ++x) {
            bool s = (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE);
            if (!s) n++;
        }
        cp = 256 + n;
    }
    std::string s;
    apls::unicode::append_utf8(s, cp);
    return s;
}

// Byte-level BPE: the 256 byte tokens, then "he", "ll", "hell", "hello", "Ġw", then <|end|>.
GgufImage bpe_image(const std::string& pre = "gpt-2") {
    GgufImage g;
    std::vector<std::string> toks;
    for (unsigned b = 0; b < 256; ++b) toks.push_back(byte_char(b));
    for (const char* t : {"he", "ll", "hell", "hello", "\xC4\xA0w"}) toks.push_back(t);
    toks.push_back("<|end|>");
    std::vector<int32_t> types(toks.size(), 1);
    types.back() = 3;
    g.str("tokenizer.ggml.model", "gpt2");
    g.str("tokenizer.ggml.pre", pre);
    g.strs("tokenizer.ggml.tokens", toks);
    g.i32s("tokenizer.ggml.token_type", types);
    g.strs("tokenizer.ggml.merges", {"h e", "l l", "he ll", "hell o", "\xC4\xA0 w"});
    g.u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(toks.size() - 1));
    return g;
}

}  // namespace

APLS_TEST(unicode_classes) {
    using namespace apls::unicode;
    CHECK(is_letter('a') && is_letter(0x4E2D) && is_letter(0x017F) && !is_letter('1'));
    CHECK(is_number('7') && is_number(0x0663) && is_number(0x00BD) && is_number(0x216B));
    CHECK(is_space(' ') && is_space('\n') && is_space(0x3000) && is_space(0x85) && is_space(0x2028));
    CHECK(!is_space(0x1C) && !is_space(0x200B) && !is_space(0x180E));  // not White_Space
    CHECK(flags(0x0301) & kMark);
    CHECK(flags(0x0378) == 0);  // unassigned
    auto cps = decode_utf8("a\xC3\xA9\xFF\xE2\x82");
    CHECK(cps.size() == 5);
    CHECK(cps[1].cp == 0xE9 && cps[1].len == 2);
    CHECK(cps[2].cp == kInvalidBase + 0xFF && cps[3].cp == kInvalidBase + 0xE2 && cps[4].len == 1);
    CHECK(decode_utf8("\xED\xA0\x80").size() == 3);  // a surrogate is not a scalar value
    CHECK(decode_utf8("\xC0\x80").size() == 2);      // overlong
}

APLS_TEST(pretokenize_gpt2_llama3_smollm) {
    using apls::PreTokenizer;
    auto join = [](const std::vector<std::string_view>& v) {
        std::string s;
        for (auto p : v) s += "[" + std::string(p) + "]";
        return s;
    };
    CHECK(join(apls::pretokenize(PreTokenizer::Gpt2, "Hello  world's 123!!\n\n x")) ==
          "[Hello][ ][ world]['s][ 123][!!][\n\n][ x]");
    CHECK(join(apls::pretokenize(PreTokenizer::SmolLM, "a 123")) == "[a][ ][1][2][3]");
    CHECK(join(apls::pretokenize(PreTokenizer::Llama3, "1234567 (x) IT'S\r\n  y")) ==
          "[123][456][7][ (][x][)][ IT]['S][\r\n][ ][ y]");
    CHECK(join(apls::pretokenize(PreTokenizer::Qwen2, "12 ab")) == "[1][2][ ab]");
    CHECK(join(apls::pretokenize(PreTokenizer::Gpt2, "a\xFF\xFE b")) == "[a][\xFF\xFE][ b]");
    CHECK(apls::pretokenize(PreTokenizer::Gpt2, "").empty());
}

APLS_TEST(bpe_merges_specials_round_trip) {
    auto v = load(bpe_image());
    CHECK(v->model_name() == "gpt2" && v->pre() == "gpt-2" && !v->add_bos());
    const int32_t hello = 259, gw = 260, end = 261;
    CHECK(v->tokenize("hello", true, false) == std::vector<int32_t>{hello});
    auto ids = v->tokenize("hello world<|end|>", false, true);
    CHECK(ids.size() >= 3 && ids[0] == hello && ids[1] == gw && ids.back() == end);
    CHECK(v->is_eog(end) && v->eos() == end && v->eot() == end);  // eot guessed from "<|end|>"
    auto plain = v->tokenize("hello<|end|>", false, false);
    CHECK(std::find(plain.begin(), plain.end(), end) == plain.end());
    CHECK(v->detokenize(plain, false) == "hello<|end|>");
    CHECK(v->detokenize(ids, false) == "hello world");
    CHECK(v->detokenize(ids, true) == "hello world<|end|>");
    std::string raw = "x\xFF\xC3(\x00y";
    raw.push_back('\0');
    CHECK(v->detokenize(v->tokenize(raw, false, false), false) == raw);
    CHECK_THROWS(v->detokenize({0, 262}, false), APLS_STATUS_INVALID_ARGUMENT, "token id 262 out of range [0, 262)");
    CHECK_THROWS(v->token_to_piece(-3, true), APLS_STATUS_INVALID_ARGUMENT, "token id -3 out of range");
}

APLS_TEST(bpe_load_errors) {
    CHECK_THROWS(load(bpe_image("no-such")), APLS_STATUS_UNSUPPORTED, "tokenizer.ggml.pre 'no-such'");
    GgufImage bad;
    bad.str("tokenizer.ggml.model", "gpt2");
    bad.strs("tokenizer.ggml.tokens", {"a", "b", "ab"});
    bad.i32s("tokenizer.ggml.token_type", {1, 1});
    bad.strs("tokenizer.ggml.merges", {"a b"});
    CHECK_THROWS(load(bad), APLS_STATUS_FORMAT, "tokenizer.ggml.token_type has 2 entries");
    GgufImage unk;
    unk.str("tokenizer.ggml.model", "wordpiece");
    unk.strs("tokenizer.ggml.tokens", {"a"});
    CHECK_THROWS(load(unk), APLS_STATUS_UNSUPPORTED, "tokenizer.ggml.model 'wordpiece'");
    GgufImage none;
    none.str("general.architecture", "llama");
    CHECK_THROWS(load(none), APLS_STATUS_FORMAT, "missing tokenizer.ggml.model");
}

APLS_TEST(spm_merge_by_score_and_byte_fallback) {
    const std::string sp = "\xE2\x96\x81";  // U+2581
    std::vector<std::string> toks = {"<unk>", "<s>", "</s>"};
    std::vector<int32_t> types = {2, 3, 3};
    std::vector<float> scores = {0, 0, 0};
    char name[8];
    for (int b = 0; b < 256; ++b) {
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        toks.push_back(name);
        types.push_back(6);
        scores.push_back(0);
    }
    const int32_t base = static_cast<int32_t>(toks.size());
    for (auto [t, s] : std::vector<std::pair<std::string, float>>{
             {sp, -1}, {"a", -2}, {"b", -3}, {sp + "a", -4}, {"ab", -5}, {sp + "ab", -6}, {"ba", -0.5f}}) {
        toks.push_back(t);
        types.push_back(1);
        scores.push_back(s);
    }
    GgufImage g;
    g.str("tokenizer.ggml.model", "llama");
    g.strs("tokenizer.ggml.tokens", toks);
    g.i32s("tokenizer.ggml.token_type", types);
    g.f32s("tokenizer.ggml.scores", scores);
    g.u32("tokenizer.ggml.bos_token_id", 1);
    g.u32("tokenizer.ggml.eos_token_id", 2);
    g.u32("tokenizer.ggml.unknown_token_id", 0);
    auto v = load(g);
    CHECK(v->add_bos() && v->add_space_prefix() && v->bos() == 1);
    // "▁ab": "▁a" (-4) beats "ab" (-5), then "▁ab" (-6).
    CHECK(v->tokenize("ab", true, false) == (std::vector<int32_t>{1, base + 5}));
    // "▁aba": best pair first is "ba" (-0.5): ▁ a ba -> "▁a" + "ba".
    CHECK(v->tokenize("aba", false, false) == (std::vector<int32_t>{base + 3, base + 6}));
    // 'é' is no token: its two bytes.
    auto ids = v->tokenize("a\xC3\xA9", false, false);
    CHECK(ids == (std::vector<int32_t>{base + 3, 3 + 0xC3, 3 + 0xA9}));
    for (std::string s : {"a b", " ab", "ab  ", "\xF0\x9F\x98\x80 x\xFF", ""}) {
        CHECK(v->detokenize(v->tokenize(s, false, false), false) == s);
    }
    CHECK(v->tokenize("<s>a", false, true)[0] == 1);
    CHECK(v->detokenize(v->tokenize("<s>a", true, true), true) == "<s><s>a");
}

APLS_TEST(utf8_stream) {
    apls::Utf8Stream st;
    std::string e = "\xF0\x9F\x98\x80";  // U+1F600
    CHECK(st.push(e.substr(0, 1)).empty());
    CHECK(st.push(e.substr(1, 2)).empty());
    CHECK(st.push(e.substr(3) + "a") == e + "a");
    CHECK(st.push("\xFF") == "\xEF\xBF\xBD");
    CHECK(st.push("\xE2\x82").empty());
    CHECK(st.flush() == "\xEF\xBF\xBD");
    CHECK(st.push("b") == "b");
}

APLS_TEST_MAIN()
