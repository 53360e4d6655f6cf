// vocab.cpp — loading the vocabulary from GGUF, BPE / SentencePiece tokenization, detokenization.
#include "vocab.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <queue>

#include "unicode.h"

namespace apls {

namespace {

constexpr const char* kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

// GPT-2's byte -> code point map: printable Latin-1 bytes stand for themselves, the other 68
// bytes (controls, space, DEL, NBSP, soft hyphen...) are moved to U+0100.. in byte order.
struct ByteMap {
    std::array<uint32_t, 256> to_cp{};
    std::array<int16_t, 512> to_byte{};  // code point -> byte, -1 if not in the alphabet
    ByteMap() {
        to_byte.fill(-1);
        uint32_t next = 256;
        for (uint32_t b = 0; b < 256; ++b) {
            bool self = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
            to_cp[b] = self ? b : next++;
            to_byte[to_cp[b]] = static_cast<int16_t>(b);
        }
    }
};

const ByteMap& byte_map() {
    static const ByteMap m;
    return m;
}

// Raw bytes -> their GPT-2 alphabet spelling (the form token texts are stored in).
std::string byte_level_encode(std::string_view bytes) {
    std::string s;
    s.reserve(bytes.size() * 2);
    for (unsigned char b : bytes) unicode::append_utf8(s, byte_map().to_cp[b]);
    return s;
}

// GPT-2 alphabet spelling -> raw bytes; characters outside the alphabet are kept as they are.
std::string byte_level_decode(const std::string& text) {
    std::string out;
    auto cps = unicode::decode_utf8(text);
    for (const auto& c : cps) {
        if (c.cp < byte_map().to_byte.size() && byte_map().to_byte[c.cp] >= 0) {
            out += static_cast<char>(byte_map().to_byte[c.cp]);
        } else {
            out.append(text, c.offset, c.len);
        }
    }
    return out;
}

// "<0xNN>" -> NN, or -1.
int parse_byte_token(const std::string& t) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; ++i) {
        char c = t[i];
        int d = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                         : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
    for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) {
        s.replace(p, from.size(), to);
    }
    return s;
}

const std::vector<gguf::Value>* get_typed_array(const gguf::File& f, const std::string& key, bool required) {
    const std::vector<gguf::Value>* a = f.get_array(key);
    if (!a && required) fail(APLS_STATUS_FORMAT, "missing ", key);
    return a;
}

// Texts of end-of-turn tokens in common chat formats; marks them end-of-generation.
const char* const kEogTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>",       "<end_of_turn>",   "<|end_of_turn|>",
    "<EOT>",      "<|eom_id|>", "<|endoftext|>", "<|end_of_text|>",
};
// Preference order when guessing the end-of-turn token of a file without eot_token_id.
const char* const kEotTexts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|end_of_turn|>", "<EOT>"};

}  // namespace

// ---- loading ---------------------------------------------------------------------------------

std::unique_ptr<Vocab> Vocab::from_gguf(const gguf::File& f) {
    std::unique_ptr<Vocab> v(new Vocab());
    if (!f.find("tokenizer.ggml.model")) fail(APLS_STATUS_FORMAT, "missing tokenizer.ggml.model");
    v->model_ = f.get_string("tokenizer.ggml.model");
    v->pre_ = f.get_string_or("tokenizer.ggml.pre", "default");
    if (v->model_ == "gpt2") {
        if (!pretokenizer_from_name(v->pre_, &v->pre_type_))
            fail(APLS_STATUS_UNSUPPORTED, "tokenizer.ggml.pre '", v->pre_,
                 "' is not supported (supported: default, gpt-2, smollm, llama-bpe, qwen2)");
        v->ignore_merges_ = v->pre_type_ == PreTokenizer::Llama3;  // Llama 3's tokenizer.json says so
    } else if (v->model_ == "llama") {
        v->is_spm_ = true;
    } else {
        fail(APLS_STATUS_UNSUPPORTED, "tokenizer.ggml.model '", v->model_,
             "' is not supported (supported: gpt2, llama)");
    }
    v->load_tokens(f);
    v->load_special_ids(f);
    v->add_bos_ = f.get_bool_or("tokenizer.ggml.add_bos_token", v->is_spm_);
    v->add_eos_ = f.get_bool_or("tokenizer.ggml.add_eos_token", false);
    v->add_space_prefix_ = v->is_spm_ && f.get_bool_or("tokenizer.ggml.add_space_prefix", true);
    v->build_pieces();
    if (v->is_spm_) v->load_spm();
    else v->load_bpe(f);
    v->build_special_matcher();
    return v;
}

