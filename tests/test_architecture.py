"""The llama family on small models made here: separate or tied output, linear RoPE scaling,
GQA layouts — against the NumPy reference — and clear refusals of what the engine cannot run."""

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from reference import Reference
from tiny_model import write_tiny_llama

from apls import _core

TOKENS = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize(
    "kw",
    [
        dict(),  # separate output head
        dict(tied=True),  # tied embeddings
        dict(rope_linear=4.0),  # linear RoPE scaling
        dict(n_head=4, n_kv=4),  # multi-head (no GQA)
        dict(n_head=8, n_kv=1, d=64),  # multi-query
    ],
    ids=["separate-output", "tied", "rope-linear", "mha", "mqa"],
)
def test_tiny_llama_matches_reference(tmp_path, kw):
    # F32 weights: float activations end to end, only summation order differs (~1e-7).
    path = write_tiny_llama(tmp_path / "m.gguf", n_vocab=16, seed=11, **kw)
    ours = _core.Context(_core.Model(path), n_ctx=64, kv_type="f32").decode(np.array(TOKENS, np.int32), logits="all")
    ref = Reference(path).forward(TOKENS)
    assert max(rel_err(ours[t], ref[t]) for t in range(len(TOKENS))) < 1e-5


def test_rope_scaling_changes_the_result(tmp_path):
    a = write_tiny_llama(tmp_path / "a.gguf", seed=2)
    b = write_tiny_llama(tmp_path / "b.gguf", seed=2, rope_linear=4.0)
    la = _core.Context(_core.Model(a), n_ctx=32).decode(np.array(TOKENS, np.int32), logits="all")
    lb = _core.Context(_core.Model(b), n_ctx=32).decode(np.array(TOKENS, np.int32), logits="all")
    assert np.array_equal(la[0], lb[0])  # position 0 is not rotated
    assert rel_err(lb[-1], la[-1]) > 1e-3  # later positions are


def test_unknown_architecture_is_named(tmp_path):
    path = write_tiny_llama(tmp_path / "gpt2.gguf", arch="gpt2")
    with pytest.raises(_core.UnsupportedError, match="unknown architecture 'gpt2'"):
        _core.Model(path)


def test_unsupported_tensor_type_is_named(tmp_path):
    # TQ2_0 (ternary): a valid GGUF type the engine has no kernels for.
    path = write_tiny_llama(tmp_path / "tq2.gguf", d=256, n_ff=512, weight_type=GGMLQuantizationType.TQ2_0)
    with pytest.raises(_core.UnsupportedError, match=r"blk\.0\.attn_q\.weight' has type TQ2_0"):
        _core.Model(path)


@pytest.mark.parametrize(
    "qt",
    [GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1],
    ids=["Q8_0", "Q4_0", "Q4_1"],
)
def test_quantized_tiny_llama_runs_close_to_its_dequantized_reference(tmp_path, qt):
    # Quantized weights: the engine rounds activations to Q8 (see test_model.py); the reference
    # emulates that rounding, so on 4 tiny layers the two agree to summation order almost always.
    path = write_tiny_llama(tmp_path / "q.gguf", d=64, n_ff=128, n_vocab=16, seed=4, weight_type=qt)
    ours = _core.Context(_core.Model(path), n_ctx=64, kv_type="f32").decode(np.array(TOKENS, np.int32), logits="all")
    ref = Reference(path, quant_act=True).forward(TOKENS)
    errs = [rel_err(ours[t], ref[t]) for t in range(len(TOKENS))]
    assert np.median(errs) < 1e-5 and max(errs) < 1e-2, errs
