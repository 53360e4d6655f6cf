// context.cpp — batch validation, decode with rollback on error, greedy loops; see context.h.
#include "context.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>

#include "common.h"
#include "cpu/cores.h"

namespace apls {

namespace {
apls_context_params resolve(const Model& model, apls_context_params p) {
    if (p.n_ctx == 0) p.n_ctx = static_cast<uint32_t>(std::min(model.hparams().n_ctx_train, 4096));
    if (p.n_batch == 0) fail(APLS_STATUS_INVALID_ARGUMENT, "n_batch must be positive");
    if (p.n_threads <= 0) p.n_threads = cpu::physical_cores();
    if (p.n_threads > 512) fail(APLS_STATUS_INVALID_ARGUMENT, "n_threads ", p.n_threads, " is too large");
    if (p.kv_type != APLS_KV_TYPE_F32 && p.kv_type != APLS_KV_TYPE_F16)
        fail(APLS_STATUS_INVALID_ARGUMENT, "unknown kv_type ", static_cast<int>(p.kv_type));
    if (p.n_ctx > (1u << 24)) fail(APLS_STATUS_INVALID_ARGUMENT, "n_ctx ", p.n_ctx, " is too large");
    if (p.n_seq_max == 0 || p.n_seq_max > 4096) fail(APLS_STATUS_INVALID_ARGUMENT, "n_seq_max must be in [1, 4096]");
    if (p.kv_block_size == 0 || p.kv_block_size > 4096)
        fail(APLS_STATUS_INVALID_ARGUMENT, "kv_block_size must be in [1, 4096]");
    p.n_batch = std::min(p.n_batch, p.n_ctx);
    return p;
}
}  // namespace

Context::Context(const Model& model, const apls_context_params& params)
    : model_(model),
      params_(resolve(model, params)),
      kv_(params_.n_ctx, params_.kv_block_size, params_.n_seq_max),
      runner_(make_runner(*this)),
      slots_(params_.n_batch) {
    kv_.attach_store(&runner_->kv_store());
}

Context::~Context() { kv_.attach_store(nullptr); }

int32_t Context::argmax(int32_t i, float* top_p) const {
    if (i < 0 || i >= n_outputs_)
        fail(APLS_STATUS_INVALID_ARGUMENT, "output row ", i, " is out of range [0, ", n_outputs_, ")");
    return runner_->argmax(i, top_p);
}

void Context::top_k(int32_t k, int32_t* ids) const {
    const int32_t n_vocab = model_.hparams().n_vocab;
    if (k < 1 || k > 64 || k > n_vocab)
        fail(APLS_STATUS_INVALID_ARGUMENT, "top_k: k ", k, " must be in [1, min(64, n_vocab ", n_vocab, ")]");
    if (n_outputs_ == 0) fail(APLS_STATUS_INVALID_ARGUMENT, "top_k: the last decode kept no output rows");
    runner_->top_k(n_outputs_, k, ids);
}

Batch Context::make_batch(const apls_batch& b) const {
    const HParams& hp = model_.hparams();
    if (b.n_tokens <= 0) fail(APLS_STATUS_INVALID_ARGUMENT, "batch has ", b.n_tokens, " tokens");
    if (static_cast<uint32_t>(b.n_tokens) > params_.n_batch)
        fail(APLS_STATUS_INVALID_ARGUMENT, "batch of ", b.n_tokens, " tokens exceeds n_batch ", params_.n_batch);
    if (!b.token) fail(APLS_STATUS_INVALID_ARGUMENT, "batch.token is NULL");
    Batch out;
    const int32_t n = b.n_tokens;
    out.token.assign(b.token, b.token + n);
    out.seq.assign(n, 0);
    if (b.seq_id) out.seq.assign(b.seq_id, b.seq_id + n);
    std::map<int32_t, int32_t> next;  // per sequence: next position when positions are not given
    out.pos.resize(n);
    for (int32_t i = 0; i < n; ++i) {
        if (out.token[i] < 0 || out.token[i] >= hp.n_vocab)
            fail(APLS_STATUS_INVALID_ARGUMENT, "token ", out.token[i], " at batch index ", i, " is out of range [0, ",
                 hp.n_vocab, ")");
        if (!kv_.valid_seq(out.seq[i]))
            fail(APLS_STATUS_INVALID_ARGUMENT, "sequence id ", out.seq[i], " at batch index ", i,
                 " is out of range [0, ", kv_.n_seq_max(), ")");
        if (b.pos) {
            out.pos[i] = b.pos[i];
            if (out.pos[i] < 0)
                fail(APLS_STATUS_INVALID_ARGUMENT, "position ", out.pos[i], " at batch index ", i, " is negative");
        } else {
            auto it = next.try_emplace(out.seq[i], kv_.seq_next_pos(out.seq[i])).first;
            out.pos[i] = it->second++;
        }
    }
    if (b.parent) {  // a tree: positions default to the nodes' depths after the sequence
        out.parent.assign(b.parent, b.parent + n);
        if (!b.pos) out.pos = tree_positions(out.parent, kv_.seq_next_pos(out.seq[0]));  // checked by decode
    }
    out.out.assign(n, 0);
    if (b.logits) {
        for (int32_t i = 0; i < n; ++i) out.out[i] = b.logits[i] != 0;
    } else {
        out.out[n - 1] = 1;
    }
    return out;
}

void Context::decode(const Batch& batch, const Plan& plan, const KVView* view) { decode_step(batch, plan, view, -1); }

int32_t Context::max_invariant_batch() const {
    return std::min(static_cast<int32_t>(params_.n_batch), runner_->max_invariant_batch());
}

bool Context::ends_draft(int32_t id, float conf, float p_min) const {
    return conf < p_min || (model_.vocab() && model_.vocab()->is_eog(id));
}

template <typename Ends>
GreedyDraft Context::greedy_steps(int32_t first, int32_t pos0, int32_t seq, int32_t k, const Plan& plan,
                                  const KVView* view, bool chain, Ends ends) {
    GreedyDraft d;
    if (k <= 0) return d;
    if (runner_->chains() && chain) {
        Batch b = Batch::single(first, pos0, seq);  // later steps: the device supplies the token
        for (int32_t i = 0; i < k; ++i) {
            b.pos[0] = pos0 + i;
            decode_step(b, plan, view, i);
        }
        d.ids.resize(k);
        d.confs.resize(k);
        runner_->chain_results(k, d.ids.data(), d.confs.data());
        d.n_waits = 1;
        for (int32_t i = 0; i < k; ++i)
            if (ends(d.ids[i], d.confs[i])) {  // the chain ran on past it: cut
                d.ids.resize(i + 1);
                d.confs.resize(i + 1);
                break;
            }
        return d;
    }
    int32_t tok = first;
    for (int32_t i = 0; i < k; ++i) {
        decode_step(Batch::single(tok, pos0 + i, seq), plan, view, -1);
        float conf = 0.0f;
        tok = argmax(0, &conf);
        d.ids.push_back(tok);
        d.confs.push_back(conf);
        ++d.n_waits;
        if (ends(tok, conf)) break;
    }
    return d;
}

GreedyDraft Context::draft_greedy(int32_t first, int32_t pos0, int32_t seq, int32_t k, float p_min, const Plan& plan,
                                  const KVView* view) {
    // A confidence stop saves the steps after it only when the host looks after each one.
    const char* env = std::getenv("APLS_DRAFT_CHAIN");  // per round (~0.1 us): tests switch it in-process
    const bool chain = p_min <= 0.0f && !(env && env[0] == '0');
    return greedy_steps(first, pos0, seq, k, plan, view, chain,
                        [&](int32_t id, float conf) { return ends_draft(id, conf, p_min); });
}

int32_t Context::greedy_steps_allowed(int32_t seq, int32_t last, int32_t n_max) const {
    const HParams& hp = model_.hparams();
    if (!kv_.valid_seq(seq)) fail(APLS_STATUS_INVALID_ARGUMENT, "unknown sequence ", seq);
    if (last < 0 || last >= hp.n_vocab)
        fail(APLS_STATUS_INVALID_ARGUMENT, "token ", last, " is out of range [0, ", hp.n_vocab, ")");
    if (n_max < 0) fail(APLS_STATUS_INVALID_ARGUMENT, "n_max ", n_max, " is negative");
    if (n_max == 0) return 0;
    const int32_t room = kv_.room(seq);
    if (room < 1) fail(APLS_STATUS_KV_FULL, "KV cache full: no room for the next token of sequence ", seq);
    return std::min(n_max, room);
}

std::vector<int32_t> Context::generate_greedy(int32_t seq, int32_t last, int32_t n_max, bool stop_at_eog) {
    const int32_t n = greedy_steps_allowed(seq, last, n_max);
    std::vector<int32_t> out;
    if (n == 0) return out;
    const int32_t n_past = kv_.seq_len(seq);
    const int32_t chain_max = static_cast<int32_t>(params_.n_batch);  // the device keeps n_batch choices
    const Vocab* vocab = model_.vocab();
    const auto ends = [&](int32_t id, float) { return stop_at_eog && vocab && vocab->is_eog(id); };
    const Plan full;
    try {
        while (static_cast<int32_t>(out.size()) < n) {
            const int32_t k = std::min(n - static_cast<int32_t>(out.size()), chain_max);
            const GreedyDraft g =
                greedy_steps(out.empty() ? last : out.back(), kv_.seq_next_pos(seq), seq, k, full, nullptr, true, ends);
            out.insert(out.end(), g.ids.begin(), g.ids.end());
            if (static_cast<int32_t>(g.ids.size()) < k || ends(out.back(), 0.0f)) break;
        }
    } catch (...) {
        kv_.truncate(seq, n_past);
        throw;
    }
    kv_.truncate(seq, n_past + static_cast<int32_t>(out.size()));  // entries run past an end token
    n_outputs_ = 0;
    return out;
}

bool Context::plain_ahead() const {
    const char* env = std::getenv("APLS_PLAIN_AHEAD");  // per call (~0.1 us): tests switch it in-process
    if (env && (env[0] == '0' || env[0] == '1')) return env[0] == '1';
    return runner_->chains();
}

std::vector<int32_t> Context::greedy_while(int32_t seq, int32_t last, int32_t n_max, bool stop_at_eog,
                                           const std::function<bool(int32_t)>& go_on) {
    const int32_t n = greedy_steps_allowed(seq, last, n_max);
    std::vector<int32_t> out;
    if (n == 0) return out;
    const int32_t n_past = kv_.seq_len(seq);
    const int32_t chain_max = static_cast<int32_t>(params_.n_batch);  // the device keeps n_batch choices
    const bool ahead = plain_ahead();
    const Vocab* vocab = model_.vocab();
    const Plan full;
    int32_t queued = 0;
    // Step i decodes `last` (i = 0), then out[i - 1]: a chain's first step takes it from the
    // host, each later one from the step before it, on the device.
    const auto queue = [&] {
        const int32_t c = queued % chain_max;
        const int32_t tok = queued == 0 ? last : c == 0 ? out[queued - 1] : 0;
        decode_step(Batch::single(tok, kv_.seq_next_pos(seq), seq), full, nullptr, c);
        runner_->chain_fetch(c);
        ++queued;
    };
    bool more = true;
    try {
        queue();
        for (int32_t i = 0; i < queued; ++i) {
            // Ahead: the next step before this one's token (a new chain's first step waits for it).
            if (ahead && more && queued == i + 1 && queued < n && queued % chain_max != 0) queue();
            const int32_t tok = runner_->chain_entry(i % chain_max);
            out.push_back(tok);
            if (stop_at_eog && vocab && vocab->is_eog(tok)) break;
            if (!more) continue;  // the step queued ahead of a refusal: its token comes unseen
            more = go_on(tok);
            if (more && queued == i + 1 && queued < n) queue();
        }
    } catch (const Error&) {
        if (out.empty()) {  // the first step failed: the cache as it was
            kv_.truncate(seq, n_past);
            n_outputs_ = 0;
            throw;
        }
    }
    kv_.truncate(seq, n_past + static_cast<int32_t>(out.size()));  // entries of steps past the last token
    n_outputs_ = 0;
    return out;
}

void Context::decode_step(const Batch& batch, const Plan& plan, const KVView* view, int32_t chain_step) {
    if (batch.tree()) check_tree(batch, kv_);
    // A view must name cached entries of every sequence it applies to; it restricts only the
    // entries held before this call (see KVView).
    if (view)
        for (int32_t i = 0; i < batch.size(); ++i)
            if (i == 0 || batch.seq[i] != batch.seq[i - 1]) kv_.check_view(*view, batch.seq[i]);
    // Every sequence's length before the call: what the view restricts, and what a failure
    // part-way truncates back to.
    const Visibility vis = Visibility::resolve(batch, view, kv_);
    kv_.append(batch.seq.data(), batch.pos.data(), batch.size(), slots_.data());
    try {
        n_outputs_ = runner_->forward(batch, plan, vis, slots_.data(), chain_step);
    } catch (...) {
        for (uint32_t s = 0; s < kv_.n_seq_max(); ++s) kv_.truncate(static_cast<int32_t>(s), vis.n_old[s]);
        n_outputs_ = 0;
        throw;
    }
}

}  // namespace apls
