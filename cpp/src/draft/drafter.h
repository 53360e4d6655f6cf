// drafter.h — the draft sources of one generation session, and the text they draft from.
//
// A Drafter holds the text of the current generation (prompt, then every token generated: the
// speculative rounds append theirs) and, built from it, the indexes the model-free sources read:
// the n-gram index of prompt lookup (this text only), the suffix automaton (this text and the
// session's earlier ones), the successor table of token recycling (filled from verify logits),
// and the acceptance table that turns each candidate's features into the probability the
// verifier takes it. propose() adds the candidates of the chosen sources to a round's token
// tree, each source expanding best-first by that probability; learn() takes each verified
// round's outcome back. The layer-skip source needs the model (draft/layer_skip.h); its chain
// joins the tree through add_skip().
#pragma once

#include <cstdint>
#include <vector>

#include "draft/acceptance.h"
#include "draft/layer_skip.h"
#include "draft/prompt_lookup.h"
#include "draft/recycle.h"
#include "draft/suffix_index.h"
#include "draft/token_tree.h"

namespace apls::draft {

// How far each model-free source expands (the cost model later keeps only the nodes that pay).
struct TextParams {
    int32_t lookup_occurrences = 8;  // earlier occurrences of the n-gram followed
    int32_t lookup_depth = 24;       // tokens after each (copied spans run long: 8 -> 24 gave
                                     // SmolLM2's simulated GPU rounds tau 2.28 -> 2.48)
    int32_t suffix_branches = 4;     // most continuations per node
    int32_t suffix_depth = 24;
    int32_t recycle_branches = 4;    // most successors per node
    int32_t recycle_depth = 6;
    int32_t max_candidates = 48;     // most nodes each source adds
};

class Drafter {
public:
    explicit Drafter(int32_t n_vocab, int32_t recycle_k = 8);

    int32_t n_vocab() const { return n_vocab_; }
    // A new text (a prompt). The suffix index keeps the session's earlier texts; the successor
    // and acceptance tables carry over (they describe the model more than the text).
    void start(const int32_t* tokens, int32_t n);
    void append(const int32_t* tokens, int32_t n);  // tokens must be in [0, n_vocab)
    const std::vector<int32_t>& text() const { return lookup_.text(); }
    // Forget everything: the session's texts, the successor and acceptance tables.
    void reset();

    // Candidates of the model-free sources in `sources` (bits of Source) after the text's last
    // token, added under the root of `tree`.
    void propose(TokenTree& tree, uint32_t sources, const TextParams& p) const;
    // The layer-skip chain (and its second-choice leaves) under the root; q_base: index of the
    // chain's first draft distribution in the round's list (sampling), -1: none.
    void add_skip(TokenTree& tree, const SkipDraft& d, int32_t q_base) const;
    // Turn each node's p_raw into its calibrated p_accept (acceptance.h), then scale siblings
    // whose estimates sum above 1 (at most one of them can be the verifier's token). Before
    // TokenTree::finish().
    void calibrate(TokenTree& tree) const;
    // A verified tree's outcome: `path` holds the accepted nodes from the root down. Every node
    // whose parent was accepted (or is the root) was judged: each of its proposals is recorded.
    void learn(const TokenTree& tree, const std::vector<int32_t>& path);
    // The verifier's logits row after `token` (a verify batch row): its top k become the
    // token's successors.
    void recycle(int32_t token, const float* logits) { recycling_.update(token, logits); }
    // The same from the verifier's top recycle_k() ids after `token` (Context::top_k).
    void recycle_top(int32_t token, const int32_t* ids) { recycling_.set(token, ids); }
    int32_t recycle_k() const { return recycling_.k(); }

    const AcceptanceTable& acceptance() const { return acceptance_; }
    const SuffixIndex& suffix_index() const { return suffix_; }
    const TokenRecycling& recycling() const { return recycling_; }

private:
    void propose_lookup(TokenTree& tree, const TextParams& p) const;
    void propose_suffix(TokenTree& tree, const TextParams& p) const;
    void propose_recycle(TokenTree& tree, const TextParams& p) const;

    int32_t n_vocab_;
    PromptLookup lookup_;
    SuffixIndex suffix_;
    TokenRecycling recycling_;
    AcceptanceTable acceptance_;
};

}  // namespace apls::draft
