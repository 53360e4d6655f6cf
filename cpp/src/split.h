// split.h — how one model's work is divided among the devices of a host (issue "Several GPUs of
// one host"): the arithmetic of a split, from the proportions a user gives (`--tensor-split`, as
// llama.cpp's: "3,1" gives the first device three quarters of the work). No device code here.
//
// Layer split: device d runs the contiguous layers [first[d], first[d + 1]); a step's activations
// (t, d) cross a device boundary once per pair of neighbouring devices; the output head runs on
// the last device that holds layers. Layer l goes to the first device whose cumulative share
// exceeds l / n_layer (llama.cpp's rule for its layer split), so a device of share s gets about
// s * n_layer layers and a device of share 0 none.
//
// Row split (tensor parallelism, as Megatron-LM lays it out): device d holds KV heads
// [kv_heads[d].begin, .end) with the query heads that read them (n_head / n_head_kv per KV head),
// so attention needs nothing from the other devices, and MLP hidden units [ff[d].begin, .end):
// Wq, Wk, Wv, Wgate and Wup are cut by their output rows, Wo and Wdown by their input columns,
// and each device's partial Wo and Wdown products are summed over the devices (all-reduce). A
// block-quantized matrix can only be cut between blocks along its input dimension: Wo's cuts fall
// at whole KV-head groups whose q columns are a multiple of Wo's block, Wdown's at multiples of
// its block. Within those units the shares are rounded to the nearest unit, so the cuts are
// monotone and the last one is the whole dimension.
#pragma once

#include <cstdint>
#include <vector>

#include "hparams.h"

namespace apls {

// A half-open range [begin, end) of heads, units or layers.
struct SplitRange {
    int32_t begin = 0, end = 0;
    int32_t size() const { return end - begin; }
    bool operator==(const SplitRange& o) const { return begin == o.begin && end == o.end; }
};

// Each device's share of the work (summing to 1) from proportions (`--tensor-split`): empty means
// equal shares; otherwise one finite, non-negative value per device, not all zero. Throws
// INVALID_ARGUMENT naming the problem.
std::vector<double> split_shares(const std::vector<float>& proportions, int32_t n_devices);

struct LayerSplit {
    std::vector<int32_t> first;  // (n_devices + 1) device d runs layers [first[d], first[d + 1])

    int32_t n_devices() const { return static_cast<int32_t>(first.size()) - 1; }
    SplitRange layers(int32_t device) const { return {first[device], first[device + 1]}; }
    int32_t device_of(int32_t layer) const;  // the device that runs `layer`
    int32_t head_device() const;             // the last device with layers: the output head's
};

// Throws INVALID_ARGUMENT when n_layer < 1 or shares is empty.
LayerSplit split_layers(int32_t n_layer, const std::vector<double>& shares);

struct RowSplit {
    int32_t q_per_kv = 1;             // query heads per KV head (GQA group)
    std::vector<SplitRange> kv_heads;  // (n_devices) KV heads of each device
    std::vector<SplitRange> ff;        // (n_devices) MLP hidden units (rows of Wgate, Wup; columns of Wdown)

    int32_t n_devices() const { return static_cast<int32_t>(kv_heads.size()); }
    SplitRange q_heads(int32_t device) const {
        return {kv_heads[device].begin * q_per_kv, kv_heads[device].end * q_per_kv};
    }
};

// wo_block, down_block: elements per block of Wo and Wdown along their input dimension (1 for
// F32/F16/BF16, 32 for Q4_0...Q8_0, 256 for the K-quants). Throws INVALID_ARGUMENT when a device
// with a positive share would get no KV heads or no MLP units (fewer units than such devices), or
// when n_head is not a multiple of n_head_kv or a dimension is not a multiple of its block.
RowSplit split_rows(const HParams& hp, const std::vector<double>& shares, int32_t wo_block, int32_t down_block);

}  // namespace apls