void Vocab::load_tokens(const gguf::File& f) {
    const std::string kTok = "tokenizer.ggml.tokens", kType = "tokenizer.ggml.token_type",
                      kScore = "tokenizer.ggml.scores";
    const auto* toks = get_typed_array(f, kTok, true);
    if (toks->empty()) fail(APLS_STATUS_FORMAT, kTok, " is empty");
    if (toks->size() > static_cast<size_t>(INT32_MAX)) fail(APLS_STATUS_FORMAT, kTok, " has too many entries");
    const size_t n = toks->size();
    text_.reserve(n);
    for (const auto& t : *toks) text_.push_back(t.as_string(kTok));

    type_.assign(n, kTokNormal);
    if (const auto* types = get_typed_array(f, kType, false)) {
        if (types->size() != n)
            fail(APLS_STATUS_FORMAT, kType, " has ", types->size(), " entries but ", kTok, " has ", n);
        for (size_t i = 0; i < n; ++i) {
            int64_t t = (*types)[i].as_i64(kType);
            if (t < 0 || t > kTokByte)
                fail(APLS_STATUS_FORMAT, kType, "[", i, "] = ", t, " is not a token type (0..6)");
            type_[i] = t == kTokUndefined ? kTokNormal : static_cast<int32_t>(t);
        }
    }
    score_.assign(n, 0.0f);
    if (const auto* scores = get_typed_array(f, kScore, false)) {
        if (scores->size() != n)
            fail(APLS_STATUS_FORMAT, kScore, " has ", scores->size(), " entries but ", kTok, " has ", n);
        for (size_t i = 0; i < n; ++i) score_[i] = static_cast<float>((*scores)[i].as_f64(kScore));
    }
    text_to_id_.reserve(n);
    for (size_t i = 0; i < n; ++i) text_to_id_.emplace(text_[i], static_cast<int32_t>(i));
}

void Vocab::load_special_ids(const gguf::File& f) {
    auto read = [&](const char* key) -> int32_t {
        const gguf::Value* v = f.find(key);
        if (!v) return -1;
        int64_t id = v->as_i64(key);
        if (id == -1) return -1;
        if (id < 0 || id >= n_tokens()) fail(APLS_STATUS_FORMAT, key, " = ", id, " out of range [0, ", n_tokens(), ")");
        return static_cast<int32_t>(id);
    };
    bos_ = read("tokenizer.ggml.bos_token_id");
    eos_ = read("tokenizer.ggml.eos_token_id");
    eot_ = read("tokenizer.ggml.eot_token_id");
    eom_ = read("tokenizer.ggml.eom_token_id");
    unk_ = read("tokenizer.ggml.unknown_token_id");
    pad_ = read("tokenizer.ggml.padding_token_id");
    auto special_id = [&](const char* text) -> int32_t {
        int32_t id = find_text(text);
        return id >= 0 && (type_[id] == kTokControl || type_[id] == kTokUserDefined) ? id : -1;
    };
    if (eot_ < 0) {
        for (const char* t : kEotTexts) {
            if ((eot_ = special_id(t)) >= 0) break;
        }
    }
    eog_.assign(text_.size(), 0);
    for (int32_t id : {eos_, eot_, eom_}) {
        if (id >= 0) eog_[id] = 1;
    }
    for (const char* t : kEogTexts) {
        int32_t id = special_id(t);
        if (id >= 0) eog_[id] = 1;
    }
}

