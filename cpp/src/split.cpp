// split.cpp — the arithmetic of a layer or row split among devices; see split.h.
#include "split.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common.h"

namespace apls {

namespace {

// cum[d] = shares[0] + ... + shares[d], the last exactly 1.
std::vector<double> cumulative(const std::vector<double>& shares) {
    std::vector<double> cum(shares.size());
    std::partial_sum(shares.begin(), shares.end(), cum.begin());
    cum.back() = 1.0;
    return cum;
}

// Units per device: one for each device of positive share, the rest by the rounded cumulative
// shares (monotone cuts, summing to n_units). Fails when there are fewer units than devices of
// positive share; `what` names the units in the message.
std::vector<SplitRange> allocate(int32_t n_units, const std::vector<double>& shares, const std::string& what) {
    const auto n_pos =
        static_cast<int32_t>(std::count_if(shares.begin(), shares.end(), [](double s) { return s > 0; }));
    if (n_units < n_pos)
        fail(APLS_STATUS_INVALID_ARGUMENT, "row split: ", n_pos, " devices with a share of the work but only ", n_units,
             " ", what);
    const std::vector<double> cum = cumulative(shares);
    const int32_t rest = n_units - n_pos;
    std::vector<SplitRange> out(shares.size());
    int32_t begin = 0;
    int64_t cut = 0;  // units of `rest` before this device
    for (size_t d = 0; d < shares.size(); ++d) {
        const int64_t next = std::llround(cum[d] * rest);
        const auto n = static_cast<int32_t>((shares[d] > 0 ? 1 : 0) + (next - cut));
        out[d] = {begin, begin + n};
        begin += n;
        cut = next;
    }
    return out;
}

}  // namespace

std::vector<double> split_shares(const std::vector<float>& proportions, int32_t n_devices) {
    if (n_devices < 1) fail(APLS_STATUS_INVALID_ARGUMENT, "a split needs at least one device, not ", n_devices);
    if (proportions.empty()) return std::vector<double>(static_cast<size_t>(n_devices), 1.0 / n_devices);
    if (proportions.size() != static_cast<size_t>(n_devices))
        fail(APLS_STATUS_INVALID_ARGUMENT, "tensor split has ", proportions.size(), " values for ", n_devices,
             " devices");
    double sum = 0.0;
    for (size_t d = 0; d < proportions.size(); ++d) {
        const float p = proportions[d];
        if (!std::isfinite(p) || p < 0)
            fail(APLS_STATUS_INVALID_ARGUMENT, "tensor split value ", d, " is ", p, " (must be finite and >= 0)");
        sum += p;
    }
    if (sum <= 0) fail(APLS_STATUS_INVALID_ARGUMENT, "tensor split gives every device 0");
    std::vector<double> shares(proportions.size());
    for (size_t d = 0; d < shares.size(); ++d) shares[d] = proportions[d] / sum;
    return shares;
}

LayerSplit split_layers(int32_t n_layer, const std::vector<double>& shares) {
    if (n_layer < 1) fail(APLS_STATUS_INVALID_ARGUMENT, "layer split of ", n_layer, " layers");
    if (shares.empty()) fail(APLS_STATUS_INVALID_ARGUMENT, "layer split over no devices");
    const std::vector<double> cum = cumulative(shares);
    LayerSplit s;
    s.first.assign(shares.size() + 1, 0);
    size_t d = 0;
    for (int32_t l = 0; l < n_layer; ++l) {
        const double at = static_cast<double>(l) / n_layer;
        while (cum[d] <= at) s.first[++d] = l;  // devices before the one whose share covers l
    }
    while (++d <= shares.size()) s.first[d] = n_layer;
    return s;
}

int32_t LayerSplit::device_of(int32_t layer) const {
    if (layer < 0 || layer >= first.back())
        fail(APLS_STATUS_INVALID_ARGUMENT, "layer ", layer, " is not in the split's ", first.back(), " layers");
    return static_cast<int32_t>(std::upper_bound(first.begin(), first.end(), layer) - first.begin()) - 1;
}

int32_t LayerSplit::head_device() const {
    int32_t d = n_devices() - 1;
    while (d > 0 && first[d] == first[d + 1]) --d;
    return d;
}

RowSplit split_rows(const HParams& hp, const std::vector<double>& shares, int32_t wo_block, int32_t down_block) {
    if (shares.empty()) fail(APLS_STATUS_INVALID_ARGUMENT, "row split over no devices");
    if (hp.n_head_kv < 1 || hp.n_head % hp.n_head_kv != 0)
        fail(APLS_STATUS_INVALID_ARGUMENT, "row split: ", hp.n_head, " query heads do not share ", hp.n_head_kv,
             " KV heads evenly");
    if (wo_block < 1 || down_block < 1 || hp.q_dim() % wo_block != 0 || hp.n_ff % down_block != 0)
        fail(APLS_STATUS_INVALID_ARGUMENT, "row split: blocks of ", wo_block, " (Wo) and ", down_block,
             " (Wdown) do not tile their inputs of ", hp.q_dim(), " and ", hp.n_ff);
    RowSplit s;
    s.q_per_kv = hp.n_head / hp.n_head_kv;
    // The fewest KV heads whose query columns fill whole blocks of Wo.
    const int32_t cols = s.q_per_kv * hp.head_dim;
    const int32_t kv_unit = wo_block / std::gcd(wo_block, cols);
    s.kv_heads =
        allocate(hp.n_head_kv / kv_unit, shares, str("units of ", kv_unit, " KV heads (Wo blocks of ", wo_block, ")"));
    for (SplitRange& r : s.kv_heads) r = {r.begin * kv_unit, r.end * kv_unit};
    s.ff = allocate(hp.n_ff / down_block, shares, str("MLP units of ", down_block, " (Wdown blocks)"));
    for (SplitRange& r : s.ff) r = {r.begin * down_block, r.end * down_block};
    return s;
}

}  // namespace apls
