// unicode.cpp — UTF-8 decoding and code point class lookup.
#include "unicode.h"

#include <algorithm>

namespace apls::unicode {

namespace {

// ASCII is by far the most common input: answer it from a table built once.
struct AsciiTable {
    uint8_t f[128];
    AsciiTable() {
        for (uint32_t c = 0; c < 128; ++c) f[c] = lookup(c);
    }
    static uint8_t lookup(uint32_t cp) {
        const CpRange* end = kCpRanges + kCpRangesCount;
        const CpRange* it =
            std::upper_bound(kCpRanges, end, cp, [](uint32_t v, const CpRange& r) { return v < r.first; });
        if (it == kCpRanges) return 0;
        --it;
        return cp <= it->last ? it->flags : 0;
    }
};

const AsciiTable& ascii_table() {
    static const AsciiTable t;
    return t;
}

}  // namespace

uint8_t flags(uint32_t cp) {
    if (cp < 128) return ascii_table().f[cp];
    if (cp >= kInvalidBase) return 0;
    return AsciiTable::lookup(cp);
}

size_t utf8_valid_len(const unsigned char* s, size_t n) {
    if (n == 0) return 0;
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else return 0;  // continuation byte, overlong lead (C0, C1) or out of range (F5..FF)
    if (n < len) return 0;
    for (size_t i = 1; i < len; ++i) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    // Reject overlong forms, surrogates and values past U+10FFFF.
    if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
    if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
    return len;
}

static uint32_t decode_one(const unsigned char* s, size_t len) {
    if (len == 1) return s[0];
    uint32_t cp = s[0] & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (size_t i = 1; i < len; ++i) cp = (cp << 6) | (s[i] & 0x3F);
    return cp;
}

std::vector<Cp> decode_utf8(std::string_view text) {
    std::vector<Cp> out;
    out.reserve(text.size());
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    size_t n = text.size();
    for (size_t i = 0; i < n;) {
        size_t len = utf8_valid_len(s + i, n - i);
        if (len == 0) {
            out.push_back({kInvalidBase + s[i], static_cast<uint32_t>(i), 1});
            i += 1;
        } else {
            out.push_back({decode_one(s + i, len), static_cast<uint32_t>(i), static_cast<uint32_t>(len)});
            i += len;
        }
    }
    return out;
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

}  // namespace apls::unicode
