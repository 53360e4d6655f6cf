// test_types.cpp — half-precision conversions and the type table.
#include <cmath>
#include <cstring>

#include "check.h"
#include "ggml_types.h"

using namespace apls;

APLS_TEST(every_half_round_trips) {
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = f16_to_f32(static_cast<uint16_t>(h));
        if (std::isnan(f)) continue;  // NaN payloads need not survive
        CHECK(f32_to_f16(f) == h);
    }
}

APLS_TEST(rounding_to_nearest_even) {
    CHECK(f32_to_f16(1.0f) == 0x3C00);
    CHECK(f32_to_f16(1.0f + 1.0f / 2048) == 0x3C00);         // halfway: stays even
    CHECK(f32_to_f16(1.0f + 3.0f / 2048) == 0x3C02);         // halfway: rounds to even
    CHECK(f32_to_f16(65520.0f) == 0x7C00);                   // past the largest half: inf
    CHECK(f32_to_f16(1e-5f) == 0x00A8);                      // subnormal half: 168 * 2^-24
    CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);      // halfway to the smallest: even (0)
    CHECK(f32_to_f16(std::ldexp(1.5f, -25)) == 0x0001);
    CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));
    CHECK(bf16_to_f32(0x3F80) == 1.0f);
}

APLS_TEST(type_table) {
    CHECK(std::strcmp(type_traits(TensorType::Q4_1).name, "Q4_1") == 0);
    CHECK(type_traits(TensorType::Q4_1).bytes == sizeof(BlockQ4_1));
    CHECK(type_traits(TensorType::Q8_0).block == 32);
    CHECK(type_traits(99u).name == nullptr);
    CHECK(type_name(static_cast<TensorType>(99)) == "type#99");
}

APLS_TEST_MAIN()
