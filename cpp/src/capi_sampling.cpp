// capi_sampling.cpp — the sampler's C API: null checks here, everything else in apls::Sampler.
#include "apls/apls.h"
#include "capi_types.h"
#include "capi_util.h"

using apls::guard;
using apls::null_arg;

namespace {

// Run a chain-building step on a non-NULL sampler.
template <typename F>
apls_status chain_step(apls_sampler* smpl, F&& f) {
    if (!smpl) return null_arg("sampler");
    return guard([&] { f(smpl->impl); });
}

apls::SamplerParams to_params(const apls_sampler_params& p) {
    apls::SamplerParams q;
    q.temperature = p.temperature;
    q.top_k = p.top_k;
    q.top_p = p.top_p;
    q.min_p = p.min_p;
    q.repeat_penalty = p.repeat_penalty;
    q.frequency_penalty = p.frequency_penalty;
    q.presence_penalty = p.presence_penalty;
    q.penalty_last_n = p.penalty_last_n;
    q.seed = p.seed;
    return q;
}

}  // namespace

extern "C" {

apls_sampler_params apls_sampler_default_params(void) {
    const apls::SamplerParams d;  // one source of truth for the defaults
    apls_sampler_params p;
    p.temperature = d.temperature;
    p.top_k = d.top_k;
    p.top_p = d.top_p;
    p.min_p = d.min_p;
    p.repeat_penalty = d.repeat_penalty;
    p.frequency_penalty = d.frequency_penalty;
    p.presence_penalty = d.presence_penalty;
    p.penalty_last_n = d.penalty_last_n;
    p.seed = d.seed;
    return p;
}

apls_status apls_sampler_init(const apls_sampler_params* params, apls_sampler** out) {
    if (!out) return null_arg("out");
    *out = nullptr;
    if (!params) return null_arg("params");
    return guard([&] { *out = new apls_sampler(to_params(*params)); });
}

apls_status apls_sampler_chain_init(apls_sampler** out) {
    if (!out) return null_arg("out");
    *out = nullptr;
    return guard([&] { *out = new apls_sampler(); });
}

apls_status apls_sampler_chain_add_penalties(apls_sampler* smpl, int32_t last_n, float repeat, float frequency,
                                             float presence) {
    return chain_step(smpl, [&](apls::Sampler& s) { s.add_penalties(last_n, repeat, frequency, presence); });
}

apls_status apls_sampler_chain_add_top_k(apls_sampler* smpl, int32_t k) {
    return chain_step(smpl, [&](apls::Sampler& s) { s.add_top_k(k); });
}

apls_status apls_sampler_chain_add_top_p(apls_sampler* smpl, float p, int32_t min_keep) {
    return chain_step(smpl, [&](apls::Sampler& s) { s.add_top_p(p, min_keep); });
}

apls_status apls_sampler_chain_add_min_p(apls_sampler* smpl, float p, int32_t min_keep) {
    return chain_step(smpl, [&](apls::Sampler& s) { s.add_min_p(p, min_keep); });
}

apls_status apls_sampler_chain_add_temperature(apls_sampler* smpl, float t) {
    return chain_step(smpl, [&](apls::Sampler& s) { s.add_temperature(t); });
}

apls_status apls_sampler_chain_add_greedy(apls_sampler* smpl) {
    return chain_step(smpl, [&](apls::Sampler& s) { s.add_greedy(); });
}

apls_status apls_sampler_chain_add_dist(apls_sampler* smpl, uint64_t seed) {
    return chain_step(smpl, [&](apls::Sampler& s) { s.add_dist(seed); });
}

apls_status apls_sampler_sample(apls_sampler* smpl, const float* logits, int32_t n_vocab, int32_t* out_token) {
    if (!out_token) return null_arg("out_token");
    *out_token = -1;
    if (!smpl) return null_arg("sampler");
    if (!logits) return null_arg("logits");
    return guard([&] { *out_token = smpl->impl.sample(logits, n_vocab); });
}

apls_status apls_sampler_probs(apls_sampler* smpl, const float* logits, int32_t n_vocab, float* out_probs) {
    if (!smpl) return null_arg("sampler");
    if (!logits) return null_arg("logits");
    if (!out_probs) return null_arg("out_probs");
    return guard([&] { smpl->impl.probs(logits, n_vocab, out_probs); });
}

apls_status apls_sampler_accept(apls_sampler* smpl, int32_t token) {
    return chain_step(smpl, [&](apls::Sampler& s) { s.accept(token); });
}

void apls_sampler_reset(apls_sampler* smpl) {
    if (smpl) guard([&] { smpl->impl.reset(); });  // void: guard only keeps any exception of a stage inside
}

void apls_sampler_free(apls_sampler* smpl) { delete smpl; }

}  // extern "C"
