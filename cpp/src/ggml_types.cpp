// ggml_types.cpp — the type table and half-precision conversion.
#include "ggml_types.h"

#include <cstring>

namespace apls {

TypeTraits type_traits(uint32_t id) {
    switch (id) {
        case 0:
            return {"F32", 1, 4};
        case 1:
            return {"F16", 1, 2};
        case 2:
            return {"Q4_0", 32, 18};
        case 3:
            return {"Q4_1", 32, 20};
        case 6:
            return {"Q5_0", 32, 22};
        case 7:
            return {"Q5_1", 32, 24};
        case 8:
            return {"Q8_0", 32, 34};
        case 9:
            return {"Q8_1", 32, 36};
        case 10:
            return {"Q2_K", 256, 84};
        case 11:
            return {"Q3_K", 256, 110};
        case 12:
            return {"Q4_K", 256, 144};
        case 13:
            return {"Q5_K", 256, 176};
        case 14:
            return {"Q6_K", 256, 210};
        case 15:
            return {"Q8_K", 256, 292};
        case 16:
            return {"IQ2_XXS", 256, 66};
        case 17:
            return {"IQ2_XS", 256, 74};
        case 18:
            return {"IQ3_XXS", 256, 98};
        case 19:
            return {"IQ1_S", 256, 50};
        case 20:
            return {"IQ4_NL", 32, 18};
        case 21:
            return {"IQ3_S", 256, 110};
        case 22:
            return {"IQ2_S", 256, 82};
        case 23:
            return {"IQ4_XS", 256, 136};
        case 24:
            return {"I8", 1, 1};
        case 25:
            return {"I16", 1, 2};
        case 26:
            return {"I32", 1, 4};
        case 27:
            return {"I64", 1, 8};
        case 28:
            return {"F64", 1, 8};
        case 29:
            return {"IQ1_M", 256, 56};
        case 30:
            return {"BF16", 1, 2};
        case 34:
            return {"TQ1_0", 256, 54};
        case 35:
            return {"TQ2_0", 256, 66};
        case 39:
            return {"MXFP4", 32, 17};
        default:
            return {nullptr, 0, 0};
    }
}

std::string type_name(TensorType t) {
    TypeTraits tt = type_traits(t);
    return tt.name ? tt.name : "type#" + std::to_string(static_cast<uint32_t>(t));
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: renormalise
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while ((mant & 0x400) == 0);
            bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3FF) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | mant << 13;
    } else {
        bits = sign | (exp + 112) << 23 | mant << 13;
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t abs = x & 0x7FFFFFFF;
    if (abs >= 0x7F800000) return static_cast<uint16_t>(sign | 0x7C00 | (abs > 0x7F800000 ? 0x200 : 0));
    if (abs >= 0x477FF000) return static_cast<uint16_t>(sign | 0x7C00);  // overflow -> inf
    if (abs < 0x38800000) {  // subnormal or zero in half: round to nearest even
        uint32_t m = (abs & 0x7FFFFF) | 0x800000;
        int shift = 126 - static_cast<int>(abs >> 23);  // half subnormal = M * 2^-24, M = 1.mant * 2^23
        if (shift > 24) return static_cast<uint16_t>(sign);
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return static_cast<uint16_t>(sign | r);
    }
    uint32_t r = abs - 0x38000000;  // rebias exponent 127 -> 15
    uint32_t h = r >> 13, rem = r & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return static_cast<uint16_t>(sign | h);
}

}  // namespace apls