// Decoded bytes of every token, computed once so detokenization is a lookup.
void Vocab::build_pieces() {
    piece_.resize(text_.size());
    for (size_t i = 0; i < text_.size(); ++i) {
        const std::string& t = text_[i];
        int32_t type = type_[i];
        int byte = type == kTokByte ? parse_byte_token(t) : -1;
        if (byte >= 0) piece_[i] = std::string(1, static_cast<char>(byte));
        else if (type == kTokControl || type == kTokUnknown) piece_[i] = t;
        else if (is_spm_) piece_[i] = replace_all(t, kSpmSpace, " ");
        else if (type == kTokUserDefined) piece_[i] = t;  // added tokens are stored as raw text
        else piece_[i] = byte_level_decode(t);
    }
}

void Vocab::load_bpe(const gguf::File& f) {
    const std::string kMerges = "tokenizer.ggml.merges";
    for (int b = 0; b < 256; ++b) {
        std::string s;
        unicode::append_utf8(s, byte_map().to_cp[b]);
        byte_token_[b] = find_text(s);
    }
    const auto* merges = get_typed_array(f, kMerges, true);
    merges_.reserve(merges->size());
    for (size_t r = 0; r < merges->size(); ++r) {
        const std::string& m = (*merges)[r].as_string(kMerges);
        size_t sp = m.find(' ', 1);
        if (sp == std::string::npos || sp + 1 >= m.size())
            fail(APLS_STATUS_FORMAT, kMerges, "[", r, "] = '", m, "' is not of the form 'left right'");
        std::string left = m.substr(0, sp), right = m.substr(sp + 1);
        int32_t a = find_text(left), b = find_text(right), c = find_text(left + right);
        if (a < 0 || b < 0 || c < 0)
            fail(APLS_STATUS_FORMAT, kMerges, "[", r, "] = '", m, "' names a token missing from tokenizer.ggml.tokens");
        uint64_t key = (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b);
        merges_.emplace(key, Merge{static_cast<int32_t>(r), c});  // keeps the first (best) rank
    }
}

void Vocab::load_spm() {
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        byte_token_[b] = find_text(name);
    }
}

void Vocab::build_special_matcher() {
    for (size_t i = 0; i < text_.size(); ++i) {
        if ((type_[i] != kTokControl && type_[i] != kTokUserDefined) || text_[i].empty()) continue;
        unsigned char first = static_cast<unsigned char>(text_[i][0]);
        specials_[first].push_back({text_[i], static_cast<int32_t>(i), type_[i] == kTokControl});
    }
    for (auto& list : specials_) {
        std::stable_sort(list.begin(), list.end(),
                         [](const Special& a, const Special& b) { return a.text.size() > b.text.size(); });
    }
}

// ---- accessors -------------------------------------------------------------------------------

void Vocab::check_id(int32_t id) const {
    if (id < 0 || id >= n_tokens())
        fail(APLS_STATUS_INVALID_ARGUMENT, "token id ", id, " out of range [0, ", n_tokens(), ")");
}

int32_t Vocab::find_text(const std::string& s) const {
    auto it = text_to_id_.find(s);
    return it == text_to_id_.end() ? -1 : it->second;
}

const std::string& Vocab::token_text(int32_t id) const {
    check_id(id);
    return text_[id];
}
int32_t Vocab::token_type(int32_t id) const {
    check_id(id);
    return type_[id];
}
float Vocab::token_score(int32_t id) const {
    check_id(id);
    return score_[id];
}

bool Vocab::is_eog(int32_t id) const { return id >= 0 && id < n_tokens() && eog_[id]; }

