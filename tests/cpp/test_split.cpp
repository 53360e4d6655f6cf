// test_split.cpp — the arithmetic of a split among devices (split.h) against hand-computed cuts:
// llama.cpp's rule for layers, whole-block cuts for the row split, and the errors it names.
#include <limits>
#include <string>
#include <vector>

#include "check.h"
#include "common.h"
#include "split.h"

using namespace apls;

namespace {

HParams shape(int32_t n_head, int32_t n_head_kv, int32_t head_dim, int32_t n_ff) {
    HParams hp;
    hp.n_head = n_head;
    hp.n_head_kv = n_head_kv;
    hp.head_dim = head_dim;
    hp.n_embd = n_head * head_dim;
    hp.n_ff = n_ff;
    return hp;
}

}  // namespace

APLS_TEST(shares_are_the_proportions_normalized) {
    const std::vector<double> eq = split_shares({}, 4);
    CHECK(eq.size() == 4 && eq[0] == 0.25 && eq[3] == 0.25);
    const std::vector<double> s = split_shares({3.0f, 1.0f}, 2);
    CHECK(s[0] == 0.75 && s[1] == 0.25);
    CHECK(split_shares({0.0f, 2.0f}, 2)[0] == 0.0);
    CHECK_THROWS(split_shares({1.0f}, 2), APLS_STATUS_INVALID_ARGUMENT, "tensor split has 1 values for 2 devices");
    CHECK_THROWS(split_shares({1.0f, -1.0f}, 2), APLS_STATUS_INVALID_ARGUMENT, "tensor split value 1");
    CHECK_THROWS(split_shares({1.0f, std::numeric_limits<float>::quiet_NaN()}, 2), APLS_STATUS_INVALID_ARGUMENT,
                 "must be finite");
    CHECK_THROWS(split_shares({0.0f, 0.0f}, 2), APLS_STATUS_INVALID_ARGUMENT, "every device 0");
    CHECK_THROWS(split_shares({}, 0), APLS_STATUS_INVALID_ARGUMENT, "at least one device");
}

APLS_TEST(layers_go_to_the_first_device_whose_cumulative_share_exceeds_their_position) {
    // 30 layers (SmolLM2): halves 15 / 15; 3:1 -> l / 30 < 0.75 for l <= 22: 23 / 7.
    LayerSplit h = split_layers(30, split_shares({}, 2));
    CHECK(h.first == (std::vector<int32_t>{0, 15, 30}));
    LayerSplit q = split_layers(30, split_shares({3.0f, 1.0f}, 2));
    CHECK(q.first == (std::vector<int32_t>{0, 23, 30}));
    CHECK(q.layers(0) == (SplitRange{0, 23}) && q.layers(1).size() == 7);
    CHECK(q.device_of(0) == 0 && q.device_of(22) == 0 && q.device_of(23) == 1 && q.device_of(29) == 1);
    CHECK(q.head_device() == 1);
    // 1:2 of 30: exactly 10 / 20 (l / 30 < 1/3 for l <= 9).
    CHECK(split_layers(30, split_shares({1.0f, 2.0f}, 2)).first == (std::vector<int32_t>{0, 10, 30}));
    // 32 layers over 3 equal devices: l / 32 < 1/3 for l <= 10, < 2/3 for l <= 21.
    CHECK(split_layers(32, split_shares({}, 3)).first == (std::vector<int32_t>{0, 11, 22, 32}));
}

APLS_TEST(devices_of_share_zero_get_no_layers) {
    LayerSplit s = split_layers(30, split_shares({1.0f, 0.0f, 1.0f}, 3));
    CHECK(s.first == (std::vector<int32_t>{0, 15, 15, 30}));
    CHECK(s.layers(1).size() == 0 && s.device_of(15) == 2 && s.device_of(14) == 0);
    LayerSplit last_empty = split_layers(30, split_shares({1.0f, 0.0f}, 2));
    CHECK(last_empty.first == (std::vector<int32_t>{0, 30, 30}));
    CHECK(last_empty.head_device() == 0 && last_empty.device_of(29) == 0);
    LayerSplit first_empty = split_layers(30, split_shares({0.0f, 1.0f}, 2));
    CHECK(first_empty.first == (std::vector<int32_t>{0, 0, 30}) && first_empty.device_of(0) == 1);
    // More devices than layers: each layer on its own device, the rest empty.
    CHECK(split_layers(2, split_shares({}, 4)).first == (std::vector<int32_t>{0, 1, 1, 2, 2}));
    CHECK_THROWS(s.device_of(30), APLS_STATUS_INVALID_ARGUMENT, "layer 30 is not in the split's 30 layers");
    CHECK_THROWS(split_layers(0, {1.0}), APLS_STATUS_INVALID_ARGUMENT, "0 layers");
}

