// capi_quantize.cpp — row quantization in the C API (apls.h, "quantization").
#include <cstring>

#include "capi_util.h"
#include "ggml_types.h"
#include "quantize.h"

using apls::guard;
using apls::null_arg;

extern "C" {

apls_status apls_type_from_name(const char* name, uint32_t* out_type) {
    if (!name) return null_arg("name");
    if (!out_type) return null_arg("out_type");
    return guard([&] {
        for (uint32_t id = 0; id < 64; ++id) {
            const apls::TypeTraits tt = apls::type_traits(id);
            if (tt.name && std::strcmp(tt.name, name) == 0) {
                *out_type = id;
                return;
            }
        }
        apls::fail(APLS_STATUS_INVALID_ARGUMENT, "unknown tensor type '", name, "'");
    });
}

size_t apls_type_row_size(uint32_t type, int64_t n_per_row) {
    const apls::TypeTraits tt = apls::type_traits(type);
    if (!tt.name || n_per_row <= 0 || n_per_row % tt.block != 0) return 0;
    return static_cast<size_t>(n_per_row / tt.block) * tt.bytes;
}

apls_status apls_quantize_rows(uint32_t type, const float* src, int64_t n_rows, int64_t n_per_row, void* dst,
                               size_t dst_size, int32_t n_threads) {
    if (!src && n_rows > 0) return null_arg("src");
    if (!dst && n_rows > 0) return null_arg("dst");
    return guard([&] {
        const apls::TypeTraits tt = apls::type_traits(type);
        if (!tt.name) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "unknown tensor type #", type);
        const auto t = static_cast<apls::TensorType>(type);
        if (n_rows < 0) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "n_rows is negative (", n_rows, ")");
        const size_t rb = apls_type_row_size(type, n_per_row);
        if (rb == 0)
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "cannot quantize rows of ", n_per_row, " elements to ", tt.name,
                       ": the row length must be a positive multiple of ", tt.block);
        if (static_cast<uint64_t>(n_rows) > dst_size / rb)
            apls::fail(APLS_STATUS_INVALID_ARGUMENT, "dst holds ", dst_size, " bytes, ", n_rows, " rows of ", tt.name,
                       " need ", static_cast<uint64_t>(n_rows) * rb);
        apls::quantize_rows(t, src, n_rows, n_per_row, static_cast<uint8_t*>(dst), n_threads);
    });
}

}  // extern "C"