// ---- tokenization ----------------------------------------------------------------------------

// Leftmost-longest split on special token texts. User-defined tokens always split (as the
// reference tokenizers' added tokens do); control tokens only when parse_special.
std::vector<Vocab::Fragment> Vocab::split_special(std::string_view text, bool parse_special) const {
    std::vector<Fragment> out;
    size_t start = 0;
    for (size_t i = 0; i < text.size();) {
        const Special* hit = nullptr;
        for (const Special& s : specials_[static_cast<unsigned char>(text[i])]) {
            if (s.control && !parse_special) continue;
            if (text.compare(i, s.text.size(), s.text) == 0) {
                hit = &s;
                break;
            }
        }
        if (!hit) {
            ++i;
            continue;
        }
        if (i > start) out.push_back({false, -1, text.substr(start, i - start)});
        out.push_back({true, hit->id, hit->text});
        i += hit->text.size();
        start = i;
    }
    if (start < text.size()) out.push_back({false, -1, text.substr(start)});
    return out;
}

std::vector<int32_t> Vocab::tokenize(std::string_view text, bool add_special, bool parse_special) const {
    if (text.size() > UINT32_MAX)
        fail(APLS_STATUS_INVALID_ARGUMENT, "text of ", text.size(), " bytes is too long to tokenize");
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 2);
    if (add_special && add_bos_ && bos_ >= 0) out.push_back(bos_);
    bool first_text = true;
    for (const Fragment& fr : split_special(text, parse_special)) {
        if (fr.is_token) {
            out.push_back(fr.id);
            continue;
        }
        if (is_spm_) tokenize_spm(fr.text, add_space_prefix_ && first_text, out);
        else tokenize_bpe(fr.text, out);
        first_text = false;
    }
    if (add_special && add_eos_ && eos_ >= 0) out.push_back(eos_);
    return out;
}

void Vocab::tokenize_bpe(std::string_view text, std::vector<int32_t>& out) const {
    for (std::string_view piece : pretokenize(pre_type_, text)) {
        constexpr size_t kMaxCached = 64;  // long pieces are rare repeats; keep the cache small
        if (piece.size() <= kMaxCached) {
            std::lock_guard<std::mutex> lock(cache_mu_);
            auto it = cache_.find(std::string(piece));
            if (it != cache_.end()) {
                out.insert(out.end(), it->second.begin(), it->second.end());
                continue;
            }
        }
        size_t before = out.size();
        bpe_word(piece, out);
        if (piece.size() <= kMaxCached) {
            std::lock_guard<std::mutex> lock(cache_mu_);
            if (cache_.size() >= 200000) cache_.clear();
            cache_.emplace(std::string(piece), std::vector<int32_t>(out.begin() + before, out.end()));
        }
    }
}

