// cpu/repack.cpp — the packed CPU layouts (described in cpu/kernels.h), made at model load for
// the x86 kernels: octets of Q5_0 / Q5_1 rows (kernels_x86_q5k.inc: decode_q5p) and row octets of
// Q4_0 / Q4_1 / Q8_0 (kernels_avx2_rowoct.inc).
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "common.h"
#include "cpu/kernels.h"

namespace apls::cpu {

namespace {

struct Q5Layout {
    int bs, qh, qs;  // block bytes, offsets of the 32 high bits and of the 16 quant bytes
    bool m;          // Q5_1: an fp16 offset after d
};

bool q5_layout(TensorType type, Q5Layout* out) {
    if (type == TensorType::Q5_0) *out = {22, 2, 6, false};
    else if (type == TensorType::Q5_1) *out = {24, 4, 8, true};
    else return false;
    return true;
}

// Bytes of an octet of nv <= 8 blocks (full: 8 * bs).
int64_t octet_bytes(const Q5Layout& q, int nv) { return 32 + 32 * ((nv + 1) / 2) + (q.m ? 32 : 16); }

// spread[b]: byte i = bit i of b (0 or 1), for the bit planes of the high bits.
struct Spread {
    uint64_t v[256];
    Spread() {
        for (int b = 0; b < 256; ++b) {
            v[b] = 0;
            for (int i = 0; i < 8; ++i) v[b] |= static_cast<uint64_t>((b >> i) & 1) << (8 * i);
        }
    }
};

void pack_row(const Q5Layout& q, const uint8_t* src, int64_t nb, uint8_t* dst) {
    static const Spread spread;
    constexpr uint64_t kLo = 0x0F0F0F0F0F0F0F0FULL;
    for (int64_t o = 0; o < nb; o += 8) {
        const int nv = static_cast<int>(std::min<int64_t>(8, nb - o)), np = (nv + 1) / 2;
        const int64_t ob = octet_bytes(q, nv);
        std::memset(dst, 0, static_cast<size_t>(ob));
        uint64_t qh[4] = {0, 0, 0, 0};
        uint64_t qs[4][4] = {};
        uint8_t* sc = dst + 32 + 32 * np;
        for (int j = 0; j < nv; ++j) {
            const uint8_t* b = src + (o + j) * q.bs;
            std::memcpy(sc + 2 * j, b, 2);
            if (q.m) std::memcpy(sc + 16 + 2 * j, b + 2, 2);
            uint32_t h;
            std::memcpy(&h, b + q.qh, 4);
            for (int i = 0; i < 4; ++i) qh[i] |= spread.v[(h >> (8 * i)) & 0xFF] << j;  // weights 8i .. 8i+7
            uint64_t v[2];
            std::memcpy(v, b + q.qs, 16);
            // Weights 0-15: low nibbles of the 16 bytes; 16-31: their high nibbles.
            const uint64_t w[4] = {v[0] & kLo, v[1] & kLo, (v[0] >> 4) & kLo, (v[1] >> 4) & kLo};
            for (int i = 0; i < 4; ++i) qs[j / 2][i] |= w[i] << (4 * (j % 2));
        }
        std::memcpy(dst, qh, 32);
        for (int p = 0; p < np; ++p) std::memcpy(dst + 32 + 32 * p, qs[p], 32);
        dst += ob;
    }
}

// Set s of rows (8 rows from src, n <= 8 of them real) to dst, block by block.
void pack_set(const RowOctLayout& q, const uint8_t* src, int64_t nb, int n, uint8_t* dst) {
    const int64_t rb = nb * q.bs;
    const int slab = 8 * q.bs, nq = q.nqs / 4;  // quant words a row and block
    std::memset(dst, 0, static_cast<size_t>(nb * slab));
    for (int64_t b = 0; b < nb; ++b) {
        uint8_t* o = dst + b * slab;
        for (int r = 0; r < n; ++r) {
            const uint8_t* blk = src + r * rb + b * q.bs;
            for (int i = 0; i < nq; ++i) std::memcpy(o + 32 * i + 4 * r, blk + q.qs + 4 * i, 4);
            std::memcpy(o + 8 * q.nqs + 2 * r, blk, 2);
            if (q.m) std::memcpy(o + 8 * q.nqs + 16 + 2 * r, blk + 2, 2);
        }
    }
}

}  // namespace

bool packs(const KernelTable& table, TensorType type) {
    if (!table.matmul_q_packed) return false;
    Q5Layout q5;
    return q5_layout(type, &q5) || (table.packs_row_octets && rowoct_layout(type).bs > 0);
}

uint64_t packed_bytes(TensorType type, int64_t k, int64_t rows) {
    if (k <= 0 || k % QK != 0 || rows < 0) return 0;
    if (const RowOctLayout q = rowoct_layout(type); q.bs > 0)
        return static_cast<uint64_t>((rows + 7) / 8 * 8 * (k / QK) * q.bs);
    return packed_row_bytes(type, k) * static_cast<uint64_t>(rows);
}

uint64_t packed_row_bytes(TensorType type, int64_t k) {
    Q5Layout q;
    if (!q5_layout(type, &q) || k <= 0 || k % QK != 0) return 0;
    const int64_t nb = k / QK, full = nb / 8;
    const int tail = static_cast<int>(nb % 8);
    return static_cast<uint64_t>(full * 8 * q.bs + (tail ? octet_bytes(q, tail) : 0));
}

void pack_rows(TensorType type, const uint8_t* src, int64_t k, int64_t rows, uint8_t* dst) {
    if (packed_bytes(type, k, 1) == 0)
        fail(APLS_STATUS_INVALID_ARGUMENT, "pack_rows: no packed layout for ", type_name(type), " with k=", k);
    const int64_t nb = k / QK;
    if (const RowOctLayout ro = rowoct_layout(type); ro.bs > 0) {
        for (int64_t r = 0; r < rows; r += 8)
            pack_set(ro, src + r * nb * ro.bs, nb, static_cast<int>(std::min<int64_t>(8, rows - r)),
                     dst + r * nb * ro.bs);
        return;
    }
    Q5Layout q{};
    q5_layout(type, &q);
    const uint64_t pb = packed_row_bytes(type, k), rb = row_bytes(type, k);
    for (int64_t r = 0; r < rows; ++r) pack_row(q, src + r * rb, nb, dst + r * pb);
}

bool repack_enabled(const KernelTable& table) {
    static const bool env_on = [] {
        const char* e = std::getenv("APLS_CPU_REPACK");
        return !(e && std::strcmp(e, "0") == 0);
    }();
    return env_on && table.matmul_q_packed != nullptr;
}

}  // namespace apls::cpu
