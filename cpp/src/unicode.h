// unicode.h — UTF-8 decoding and the code point classes the pre-tokenizers need.
//
// Text handed to the tokenizer is arbitrary bytes. decode_utf8() never fails: a byte that does
// not start a valid, shortest-form UTF-8 sequence of a scalar value becomes one "invalid" code
// point of its own (class flags 0, like an unassigned code point), so every byte of the input
// belongs to exactly one decoded unit and the byte-level tokenizers can still encode it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace apls::unicode {

// Class flags of a code point (bit set). Generated ranges in unicode_data.cpp use these values.
enum CpFlags : uint8_t {
    kLetter = 1 << 0,      // \p{L}
    kNumber = 1 << 1,      // \p{N}
    kMark = 1 << 2,        // \p{M}
    kPunct = 1 << 3,       // \p{P}
    kSymbol = 1 << 4,      // \p{S}
    kSeparator = 1 << 5,   // \p{Z}
    kOther = 1 << 6,       // \p{C} except unassigned
    kWhitespace = 1 << 7,  // \s: Unicode White_Space
};

struct CpRange {
    uint32_t first, last;
    uint8_t flags;
};
extern const CpRange kCpRanges[];
extern const size_t kCpRangesCount;
extern const char* const kUnicodeVersion;

// A code point value no scalar value can have: marks an invalid byte (kInvalidBase + byte).
constexpr uint32_t kInvalidBase = 0x110000;

uint8_t flags(uint32_t cp);
inline bool is_letter(uint32_t cp) { return flags(cp) & kLetter; }
inline bool is_number(uint32_t cp) { return flags(cp) & kNumber; }
inline bool is_space(uint32_t cp) { return flags(cp) & kWhitespace; }

// One decoded unit: a code point (or kInvalidBase + byte) and the bytes it came from.
struct Cp {
    uint32_t cp;
    uint32_t offset;
    uint32_t len;
};

// Length of the valid UTF-8 sequence starting at s[0], or 0 if s[0] does not start one.
size_t utf8_valid_len(const unsigned char* s, size_t n);
std::vector<Cp> decode_utf8(std::string_view text);
void append_utf8(std::string& out, uint32_t cp);

}  // namespace apls::unicode