// Byte-level BPE of one piece: start from one symbol per byte and repeatedly apply the merge of
// lowest rank, leftmost first among equal ranks, until no adjacent pair has a merge.
void Vocab::bpe_word(std::string_view piece, std::vector<int32_t>& out) const {
    if (ignore_merges_) {
        int32_t id = find_text(byte_level_encode(piece));
        if (id >= 0 && (type_[id] == kTokNormal || type_[id] == kTokByte)) {
            out.push_back(id);
            return;
        }
    }
    struct Sym {
        int32_t id, prev, next;
    };
    std::vector<Sym> syms;
    syms.reserve(piece.size());
    for (unsigned char b : piece) {
        int32_t id = byte_token_[b] >= 0 ? byte_token_[b] : unk_;
        if (id < 0) continue;  // a vocabulary without this byte and without <unk>: nothing to emit
        int32_t k = static_cast<int32_t>(syms.size());
        syms.push_back({id, k - 1, k + 1});
    }
    if (syms.empty()) return;
    syms.back().next = -1;

    struct Cand {
        int32_t rank, left, right, left_id, right_id, merged;
    };
    auto worse = [](const Cand& a, const Cand& b) { return a.rank != b.rank ? a.rank > b.rank : a.left > b.left; };
    std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> pq(worse);
    auto consider = [&](int32_t l, int32_t r) {
        if (l < 0 || r < 0) return;
        uint64_t key = (static_cast<uint64_t>(syms[l].id) << 32) | static_cast<uint32_t>(syms[r].id);
        auto it = merges_.find(key);
        if (it != merges_.end()) pq.push({it->second.rank, l, r, syms[l].id, syms[r].id, it->second.id});
    };
    for (size_t i = 0; i + 1 < syms.size(); ++i) consider(static_cast<int32_t>(i), static_cast<int32_t>(i + 1));
    while (!pq.empty()) {
        Cand c = pq.top();
        pq.pop();
        Sym& l = syms[c.left];
        // Stale if either side has been merged since: ids only grow into longer tokens.
        if (l.id != c.left_id || l.next != c.right || syms[c.right].id != c.right_id) continue;
        Sym& r = syms[c.right];
        l.id = c.merged;
        l.next = r.next;
        if (r.next >= 0) syms[r.next].prev = c.left;
        r.id = -1;
        consider(l.prev, c.left);
        consider(c.left, l.next);
    }
    for (int32_t i = 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
}

// SentencePiece BPE of one fragment: spaces become U+2581, symbols start as UTF-8 characters
// and the adjacent pair whose concatenation is the highest-scoring token merges first
// (leftmost among equal scores). Symbols that are not tokens fall back to byte tokens.
void Vocab::tokenize_spm(std::string_view text, bool add_prefix, std::vector<int32_t>& out) const {
    std::string s;
    s.reserve(text.size() + 8);
    if (add_prefix) s += kSpmSpace;
    for (char ch : text) {
        if (ch == ' ') s += kSpmSpace;
        else s += ch;
    }
    struct Sym {
        uint32_t off, len;
        int32_t prev, next;
    };
    std::vector<Sym> syms;
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    for (size_t i = 0; i < s.size();) {
        size_t len = unicode::utf8_valid_len(p + i, s.size() - i);
        if (len == 0) len = 1;  // an invalid byte is a symbol of its own (and falls back to a byte token)
        int32_t k = static_cast<int32_t>(syms.size());
        syms.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(len), k - 1, k + 1});
        i += len;
    }
    if (syms.empty()) return;
    syms.back().next = -1;

    struct Cand {
        float score;
        int32_t left, right;
        uint32_t len;
    };
    auto worse = [](const Cand& a, const Cand& b) { return a.score != b.score ? a.score < b.score : a.left > b.left; };
    std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> pq(worse);
    auto mergeable = [&](int32_t id) { return type_[id] == kTokNormal || type_[id] == kTokUserDefined; };
    auto consider = [&](int32_t l, int32_t r) {
        if (l < 0 || r < 0) return;
        uint32_t len = syms[l].len + syms[r].len;
        int32_t id = find_text(s.substr(syms[l].off, len));
        if (id >= 0 && mergeable(id)) pq.push({score_[id], l, r, len});
    };
    for (size_t i = 0; i + 1 < syms.size(); ++i) consider(static_cast<int32_t>(i), static_cast<int32_t>(i + 1));
    while (!pq.empty()) {
        Cand c = pq.top();
        pq.pop();
        Sym& l = syms[c.left];
        Sym& r = syms[c.right];
        // Stale if either side has changed since: symbols only grow, so lengths tell.
        if (l.len == 0 || r.len == 0 || l.next != c.right || l.len + r.len != c.len) continue;
        l.len += r.len;
        l.next = r.next;
        if (r.next >= 0) syms[r.next].prev = c.left;
        r.len = 0;
        consider(l.prev, c.left);
        consider(c.left, l.next);
    }
    for (int32_t i = 0; i >= 0; i = syms[i].next) {
        std::string_view sym(s.data() + syms[i].off, syms[i].len);
        int32_t id = find_text(std::string(sym));
        if (id >= 0 && mergeable(id)) out.push_back(id);
        else byte_fallback(sym, out);
    }
}

