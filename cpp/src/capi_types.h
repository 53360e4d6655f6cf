// capi_types.h — what the C API's opaque handles hold.
#pragma once

#include <memory>

#include "context.h"
#include "draft/drafter.h"
#include "model.h"
#include "sampling.h"

struct apls_model {
    std::unique_ptr<apls::Model> impl;
};
struct apls_context {
    std::unique_ptr<apls::Context> impl;
};
struct apls_sampler {
    apls_sampler() = default;  // an empty chain
    explicit apls_sampler(const apls::SamplerParams& p) : impl(p) {}
    apls::Sampler impl;
};
struct apls_drafter {
    explicit apls_drafter(int32_t n_vocab) : impl(n_vocab) {}
    apls::draft::Drafter impl;
};
