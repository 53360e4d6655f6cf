// ggml_types.h — tensor element types as GGUF numbers them (ggml_type), with block layouts.
//
// The reader knows every type's block size and byte size so that it can validate any file;
// which types the engine can *compute* with is decided by the backend (model.cpp refuses others
// with an error naming the type).
#pragma once

#include <cstdint>
#include <string>

namespace apls {

enum class TensorType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
};

struct TypeTraits {
    const char* name;   // "Q4_1"; nullptr for ids that are not a type
    uint32_t block;     // elements per block (1 for plain types)
    uint32_t bytes;     // bytes per block
};

// Traits of a raw type id from a file; .name == nullptr when the id is unknown.
TypeTraits type_traits(uint32_t id);
inline TypeTraits type_traits(TensorType t) { return type_traits(static_cast<uint32_t>(t)); }
std::string type_name(TensorType t);

// Block layouts used by the engine (GGUF byte layouts, little-endian).
constexpr int QK = 32;                                  // elements per Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 block
struct BlockQ4_0 {
    uint16_t d;
    uint8_t qs[QK / 2];
};              // x = d * (q - 8)
struct BlockQ4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[QK / 2];
};  // x = d * q + m
struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[QK];
};                   // x = d * q
// Nibble order (GGUF): element j (j < 16) is qs[j] & 0xF, element j + 16 is qs[j] >> 4.
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ8_0) == 34, "block layout");

// 5-bit blocks: the low 4 bits as Q4's nibbles, bit 4 of element j in bit j of qh (little-endian).
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[QK / 2];
};              // x = d * (q - 16)
struct BlockQ5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[QK / 2];
};  // x = d * q + m
static_assert(sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24, "block layout");

// K-quants: super-blocks of 256 elements with per-sub-block scales.
constexpr int QK_K = 256;
// Q4_K / Q5_K: 8 sub-blocks of 32, x = d * sc[j] * q - dmin * m[j], sc and m 6-bit (k4_scales).
// Sub-blocks 2i and 2i+1 share qs[32 i .. 32 i + 32): 2i in the low nibbles, 2i+1 in the high
// ones; Q5_K's bit 4 of element l of sub-block j is bit j of qh[l].
struct BlockQ4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[QK_K / 2];
};
struct BlockQ5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
};
// Q6_K: 16 sub-blocks of 16, x = d * scales[j] * (q - 32), q 6-bit. Per half h (128 elements):
// ql[64h ..], qh[32h ..]; element 32c + l of the half (c < 4, l < 32) has its low 4 bits in
// ql[64h + l + 32 (c & 1)] (low nibble for c < 2, high for c >= 2) and its top 2 bits in bits
// 2c, 2c+1 of qh[32h + l].
struct BlockQ6_K {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
};
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210, "block layout");

// The 8 (scale, min) pairs of a Q4_K/Q5_K super-block from its 12 packed bytes: sub-blocks
// 0-3 keep their 6 bits in the low bits of bytes 0-3 (scales) and 4-7 (mins); sub-blocks 4-7
// keep their low 4 bits in the nibbles of bytes 8-11 and their top 2 bits in the top bits of
// bytes 0-3 (scales) and 4-7 (mins).
inline void k4_scales(const uint8_t* s, uint8_t* sc, uint8_t* m) {
    for (int j = 0; j < 4; ++j) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = static_cast<uint8_t>((s[j + 8] & 0xF) | ((s[j] >> 6) << 4));
        m[j + 4] = static_cast<uint8_t>((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
    }
}

// Element decoders, shared by dequantization (cpu/ops.cpp) and the portable dot products
// (cpu/kernels_generic.cpp), so that the bit layouts above are read in one place.
// Q5_0 / Q5_1: element j (< 32) of a block, in [0, 32); qh as a little-endian word.
inline int q5_quant(const uint8_t* qs, uint32_t qh, int j) {
    return ((j < QK / 2 ? qs[j] : qs[j - QK / 2] >> 4) & 0xF) | static_cast<int>((qh >> j) & 1) << 4;
}
// Q4_K / Q5_K: element l (< 32) of sub-block j (< 8), in [0, 16) or, with qh (Q5_K), [0, 32).
inline int k45_quant(const uint8_t* qs, const uint8_t* qh, int j, int l) {
    const int q = (qs[32 * (j / 2) + l] >> (4 * (j & 1))) & 0xF;
    return qh ? q | ((qh[l] >> j) & 1) << 4 : q;
}
// Q6_K: element 32c + l of half h (c < 4, l < 32), in [0, 64) (x = d * scale * (q - 32)).
inline int q6k_quant(const uint8_t* ql, const uint8_t* qh, int h, int c, int l) {
    const int lo = (ql[64 * h + l + 32 * (c & 1)] >> (4 * (c / 2))) & 0xF;
    const int hi = (qh[32 * h + l] >> (2 * c)) & 3;
    return lo | hi << 4;
}

// IEEE half and bfloat16 conversions (portable; SIMD code uses F16C / AVX-512 instead).
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
inline float bf16_to_f32(uint16_t h) {
    uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}

// A Q4_K / Q5_K super-block's header, decoded: d, dmin, the 8 (scale, min) pairs, and where
// its quants are (qh: nullptr for Q4_K; elements through k45_quant).
struct K45Block {
    float d, dmin;
    uint8_t sc[8], mn[8];
    const uint8_t* qh;
    const uint8_t* qs;
};
inline K45Block k45_block(const uint8_t* b, bool q5) {
    K45Block k;
    uint16_t dh, mh;
    __builtin_memcpy(&dh, b, 2);
    __builtin_memcpy(&mh, b + 2, 2);
    k.d = f16_to_f32(dh);
    k.dmin = f16_to_f32(mh);
    k4_scales(b + 4, k.sc, k.mn);
    k.qh = q5 ? b + 16 : nullptr;
    k.qs = b + (q5 ? 48 : 16);
    return k;
}

}  // namespace apls
