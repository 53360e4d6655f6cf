// pretokenize.cpp — leftmost-first regex alternations matched by hand.
//
// Each match_* function returns the length (in code points, >= 1) of the regex match starting
// at position i of the window [i, end). Alternatives are tried in the regex's order, and where
// the regex would backtrack (optional leading space, \s+(?!\S), \s*[\r\n]+) the code computes
// the first result backtracking would find. The window end acts as end of text for lookaheads,
// as in the reference, which runs the regex on each piece separately.
#include "pretokenize.h"

#include "unicode.h"

namespace apls {

namespace {

using unicode::Cp;

struct Text {
    std::vector<Cp> cps;
    std::vector<uint8_t> fl;  // class flags per code point

    explicit Text(std::string_view s) : cps(unicode::decode_utf8(s)) {
        fl.reserve(cps.size());
        for (const Cp& c : cps) fl.push_back(unicode::flags(c.cp));
    }
    uint32_t cp(size_t i) const { return cps[i].cp; }
    bool L(size_t i) const { return fl[i] & unicode::kLetter; }
    bool N(size_t i) const { return fl[i] & unicode::kNumber; }
    bool S(size_t i) const { return fl[i] & unicode::kWhitespace; }
    // [^\s\p{L}\p{N}]
    bool O(size_t i) const { return !(fl[i] & (unicode::kLetter | unicode::kNumber | unicode::kWhitespace)); }
    bool crlf(size_t i) const { return cps[i].cp == '\r' || cps[i].cp == '\n'; }

    template <typename Pred>
    size_t run(size_t j, size_t end, Pred pred) const {
        while (j < end && pred(j)) ++j;
        return j;
    }
};

// Contractions 's 't 're 've 'm 'll 'd; `icase` folds ASCII case (and U+017F LONG S to 's',
// as Unicode simple case folding does in the reference regex engine).
size_t match_contraction(const Text& t, size_t i, size_t end, bool icase) {
    if (t.cp(i) != '\'' || i + 1 >= end) return 0;
    auto low = [&](size_t k) -> uint32_t {
        uint32_t c = t.cp(k);
        if (!icase) return c;
        if (c >= 'A' && c <= 'Z') return c + 32;
        if (c == 0x017F) return 's';
        return c;
    };
    uint32_t a = low(i + 1);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= end) return 0;
    uint32_t b = low(i + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

// \s+(?!\S)|\s+ at a whitespace code point: the whole run if it reaches the window end or is a
// single code point, otherwise all but its last code point (which then leads the next piece).
size_t match_space_run(const Text& t, size_t i, size_t end) {
    size_t j = t.run(i, end, [&](size_t k) { return t.S(k); });
    if (j == end || j - i == 1) return j - i;
    return j - i - 1;
}

size_t match_gpt2(const Text& t, size_t i, size_t end) {
    if (size_t n = match_contraction(t, i, end, false)) return n;
    const bool sp = t.cp(i) == ' ' && i + 1 < end;
    auto L = [&](size_t k) { return t.L(k); };
    auto N = [&](size_t k) { return t.N(k); };
    auto O = [&](size_t k) { return t.O(k); };
    if (sp && t.L(i + 1)) return t.run(i + 1, end, L) - i;
    if (t.L(i)) return t.run(i, end, L) - i;
    if (sp && t.N(i + 1)) return t.run(i + 1, end, N) - i;
    if (t.N(i)) return t.run(i, end, N) - i;
    if (sp && t.O(i + 1)) return t.run(i + 1, end, O) - i;
    if (t.O(i)) return t.run(i, end, O) - i;
    return match_space_run(t, i, end);
}

size_t match_llama3(const Text& t, size_t i, size_t end, size_t max_digits) {
    if (size_t n = match_contraction(t, i, end, true)) return n;
    auto L = [&](size_t k) { return t.L(k); };
    auto O = [&](size_t k) { return t.O(k); };
    auto CR = [&](size_t k) { return t.crlf(k); };
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!t.crlf(i) && !t.L(i) && !t.N(i) && i + 1 < end && t.L(i + 1)) return t.run(i + 1, end, L) - i;
    if (t.L(i)) return t.run(i, end, L) - i;
    // \p{N}{1,max_digits}
    if (t.N(i)) {
        size_t j = i;
        while (j < end && t.N(j) && j - i < max_digits) ++j;
        return j - i;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    if (t.cp(i) == ' ' && i + 1 < end && t.O(i + 1)) return t.run(t.run(i + 1, end, O), end, CR) - i;
    if (t.O(i)) return t.run(t.run(i, end, O), end, CR) - i;
    // \s*[\r\n]+ : the whitespace run up to and including its last \r or \n.
    size_t j = t.run(i, end, [&](size_t k) { return t.S(k); });
    for (size_t k = j; k > i; --k) {
        if (t.crlf(k - 1)) return k - i;
    }
    return match_space_run(t, i, end);
}

template <typename Match>
void split_window(const Text& t, size_t b, size_t e, Match match, std::vector<std::pair<size_t, size_t>>& out) {
    for (size_t i = b; i < e;) {
        size_t n = match(i, e);
        out.emplace_back(i, i + n);
        i += n;
    }
}

}  // namespace

bool pretokenizer_from_name(const std::string& name, PreTokenizer* out) {
    if (name == "default" || name == "gpt-2" || name == "gpt2") *out = PreTokenizer::Gpt2;
    else if (name == "smollm") *out = PreTokenizer::SmolLM;
    else if (name == "llama-bpe" || name == "llama3") *out = PreTokenizer::Llama3;
    else if (name == "qwen2") *out = PreTokenizer::Qwen2;
    else return false;
    return true;
}

std::vector<std::string_view> pretokenize(PreTokenizer type, std::string_view text) {
    Text t(text);
    const size_t n = t.cps.size();
    std::vector<std::pair<size_t, size_t>> spans;  // code point ranges
    auto gpt2 = [&](size_t i, size_t e) { return match_gpt2(t, i, e); };
    switch (type) {
        case PreTokenizer::Gpt2:
            split_window(t, 0, n, gpt2, spans);
            break;
        case PreTokenizer::SmolLM: {
            // Each number code point is a piece of its own; GPT-2 splitting applies between them.
            size_t b = 0;
            for (size_t i = 0; i < n; ++i) {
                if (!t.N(i)) continue;
                split_window(t, b, i, gpt2, spans);
                spans.emplace_back(i, i + 1);
                b = i + 1;
            }
            split_window(t, b, n, gpt2, spans);
            break;
        }
        case PreTokenizer::Llama3:
            split_window(t, 0, n, [&](size_t i, size_t e) { return match_llama3(t, i, e, 3); }, spans);
            break;
        case PreTokenizer::Qwen2:
            split_window(t, 0, n, [&](size_t i, size_t e) { return match_llama3(t, i, e, 1); }, spans);
            break;
    }
    std::vector<std::string_view> pieces;
    pieces.reserve(spans.size());
    for (auto [a, b] : spans) {
        size_t off = t.cps[a].offset;
        size_t end = t.cps[b - 1].offset + t.cps[b - 1].len;
        pieces.push_back(text.substr(off, end - off));
    }
    return pieces;
}

}  // namespace apls
