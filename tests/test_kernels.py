"""CPU kernel tables (cpu/kernels_*.cpp) through apls._core: every ISA this CPU has, against
NumPy references built independently of the engine, plus the batch-invariance contract."""

import numpy as np
import pytest

from apls import InvalidArgumentError, _core

gguf_quants = pytest.importorskip("gguf.quants")
from gguf import GGMLQuantizationType  # noqa: E402

ISAS = _core.kernel_isas()
QTYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]
KTYPES = {"Q4_K", "Q5_K", "Q6_K"}  # 256-element super-blocks
FTYPES = ["F32", "F16", "BF16"]
U = 2.0**-24  # float32 unit roundoff


def test_isa_list():
    assert ISAS[0] == "generic"
    assert _core.kernel_isa() in ISAS


# ---- NumPy references ----


def quantize_act_ref(x):
    """Q8 activation blocks as the kernels must make them: d = amax/127, q = rint(x/d) (half to
    even) computed as x * (1/d) in float32, s = d * sum(q). x: (n_tok, k) -> d, s: (n_tok, nb);
    q: (n_tok, nb, 32) float32 holding integers."""
    xb = np.asarray(x, np.float32).reshape(x.shape[0], -1, 32)
    d = (np.abs(xb).max(axis=-1) / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = np.rint(xb * inv[..., None]).astype(np.float32)
    s = (d * q.sum(axis=-1)).astype(np.float32)
    return d, s, q


def valid_k(type_name, k):
    """k rounded up to the type's block (256 for K-quants) so one list of sizes serves every type."""
    return -(-k // 256) * 256 if type_name in KTYPES else k


# K-quant blocks (gguf.quants has no K quantizer): random bytes for the quants and sub-block
# scales, sane half-precision super-block scales at these byte offsets. Independent of our quantizer.
K_HALVES = {
    "Q4_K": (144, [(0, 0.004), (2, 0.01)]),
    "Q5_K": (176, [(0, 0.002), (2, 0.01)]),
    "Q6_K": (210, [(208, 0.0004)]),
}


def random_k_blocks(type_name, rows, k, rng):
    bs, halves = K_HALVES[type_name]
    b = rng.integers(0, 256, size=(rows, k // 256, bs), dtype=np.uint8)
    for off, scale in halves:
        d = (scale * rng.uniform(0.5, 1.5, size=(rows, k // 256))).astype(np.float16)
        b[..., off : off + 2] = d[..., None].view(np.uint8)
    return b.reshape(rows, -1)


def make_weights(type_name, rows, k, rng):
    """-> (bytes (rows, row_bytes) uint8, dequantized (rows, k) float64, offset (rows, k/32) or
    None): `offset` bounds the part of each weight that the kernels handle separately from the
    scaled integers (Q4_0's 8*d, Q4_1's m), for the error bound."""
    w = rng.standard_normal((rows, k)).astype(np.float32)
    if type_name == "F32":
        return w.view(np.uint8), w.astype(np.float64), None
    if type_name == "F16":
        h = w.astype(np.float16)
        return h.view(np.uint8), h.astype(np.float64), None
    if type_name == "BF16":
        bits = (w.view(np.uint32) >> 16).astype(np.uint16)  # truncation: exactly representable
        return bits.view(np.uint8), (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64), None
    qt = GGMLQuantizationType[type_name]
    wq = random_k_blocks(type_name, rows, k, rng) if type_name in KTYPES else gguf_quants.quantize(w, qt)
    return (wq, *dequantized(type_name, wq, rows, k))


def dequantized(type_name, wq, rows, k):
    """-> (dequantized weights, offset) of quantized weight bytes, as make_weights."""
    qt = GGMLQuantizationType[type_name]
    wd = gguf_quants.dequantize(wq, qt).astype(np.float64)
    if type_name in ("Q4_K", "Q5_K"):  # dmin * m of each sub-block of 32
        sb = wq.reshape(rows, k // 256, -1)
        dmin = sb[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float64)
        _, m = gguf_quants.Q4_K.get_scale_min(np.ascontiguousarray(sb[..., 4:16]).reshape(-1, 12))
        return wd, (dmin[..., None] * m.reshape(rows, k // 256, 8)).reshape(rows, k // 32)
    if type_name in KTYPES:  # Q6_K: the -32 offset is taken off in integers (no float term)
        return wd, np.zeros((rows, k // 32))
    blocks = wq.reshape(rows, k // 32, -1)
    if type_name in ("Q4_0", "Q5_0"):
        half = 8 if type_name == "Q4_0" else 16
        offset = half * np.abs(blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float64))
    elif type_name in ("Q4_1", "Q5_1"):
        offset = np.abs(blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float64))
    else:
        offset = np.zeros((rows, k // 32))
    return wd, offset


def check_quantized(isa, type_name, k, rows, n_tok, rng, scale=1.0, weights=None, x=None):
    wq, wd, offset = weights or make_weights(type_name, rows, k, rng)
    if x is None:
        x = (scale * rng.standard_normal((n_tok, k))).astype(np.float32)
    y = _core.matmul(isa, type_name, wq, k, x)
    assert y.shape == (n_tok, rows) and not np.isnan(y).any()

    d, _, q = quantize_act_ref(x)
    nb = k // 32
    xq = (d[..., None].astype(np.float64) * q).reshape(n_tok, k)  # dequantized activations
    # (a) Same inputs as the kernel (dequantized weights, quantized activations) summed in float64:
    # only float32 rounding differs. Each block term takes <= 4 roundings (dw*dx, the product with
    # the integer sum, s = d*sum(q), the offset term) and the sum over blocks <= nb + 4 more
    # (a chain in the scalar code, lanes + a reduction tree in SIMD), each bounded by u times the
    # absolute terms, M; gguf's float32 dequantization (d*q + m) adds u*M. Factor 2 of slack.
    ref = xq @ wd.T
    off = np.repeat(offset, 32, axis=1)  # (rows, k)
    m_abs = np.abs(xq) @ (np.abs(wd) + 2 * off).T
    tol_a = 2 * (nb + 9) * U * m_abs
    err = np.abs(y - ref)
    assert (err <= tol_a).all(), f"{isa} {type_name} k={k}: max err/tol {(err / np.maximum(tol_a, 1e-30)).max()}"
    # (b) Against the plain float64 product with unquantized activations: each activation is off by
    # at most d/2 (rounding to the nearest multiple of d; 1e-3 covers the float32 1/d and x*(1/d)).
    act_err = np.repeat(d.astype(np.float64) * 0.5 * (1 + 1e-3), 32, axis=1)  # (n_tok, k)
    tol_b = tol_a + act_err @ np.abs(wd).T
    assert (np.abs(y - x.astype(np.float64) @ wd.T) <= tol_b).all()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("type_name", QTYPES)
@pytest.mark.parametrize("k", [32, 96, 512, 544, 576, 1536])
def test_matmul_quantized(isa, type_name, k):
    rng = np.random.default_rng(k + 7 * QTYPES.index(type_name))
    k = valid_k(type_name, k)
    for rows, n_tok in [(37, 1), (19, 3), (5, 17)]:
        check_quantized(isa, type_name, k, rows, n_tok, rng)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("type_name", QTYPES)
def test_matmul_quantized_scales(isa, type_name):
    """Tiny and large activations, and all-zero activation blocks."""
    rng = np.random.default_rng(3)
    k = valid_k(type_name, 576)
    for scale in [1e-6, 1e3]:
        check_quantized(isa, type_name, k, 23, 2, rng, scale)
    wq, _, _ = make_weights(type_name, 23, k, rng)
    y = _core.matmul(isa, type_name, wq, k, np.zeros((2, k), np.float32))
    assert (y == 0).all()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("type_name", QTYPES)
def test_matmul_quantized_extremes(isa, type_name):
    """Every quant at its largest value (all bytes 0xFF but the half-precision scales) times
    activations that all quantize to +127 or -127 (and a mix): the largest integer partial sums the
    kernels form (16-bit intermediates must not saturate), one token and a batch."""
    rng = np.random.default_rng(5)
    k, rows = valid_k(type_name, 576), 9
    wq, _, _ = make_weights(type_name, rows, k, rng)
    halves = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0]}
    halves.update({t: [off for off, _ in K_HALVES[t][1]] for t in KTYPES})
    blocks = wq.reshape(rows, -1, wq.size // rows // (k // (256 if type_name in KTYPES else 32))).copy()
    keep = np.zeros(blocks.shape[-1], bool)
    for off in halves[type_name]:
        keep[off : off + 2] = True
    blocks[..., ~keep] = 0xFF
    wq = blocks.reshape(wq.shape)
    x = np.ones((3, k), np.float32)
    x[1] = -1
    x[2, ::7] = -1
    for n_tok in (1, 3):
        check_quantized(
            isa, type_name, k, rows, n_tok, rng, weights=(wq, *dequantized(type_name, wq, rows, k)), x=x[:n_tok]
        )


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("type_name", FTYPES)
@pytest.mark.parametrize("k", [1, 5, 16, 33, 100, 576, 1536])
def test_matmul_float(isa, type_name, k):
    rng = np.random.default_rng(k)
    for rows, n_tok in [(37, 1), (6, 17)]:
        wb, wd, _ = make_weights(type_name, rows, k, rng)
        x = rng.standard_normal((n_tok, k)).astype(np.float32)
        y = _core.matmul(isa, type_name, wb, k, x)
        # The weights convert exactly to float32; each product rounds once (or not at all with FMA)
        # and the sum has at most k additions (the scalar chain; SIMD lanes + tree are shorter).
        ref = x.astype(np.float64) @ wd.T
        tol = (k + 2) * U * (np.abs(x).astype(np.float64) @ np.abs(wd).T)
        assert (np.abs(y - ref) <= tol).all()


# ---- batch invariance ----

SPLITS = [
    [(0, 75)],
    [(0, 16), (16, 75)],
    [(0, 32), (32, 64), (64, 75)],
    [(0, 1), (1, 75)],
    [(0, 5), (5, 37), (37, 38), (38, 75)],
    [(0, 48), (48, 70), (70, 75)],
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("type_name", QTYPES + FTYPES)
@pytest.mark.parametrize("k", [96, 128, 160, 576, 800, 1536])
def test_batch_invariance(isa, type_name, k):
    """y[t, r] is bit-identical for a token alone, inside any batch and under any row split. The
    sizes cover the x86 batch forms' group tails (16 blocks a group on AVX-512): 3 or 4 blocks
    (the short form), 5, one group and 2, one group and 9."""
    if type_name in KTYPES and k in (128, 160, 800):
        pytest.skip("K-quant rows are whole 256-element super-blocks: the other sizes cover them")
    rng = np.random.default_rng(k)
    k = valid_k(type_name, k)
    rows, n_tok = 75, 17
    wb, _, _ = make_weights(type_name, rows, k, rng)
    x = rng.standard_normal((n_tok, k)).astype(np.float32)
    alone = np.stack([_core.matmul(isa, type_name, wb, k, x[t : t + 1])[0] for t in range(n_tok)])
    for n in range(2, 17):
        for start in sorted({0, n_tok - n, (n_tok - n) // 2}):
            batch = _core.matmul(isa, type_name, wb, k, x[start : start + n])
            assert np.array_equal(batch, alone[start : start + n]), f"n_tok={n} start={start}"
    for split in SPLITS:
        for xs, ref in [(x[:1], alone[:1]), (x, alone)]:
            y = np.full_like(ref, np.nan)
            for r0, r1 in split:
                part = _core.matmul(isa, type_name, wb, k, xs, r0, r1)
                y[:, r0:r1] = part[:, r0:r1]
            assert np.array_equal(y, ref), f"split {split}"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("type_name", QTYPES + FTYPES)
def test_row_range_poisoning(isa, type_name):
    """Exactly the rows in [r0, r1) are written."""
    rng = np.random.default_rng(1)
    k, rows = valid_k(type_name, 576), 53
    wb, _, _ = make_weights(type_name, rows, k, rng)
    x = rng.standard_normal((3, k)).astype(np.float32)
    for r0, r1 in [(0, 0), (0, 53), (3, 4), (16, 48), (17, 53), (50, 53)]:
        y = _core.matmul(isa, type_name, wb, k, x, r0, r1)
        assert not np.isnan(y[:, r0:r1]).any()
        assert np.isnan(y[:, :r0]).all() and np.isnan(y[:, r1:]).all()


# ---- packed weights (cpu/repack.cpp) ----

PACKED_TYPES = {"Q5_0": (22, 1), "Q5_1": (24, 2), "Q4_0": (18, 1), "Q4_1": (20, 2), "Q8_0": (34, 1)}  # bytes, fp16s
PACKED = [(isa, t) for isa in ISAS for t in PACKED_TYPES if _core.kernel_packs(isa, t)]


@pytest.mark.skipif(not PACKED, reason="no ISA here packs weights")
@pytest.mark.parametrize(("isa", "type_name"), PACKED)
@pytest.mark.parametrize("k", [32, 64, 96, 224, 256, 288, 544, 896, 1536])
def test_matmul_packed_bit_identical(isa, type_name, k):
    """The packed layout's kernels give the GGUF-layout kernels' results bit for bit: one token and
    batches up to past a token tile, row ranges (inside one row octet, across several, a short
    last one), row counts past a whole octet (k not a multiple of 256: the shorter last octet with
    an odd and an even number of blocks), random bytes (any high bits, scales of either sign) and
    quantized weights, and the largest quants (Q8_0: -128 and 127)."""
    rng = np.random.default_rng(k + 1000 * list(PACKED_TYPES).index(type_name))
    rows = 41
    bs, n_half = PACKED_TYPES[type_name]
    raw = rng.integers(0, 256, size=(rows, k // 32, bs), dtype=np.uint8)
    d = (rng.uniform(-0.02, 0.02, size=(rows, k // 32, n_half))).astype(np.float16)
    raw[..., : 2 * n_half] = d.view(np.uint8)
    extremes = []
    for fill in (0xFF, 0x80, 0x7F) if type_name == "Q8_0" else (0xFF,):
        e = raw.copy()
        e[..., 2 * n_half :] = fill
        extremes.append(e.reshape(rows, -1))
    quantized, _, _ = make_weights(type_name, rows, k, rng)
    x = rng.standard_normal((11, k)).astype(np.float32)
    x[3, : min(k, 64)] = 0  # all-zero activation blocks
    for wb in (raw.reshape(rows, -1), *extremes, quantized):
        for xs in (x[:1], x[1:4], x[:5], x):
            for r0, r1 in [(0, rows), (5, 22), (9, 14), (16, 32), (40, 41)]:
                ref = _core.matmul(isa, type_name, wb, k, xs, r0, r1)
                got = _core.matmul(isa, type_name, wb, k, xs, r0, r1, packed=True)
                assert np.array_equal(ref, got, equal_nan=True), f"{isa} {type_name} k={k} n_tok={len(xs)}"
                assert ref.tobytes() == got.tobytes()


def test_matmul_packed_errors():
    for isa in ISAS:
        if not _core.kernel_packs(isa, "Q4_0"):
            with pytest.raises(InvalidArgumentError):
                _core.matmul(isa, "Q4_0", np.zeros(18, np.uint8), 32, np.zeros((1, 32), np.float32), packed=True)
    assert not _core.kernel_packs("generic", "Q5_0")


# ---- activation quantization ----


def act_cases(rng):
    ties = np.zeros(64, np.float32)
    ties[0] = 127  # d = 1, 1/d = 1: the rest are exact halves, which round to even
    ties[1:16] = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 126.5, -126.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5]
    ties[32] = -127
    ties[33:40] = [10.5, 11.5, -12.5, 0.25, 0.75, -0.75, 64.5]
    return [
        rng.standard_normal(576).astype(np.float32),
        (rng.standard_normal(1536) * 1e-30).astype(np.float32),
        (rng.standard_normal(96) * 1e30).astype(np.float32),
        np.zeros(64, np.float32),
        np.concatenate([np.zeros(32, np.float32), rng.standard_normal(32).astype(np.float32)]),
        np.full(32, -3.0, np.float32),
        ties,
        (rng.integers(-127, 128, 256) * 0.5).astype(np.float32),  # many exact halves
    ]


@pytest.mark.parametrize("isa", ISAS)
def test_quantize_act_exact(isa):
    rng = np.random.default_rng(5)
    for x in act_cases(rng):
        d, s, qs = _core.quantize_act(isa, x)
        rd, rs, rq = quantize_act_ref(x[None])
        assert np.array_equal(d, rd[0]) and np.array_equal(s, rs[0])
        assert qs.dtype == np.int8 and np.array_equal(qs, rq[0].astype(np.int8))


def test_quantize_act_same_across_isas():
    rng = np.random.default_rng(6)
    for x in act_cases(rng):
        outs = [_core.quantize_act(isa, x) for isa in ISAS]
        for o in outs[1:]:
            for a, b in zip(outs[0], o):
                assert np.array_equal(a, b)


# ---- attention primitives ----


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("f16", [False, True])
@pytest.mark.parametrize("n", [1, 7, 8, 17, 64, 100, 128, 130])
def test_dot_kv(isa, f16, n):
    rng = np.random.default_rng(n)
    q = rng.standard_normal(n).astype(np.float32)
    kv = rng.standard_normal(n).astype(np.float16 if f16 else np.float32)
    got = _core.dot_kv(isa, q, kv)
    prod = q.astype(np.float64) * kv.astype(np.float64)
    # n products (exact or one rounding each) and at most n additions, each within u of the |terms|.
    assert abs(got - prod.sum()) <= (n + 2) * U * np.abs(prod).sum()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("f16", [False, True])
@pytest.mark.parametrize("n", [1, 7, 8, 17, 64, 100, 128, 130])
def test_axpy_kv(isa, f16, n):
    """y + a * v, multiply and add rounded separately: exactly NumPy's float32 result."""
    rng = np.random.default_rng(n)
    v = rng.standard_normal(n).astype(np.float16 if f16 else np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    a = np.float32(0.3713)
    got = _core.axpy_kv(isa, float(a), v, y)
    assert np.array_equal(got, y + a * v.astype(np.float32))


@pytest.mark.parametrize("isa", ISAS)
def test_f32_to_f16_row_rounds_as_numpy(isa):
    """Every ISA's row conversion is NumPy's float16 rounding (nearest, ties to even) on finite
    values, overflow and subnormals; a NaN becomes the quiet NaN of its sign without payload
    (0x7E00 | sign), whatever its payload — also inside a group of eight."""
    rng = np.random.default_rng(5)
    x = np.concatenate(
        [
            rng.standard_normal(1000).astype(np.float32) * np.float32(10.0) ** rng.integers(-9, 6, 1000),
            np.array([0.0, -0.0, 65504.0, 65519.99, 65520.0, -65520.0, 1e-8, -6e-8, 5.96e-8, 2.98e-8], np.float32),
            np.array([np.inf, -np.inf, 2.0**-24 * 1.5, 2.0**-25, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11], np.float32),
        ]
    )
    bits = rng.integers(0, 2**32, 4000, dtype=np.uint64).astype(np.uint32)  # any float, NaNs and all
    x = np.concatenate([x.astype(np.float32), bits.view(np.float32)])
    got = _core.f32_to_f16_row(isa, x)
    finite = ~np.isnan(x)
    with np.errstate(over="ignore"):
        want = x[finite].astype(np.float16).view(np.uint16)
    assert np.array_equal(got[finite], want)
    sign = (x[~finite].view(np.uint32) >> 16).astype(np.uint16) & 0x8000
    assert np.array_equal(got[~finite], sign | 0x7E00)
    for n in (1, 7, 8, 9, 15, 17):  # tails
        assert np.array_equal(_core.f32_to_f16_row(isa, x[:n]), got[:n])


# ---- argument errors ----


def test_errors():
    x = np.zeros((1, 64), np.float32)
    w = np.zeros(2 * 40, np.uint8)  # two Q4_1 rows of k = 64
    with pytest.raises(InvalidArgumentError):
        _core.matmul("sse9", "Q4_1", w, 64, x)
    with pytest.raises(InvalidArgumentError):
        _core.matmul("generic", "Q2_K", w, 64, x)
    with pytest.raises(InvalidArgumentError):
        _core.matmul("generic", "Q4_1", w[:-1], 64, x)  # not a whole number of rows
    with pytest.raises(InvalidArgumentError):
        _core.matmul("generic", "Q4_1", w, 48, np.zeros((1, 48), np.float32))  # k not a multiple of 32
    with pytest.raises(InvalidArgumentError):
        _core.matmul("generic", "Q4_1", w, 64, np.zeros((1, 32), np.float32))  # x does not match k
    with pytest.raises(InvalidArgumentError):
        _core.matmul("generic", "Q4_1", w, 64, x, 1, 3)  # r1 > rows
    with pytest.raises(InvalidArgumentError):
        _core.quantize_act("generic", np.zeros(33, np.float32))
    with pytest.raises(InvalidArgumentError):
        _core.dot_kv("generic", np.zeros(4, np.float32), np.zeros(5, np.float32))
    with pytest.raises(InvalidArgumentError):
        _core.dot_kv("generic", np.zeros(4, np.float32), np.zeros(4, np.float64))
