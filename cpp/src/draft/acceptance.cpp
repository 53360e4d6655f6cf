// acceptance.cpp — cells, priors and decayed counts of the acceptance table; see acceptance.h.
#include "draft/acceptance.h"

#include <algorithm>

namespace apls::draft {

namespace {

// Cell layouts. text: (length 6) x (agreement 4) x (depth 3); recycle: (rank 4) x (depth 3);
// skip: (draft probability in tenths 10) x (chain node or second choice 2).
constexpr int32_t kTextCells = 6 * 4 * 3, kRecycleCells = 4 * 3, kSkipCells = 10 * 2;
constexpr float kPriorWeight = 2.0f;  // the prior counts as this many tries
constexpr double kDecay = 0.99;       // per record in a cell: about the last 100 outcomes count

constexpr int32_t kCalibBins = 20;

int32_t calibration_cell(float p_raw, int32_t n_sources, Source top) {
    const int32_t bin = std::clamp(static_cast<int32_t>(p_raw * kCalibBins), 0, kCalibBins - 1);
    return (bin * 3 + std::clamp(n_sources, 1, 3) - 1) * kNumSources + static_cast<int>(top);
}

int32_t depth_bucket(int32_t depth) { return std::clamp(depth, 1, 3) - 1; }

int32_t length_bucket(int32_t n) {
    if (n <= 2) return std::max(n, 1) - 1;  // 1, 2
    if (n <= 4) return 2;
    if (n <= 8) return 3;
    if (n <= 16) return 4;
    return 5;
}

// How the occurrences continuing the parent agree on this node: alone (one occurrence), most
// (>= 80%), half (>= 50%), a minority.
int32_t agreement_bucket(int32_t support, int32_t total) {
    if (total <= 1) return 0;
    const float share = static_cast<float>(support) / static_cast<float>(total);
    return share >= 0.8f ? 1 : share >= 0.5f ? 2 : 3;
}

}  // namespace

AcceptanceTable::AcceptanceTable() { clear(); }

void AcceptanceTable::clear() {
    cells_[static_cast<int>(Source::SKIP)].assign(kSkipCells, {});
    cells_[static_cast<int>(Source::LOOKUP)].assign(kTextCells, {});
    cells_[static_cast<int>(Source::SUFFIX)].assign(kTextCells, {});
    cells_[static_cast<int>(Source::RECYCLE)].assign(kRecycleCells, {});
    calibration_.assign(kCalibBins * 3 * kNumSources, {});
    depth_ = {};
}

int32_t AcceptanceTable::text_cell(int32_t match_len, int32_t support, int32_t total, int32_t depth) {
    return (length_bucket(match_len) * 4 + agreement_bucket(support, total)) * 3 + depth_bucket(depth);
}

int32_t AcceptanceTable::recycle_cell(int32_t rank, int32_t depth) {
    const int32_t r = rank <= 1 ? std::max(rank, 0) : rank <= 3 ? 2 : 3;
    return r * 3 + depth_bucket(depth);
}

int32_t AcceptanceTable::skip_cell(float draft_p, bool second) {
    const int32_t tenth = std::clamp(static_cast<int32_t>(draft_p * 10.0f), 0, 9);
    return tenth * 2 + (second ? 1 : 0);
}

float AcceptanceTable::prior(Source s, int32_t cell) const {
    switch (s) {
        case Source::SKIP: {
            const float p = (static_cast<float>(cell / 2) + 0.5f) / 10.0f;  // the draft's own probability
            return cell % 2 ? 0.5f * (1.0f - p) : 0.9f * p;
        }
        case Source::LOOKUP:
        case Source::SUFFIX: {
            static constexpr float by_agreement[4] = {0.45f, 0.6f, 0.4f, 0.15f};
            return by_agreement[(cell / 3) % 4];
        }
        case Source::RECYCLE: {
            static constexpr float by_rank[4] = {0.3f, 0.12f, 0.06f, 0.02f};
            return by_rank[cell / 3];
        }
    }
    return 0.0f;
}

float AcceptanceTable::estimate(Source s, int32_t cell) const {
    const CellStats& c = cells_[static_cast<int>(s)][cell];
    return static_cast<float>((c.accepted + kPriorWeight * prior(s, cell)) / (c.tried + kPriorWeight));
}

float AcceptanceTable::calibrated(float p_raw, int32_t n_sources, Source top) const {
    const CellStats& c = calibration_[calibration_cell(p_raw, n_sources, top)];
    return static_cast<float>((c.accepted + kPriorWeight * p_raw) / (c.tried + kPriorWeight));  // prior: identity
}

void AcceptanceTable::record_calibration(float p_raw, int32_t n_sources, Source top, bool accepted) {
    CellStats& c = calibration_[calibration_cell(p_raw, n_sources, top)];
    c.tried = c.tried * kDecay + 1.0;
    c.accepted = c.accepted * kDecay + (accepted ? 1.0 : 0.0);
}

void AcceptanceTable::record(Source s, int32_t cell, int32_t depth, bool accepted) {
    CellStats& c = cells_[static_cast<int>(s)][cell];
    c.tried = c.tried * kDecay + 1.0;
    c.accepted = c.accepted * kDecay + (accepted ? 1.0 : 0.0);
    DepthStats& d = depth_[static_cast<int>(s)];
    const int32_t i = std::clamp(depth, 1, DepthStats::kMaxDepth) - 1;
    ++d.tried[i];
    d.accepted[i] += accepted ? 1 : 0;
}

}  // namespace apls::draft
