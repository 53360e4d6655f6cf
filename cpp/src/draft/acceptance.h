// acceptance.h — measured acceptance of each draft source: the estimate p_accept that a source
// gives a node, learned from what the verifier did in earlier rounds.
//
// A node's outcome is known when its parent was accepted (or is the root): it was then accepted
// exactly when the verifier took its token. Each source sorts its nodes into cells by the
// features that predict that outcome (how long the matched text is, how many earlier occurrences
// agree, the draft's confidence, the rank in the successor table, the depth), and each cell
// keeps decayed counts of tries and acceptances from a prior: estimate = (accepted + w * prior)
// / (tried + w). The decay lets the estimates follow the text; the prior makes a source's first
// rounds draft where its features suggest it pays, so exploration is bounded by the cost model.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "draft/token_tree.h"

namespace apls::draft {

struct CellStats {
    double tried = 0.0, accepted = 0.0;  // decayed
};

// Undecayed totals per source and depth, for reports (depth 1..kMaxDepth, the last one: deeper).
struct DepthStats {
    static constexpr int32_t kMaxDepth = 16;
    std::array<int64_t, kMaxDepth> tried{}, accepted{};
};

class AcceptanceTable {
public:
    AcceptanceTable();

    // Cells. Text sources (lookup, suffix): the length of the matched text, how the node's
    // supporting occurrences (`support` of `total` continuing its parent) agree, the depth.
    static int32_t text_cell(int32_t match_len, int32_t support, int32_t total, int32_t depth);
    // Token recycling: the successor's rank in the table and the depth.
    static int32_t recycle_cell(int32_t rank, int32_t depth);
    // Layer-skip draft: the draft's probability of the token, and whether it is the draft's own
    // choice (a chain node) or its second choice (a branch where the draft was unsure).
    static int32_t skip_cell(float draft_p, bool second);

    float estimate(Source s, int32_t cell) const;
    void record(Source s, int32_t cell, int32_t depth, bool accepted);
    // The second stage: a node's estimate from its sources' (p_raw: the largest of them, from
    // source `top`) and how many sources proposed it, calibrated against outcomes. Taking the
    // largest of several noisy estimates overrates a node, and the cut favours overrated cells
    // (the winner's curse); agreeing sources underrate it. The table maps both back to what
    // was observed.
    float calibrated(float p_raw, int32_t n_sources, Source top) const;
    void record_calibration(float p_raw, int32_t n_sources, Source top, bool accepted);
    void clear();

    const CellStats& cell(Source s, int32_t c) const { return cells_[static_cast<int>(s)][c]; }
    int32_t n_cells(Source s) const { return static_cast<int32_t>(cells_[static_cast<int>(s)].size()); }
    const DepthStats& by_depth(Source s) const { return depth_[static_cast<int>(s)]; }

private:
    float prior(Source s, int32_t cell) const;

    std::array<std::vector<CellStats>, kNumSources> cells_;
    std::vector<CellStats> calibration_;  // (p_raw in twentieths 20) x (sources 1, 2, 3+) x (top source)
    std::array<DepthStats, kNumSources> depth_;
};

}  // namespace apls::draft
