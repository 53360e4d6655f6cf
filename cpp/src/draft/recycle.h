// recycle.h — token recycling: the verifier's top-k next tokens after each token it has seen,
// kept in a successor table and reused to grow drafts in later rounds (Luo et al., "Turning
// Trash into Treasure: Accelerating Inference of Large Language Models with Token Recycling").
//
// Every verify batch computes, for each of its tokens, the full model's logits for the token
// after it; their top k become that token's successors (replacing older ones). A draft then
// follows the table from the round's last token: its successors, theirs, and so on. The table
// is (n_vocab, k) token ids, -1 where nothing was seen yet; it lives as long as the drafter
// (the successors describe the model more than the text).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace apls::draft {

class TokenRecycling {
public:
    TokenRecycling(int32_t n_vocab, int32_t k = 8);

    int32_t k() const { return k_; }
    int32_t n_vocab() const { return n_vocab_; }
    // `token`'s successors become the k largest of logits[0..n_vocab) (ties: lower id first).
    void update(int32_t token, const float* logits);
    // `token`'s successors become ids[0..k), best first (the verifier's top k, picked where the
    // logits are: Context::top_k).
    void set(int32_t token, const int32_t* ids);
    // k successors of `token`, best first; -1 where none is known.
    const int32_t* successors(int32_t token) const { return &table_[static_cast<size_t>(token) * k_]; }
    void clear();

private:
    int32_t n_vocab_, k_;
    std::vector<int32_t> table_;  // (n_vocab, k)
};

}  // namespace apls::draft