void Vocab::byte_fallback(std::string_view bytes, std::vector<int32_t>& out) const {
    for (unsigned char b : bytes) {
        if (byte_token_[b] < 0) {  // no byte tokens: the whole symbol is unknown
            if (unk_ >= 0) out.push_back(unk_);
            return;
        }
    }
    for (unsigned char b : bytes) out.push_back(byte_token_[b]);
}

// ---- detokenization --------------------------------------------------------------------------

std::string Vocab::token_to_piece(int32_t id, bool special) const {
    check_id(id);
    int32_t t = type_[id];
    if ((t == kTokControl || t == kTokUnknown || t == kTokUnused) && !special) return std::string();
    return piece_[id];
}

std::string Vocab::detokenize(const std::vector<int32_t>& ids, bool special) const {
    for (int32_t id : ids) check_id(id);
    std::string out;
    // SentencePiece: the space tokenize() put before the first text fragment is taken off again.
    bool strip = is_spm_ && add_space_prefix_;
    for (int32_t id : ids) {
        int32_t t = type_[id];
        const std::string& p = piece_[id];
        if ((t == kTokControl || t == kTokUnknown || t == kTokUnused) && !special) continue;
        if (strip && (t == kTokNormal || t == kTokByte)) {
            strip = false;
            if (!p.empty() && p[0] == ' ') {
                out.append(p, 1, std::string::npos);
                continue;
            }
        }
        out += p;
    }
    return out;
}

// ---- Utf8Stream ------------------------------------------------------------------------------

namespace {

// How many bytes from s[0] form the start of a valid UTF-8 sequence (lead byte plus in-range
// continuation bytes), and how many the full sequence needs; 0 if s[0] cannot start one.
size_t utf8_prefix_len(const unsigned char* s, size_t n, size_t* need) {
    unsigned char c = s[0];
    if (c >= 0xC2 && c <= 0xDF) *need = 2;
    else if (c >= 0xE0 && c <= 0xEF) *need = 3;
    else if (c >= 0xF0 && c <= 0xF4) *need = 4;
    else return 0;
    size_t k = 1;
    for (; k < n && k < *need; ++k) {
        unsigned char lo = 0x80, hi = 0xBF;
        if (k == 1) {  // the second byte is narrowed to exclude overlongs, surrogates, > U+10FFFF
            if (c == 0xE0) lo = 0xA0;
            else if (c == 0xED) hi = 0x9F;
            else if (c == 0xF0) lo = 0x90;
            else if (c == 0xF4) hi = 0x8F;
        }
        if (s[k] < lo || s[k] > hi) break;
    }
    return k;
}

}  // namespace

std::string Utf8Stream::push(const std::string& bytes) {
    pending_ += bytes;
    std::string out;
    const auto* s = reinterpret_cast<const unsigned char*>(pending_.data());
    size_t n = pending_.size(), i = 0;
    while (i < n) {
        size_t len = unicode::utf8_valid_len(s + i, n - i);
        if (len > 0) {
            out.append(pending_, i, len);
            i += len;
            continue;
        }
        size_t need = 0;
        size_t pre = utf8_prefix_len(s + i, n - i, &need);
        if (pre > 0 && i + pre == n && pre < need) break;  // may still complete: wait for more
        out += "\xEF\xBF\xBD";  // one U+FFFD per maximal invalid subpart, as decoders do
        i += pre > 0 ? pre : 1;
    }
    pending_.erase(0, i);
    return out;
}

std::string Utf8Stream::flush() {
    std::string out = pending_.empty() ? std::string() : std::string("\xEF\xBF\xBD");
    pending_.clear();
    return out;
}

}  // namespace apls