APLS_TEST(row_split_keeps_each_gqa_group_on_one_device) {
    // SmolLM2: 9 query heads on 3 KV heads (groups of 3), head_dim 64, n_ff 1536, Q4_1 (blocks
    // of 32). A KV group's 192 q columns fill whole blocks, so units are single KV heads: 3 units,
    // one per device first, then the rest (1) by the rounded cumulative shares: 2 / 1. MLP: 48
    // units of 32; 46 shared as 23 / 23, plus one each.
    RowSplit s = split_rows(shape(9, 3, 64, 1536), split_shares({}, 2), 32, 32);
    CHECK(s.q_per_kv == 3);
    CHECK(s.kv_heads[0] == (SplitRange{0, 2}) && s.kv_heads[1] == (SplitRange{2, 3}));
    CHECK(s.q_heads(0) == (SplitRange{0, 6}) && s.q_heads(1) == (SplitRange{6, 9}));
    CHECK(s.ff[0] == (SplitRange{0, 768}) && s.ff[1] == (SplitRange{768, 1536}));
}

APLS_TEST(row_split_follows_the_shares_in_whole_units) {
    // Llama-2-7B F16: 32 heads (MHA), n_ff 11008, blocks of 1. 3:1 -> 32 KV heads: one each, 30
    // by round(0.75 * 30) = 23 (half away from zero) -> 24 / 8; n_ff: one each, 11006 by
    // round(8254.5) = 8255 -> 8256 / 2752.
    RowSplit s = split_rows(shape(32, 32, 128, 11008), split_shares({3.0f, 1.0f}, 2), 1, 1);
    CHECK(s.kv_heads[0] == (SplitRange{0, 24}) && s.kv_heads[1] == (SplitRange{24, 32}));
    CHECK(s.ff[0] == (SplitRange{0, 8256}) && s.ff[1] == (SplitRange{8256, 11008}));
    // Wo in K-quant blocks of 256 over 64-wide heads: units of 4 heads, 8 units over 3 equal
    // devices: one each, 5 by round(5/3) = 2, round(10/3) = 3 -> 3 / 2 / 3 units.
    RowSplit k = split_rows(shape(32, 32, 64, 11008), split_shares({}, 3), 256, 256);
    CHECK(k.kv_heads[0] == (SplitRange{0, 12}) && k.kv_heads[1] == (SplitRange{12, 20}) &&
          k.kv_heads[2] == (SplitRange{20, 32}));
    // n_ff 11008 = 43 blocks of 256: one each, 40 by round(13.33) = 13, round(26.67) = 27 ->
    // 14 / 15 / 14 blocks.
    CHECK(k.ff[0] == (SplitRange{0, 14 * 256}) && k.ff[1] == (SplitRange{14 * 256, 29 * 256}) &&
          k.ff[2] == (SplitRange{29 * 256, 11008}));
    // A device of share 0 gets nothing and is not counted for the minimum.
    RowSplit z = split_rows(shape(9, 3, 64, 1536), split_shares({1.0f, 0.0f, 1.0f}, 3), 32, 32);
    CHECK(z.kv_heads[1].size() == 0 && z.ff[1].size() == 0);
    CHECK(z.kv_heads[0].size() + z.kv_heads[2].size() == 3 && z.ff[2].end == 1536);
}

APLS_TEST(row_split_names_what_cannot_be_cut) {
    // Qwen2.5-Coder-0.5B: 14 query heads on 2 KV heads: at most 2 devices.
    const HParams qwen = shape(14, 2, 64, 4864);
    CHECK(split_rows(qwen, split_shares({}, 2), 32, 32).q_heads(1) == (SplitRange{7, 14}));
    CHECK_THROWS(split_rows(qwen, split_shares({}, 4), 32, 32), APLS_STATUS_INVALID_ARGUMENT,
                 "4 devices with a share of the work but only 2 units of 1 KV heads");
    // Its 896 q columns are not whole blocks of 256: such a Wo cannot exist, and is refused.
    CHECK_THROWS(split_rows(qwen, split_shares({}, 2), 256, 32), APLS_STATUS_INVALID_ARGUMENT, "do not tile");
    CHECK_THROWS(split_rows(shape(9, 4, 64, 1536), {0.5, 0.5}, 32, 32), APLS_STATUS_INVALID_ARGUMENT,
                 "9 query heads do not share 4 KV heads evenly");
}

int main() { return apls_test::run_all(); }
