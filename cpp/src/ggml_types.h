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
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
    IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
    TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
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
constexpr int QK = 32;                                  // elements per Q4_0/Q4_1/Q8_0 block
struct BlockQ4_0 { uint16_t d; uint8_t qs[QK / 2]; };              // x = d * (q - 8)
struct BlockQ4_1 { uint16_t d; uint16_t m; uint8_t qs[QK / 2]; };  // x = d * q + m
struct BlockQ8_0 { uint16_t d; int8_t qs[QK]; };                   // x = d * q
// Nibble order (GGUF): element j (j < 16) is qs[j] & 0xF, element j + 16 is qs[j] >> 4.
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ8_0) == 34, "block layout");

// IEEE half and bfloat16 conversions (portable; SIMD code uses F16C / AVX-512 instead).
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
inline float bf16_to_f32(uint16_t h) {
    uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}

}  // namespace apls
