"""`apls convert`: Hugging Face checkpoints → GGUF, run by the engine, against `transformers`.

For each architecture a tiny random model is made here with `transformers` (torch CPU), saved
as safetensors (Qwen2's sharded with an index) and converted:
- F32: logits match transformers to float32 summation order (rel. error < 2e-5; measured
  ~1e-6) and 32 greedy tokens are identical.
- F16 / BF16: the file's weights are the checkpoint's rounded to F16 / BF16, and the engine
  computes in float32 from them. So the reference is the transformers model with its 2-D
  weights rounded the same way (1-D tensors stay F32 in the file): then the only difference
  left is summation order again, and the same tight tolerance applies. Against the unrounded
  model, the error is the weight rounding's (F16: 2^-11 relative, BF16: 2^-8, per weight),
  checked against a bound a few times that.
Bad input (missing files, unsupported architecture, shape mismatch, corrupt safetensors,
offline and not cached) gives a ConvertError naming the problem; these need no torch.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gguf")
pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from hf_tiny import (  # noqa: E402
    ARCH_CONFIGS,
    llama_config,
    make_hf_model,
    write_bpe_tokenizer,
    write_numpy_checkpoint,
)

import apls  # noqa: E402
from apls import _core  # noqa: E402
from apls.convert import ConvertError, convert  # noqa: E402

PROMPT = [5, 17, 200, 33, 1, 99, 250, 7, 301, 45, 12, 3]
N_VOCAB = 416  # > the tokenizer's 400 + 1 added tokens: the converter pads with unused tokens
TIGHT = 2e-5


def rel_err(a, b):
    return float(np.max(np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1)))


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    write_bpe_tokenizer(d, "smollm", vocab_size=400)
    return d


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory, tok_dir):
    """arch -> (checkpoint dir, transformers model); built on first use."""
    pytest.importorskip("torch")
    cache = {}

    def get(arch):
        if arch not in cache:
            d = tmp_path_factory.mktemp(arch)
            model = make_hf_model(d, arch, N_VOCAB, seed=1, shard=(arch == "qwen2"))
            for f in tok_dir.iterdir():
                shutil.copy(f, d)
            cache[arch] = (d, model)
        return cache[arch]

    return get


def hf_logits(model, tokens):
    import torch

    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].numpy()


def rounded(model, dtype):
    """A copy of the model with its 2-D weights rounded to dtype (as the converted file has them)."""
    import torch

    m = copy.deepcopy(model)
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 2:
                p.copy_(p.to(getattr(torch, dtype)).float())
    return m


def engine(path, n_ctx=128):
    return _core.Context(_core.Model(str(path)), n_ctx=n_ctx, kv_type="f32")


# ---- architectures ------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", list(ARCH_CONFIGS))
def test_f32_logits_and_greedy_match_transformers(hf_models, tmp_path, arch):
    import torch

    d, model = hf_models(arch)
    out = convert(str(d), str(tmp_path / "m.gguf"), "f32", progress=False)
    ctx = engine(out)
    ours = ctx.decode(np.array(PROMPT, np.int32), logits="all")
    ref = hf_logits(model, PROMPT)
    assert rel_err(ours, ref) < TIGHT

    # 32 greedy steps, one token at a time through the KV cache, against transformers' greedy.
    tokens, ours_gen = list(PROMPT), []
    nxt = int(np.argmax(ours[-1]))
    for _ in range(32):
        ours_gen.append(nxt)
        nxt = int(np.argmax(ctx.decode(np.array([nxt], np.int32), logits="last")[-1]))
    with torch.no_grad():
        ids = torch.tensor([tokens])
        for _ in range(32):
            ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert ours_gen == ids[0, len(PROMPT) :].tolist()


@pytest.mark.parametrize("out_type,bound", [("f16", 1e-2), ("bf16", 6e-2)])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_f16_bf16_logits(hf_models, tmp_path, arch, out_type, bound):
    d, model = hf_models(arch)
    out = convert(str(d), str(tmp_path / "m.gguf"), out_type, progress=False)
    ours = engine(out).decode(np.array(PROMPT, np.int32), logits="all")
    assert rel_err(ours, hf_logits(rounded(model, {"f16": "float16", "bf16": "bfloat16"}[out_type]), PROMPT)) < TIGHT
    # Against the unrounded weights: the rounding error itself. Per weight it is at most 2^-11
    # (F16) / 2^-8 (BF16) relative, ~0.3x that as an RMS; through 3 layers the logits' relative
    # error measures ~1.5e-3 (F16) and ~1e-2 (BF16). The bounds leave room of ~5x.
    err = rel_err(ours, hf_logits(model, PROMPT))
    assert err < bound, err


def test_q8_0(hf_models, tmp_path):
    import torch
    from gguf import GGMLQuantizationType as QT
    from gguf import GGUFReader
    from gguf.quants import dequantize, quantize

    d, model = hf_models("llama")
    out = convert(str(d), str(tmp_path / "m.gguf"), "q8_0", progress=False)
    tensors = {t.name: t for t in GGUFReader(str(out)).tensors}
    assert tensors["blk.0.attn_norm.weight"].tensor_type == QT.F32
    # The file holds exactly gguf's Q8_0 of the (q: permuted) weights.
    sd = model.state_dict()
    from apls.convert.tensors import rope_pairs_order

    want = {
        "blk.1.ffn_down.weight": sd["model.layers.1.mlp.down_proj.weight"].numpy(),
        "blk.0.attn_q.weight": rope_pairs_order(sd["model.layers.0.self_attn.q_proj.weight"].numpy(), 4),
    }
    for name, w in want.items():
        assert tensors[name].tensor_type == QT.Q8_0
        assert np.array_equal(np.asarray(tensors[name].data).reshape(-1), quantize(w, QT.Q8_0).reshape(-1))
    # The engine against transformers with the same Q8_0-rounded weights. What remains is the
    # engine's Q8 rounding of activations (see test_architecture.py), which on this random
    # model moves logits about as much as the weight rounding does (measured: 3.8e-2 and 6e-2).
    mq = copy.deepcopy(model)
    with torch.no_grad():
        for p in mq.parameters():
            if p.ndim == 2:
                a = p.numpy()
                p.copy_(torch.from_numpy(dequantize(quantize(a, QT.Q8_0), QT.Q8_0).reshape(a.shape)))
    ours = engine(out).decode(np.array(PROMPT, np.int32), logits="all")
    assert rel_err(ours, hf_logits(mq, PROMPT)) < 1e-1


def test_sharded_checkpoint_and_metadata(hf_models, tmp_path):
    d, _ = hf_models("qwen2")
    assert (d / "model.safetensors.index.json").exists() and len(list(d.glob("model-*.safetensors"))) > 1
    out = convert(str(d), str(tmp_path / "m.gguf"), "f16", progress=False)
    m = _core.Model(str(out))
    assert m.arch == "qwen2" and m.n_layer == 3 and m.n_vocab == N_VOCAB
    from gguf import GGUFReader

    r = GGUFReader(str(out))
    meta = {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}
    assert meta["general.architecture"] == "qwen2" and meta["general.file_type"] == 1
    assert meta["qwen2.attention.head_count_kv"] == 2 and meta["qwen2.rope.freq_base"] == 10000.0
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "smollm"
    assert len(meta["tokenizer.ggml.tokens"]) == N_VOCAB and meta["tokenizer.ggml.tokens"][-1] == f"[PAD{N_VOCAB - 1}]"
    names = {t.name for t in r.tensors}
    assert {"blk.0.attn_q.bias", "blk.2.attn_v.bias", "output.weight", "token_embd.weight"} <= names


def test_qwen3_head_dim_and_norms(hf_models, tmp_path):
    d, _ = hf_models("qwen3")
    out = convert(str(d), str(tmp_path / "m.gguf"), "f32", progress=False)
    from gguf import GGUFReader

    r = GGUFReader(str(out))
    assert r.fields["qwen3.attention.key_length"].contents() == 24
    shapes = {t.name: list(t.shape) for t in r.tensors}
    assert shapes["blk.0.attn_q_norm.weight"] == [24] and shapes["blk.0.attn_q.weight"] == [64, 96]


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_kv_shift_uses_the_architectures_rope(hf_models, tmp_path, arch):
    """Shifting cached positions re-rotates keys in the architecture's RoPE layout (NEOX for
    qwen2). RoPE attention depends only on position differences, so a prompt cached at
    positions 10.. and shifted down by 10 must continue as if it had been cached at 0.."""
    d, _ = hf_models(arch)
    out = convert(str(d), str(tmp_path / "m.gguf"), "f32", progress=False)
    n = len(PROMPT)
    a = engine(out)
    a.decode(np.array(PROMPT, np.int32), pos=np.arange(10, 10 + n, dtype=np.int32), logits="last")
    a.kv_delete(0, 0, 10, True)
    got = a.decode(np.array([42], np.int32), logits="last")
    want = engine(out).decode(np.array(PROMPT + [42], np.int32), logits="last")
    assert rel_err(got, want) < 1e-5


# ---- bad input (no torch needed) -----------------------------------------------------------------


@pytest.fixture
def np_ckpt(tmp_path, tok_dir):
    """A valid NumPy-written llama checkpoint with the test tokenizer."""
    d = write_numpy_checkpoint(tmp_path / "ck", llama_config(vocab_size=N_VOCAB))
    for f in tok_dir.iterdir():
        shutil.copy(f, d)
    return d


def test_numpy_checkpoint_converts(np_ckpt, tmp_path):
    out = convert(str(np_ckpt), str(tmp_path / "m.gguf"), "bf16", progress=False)
    assert _core.Model(str(out)).n_vocab == N_VOCAB


def test_missing_files(np_ckpt, tmp_path):
    with pytest.raises(ConvertError, match="no-such-dir: no such directory"):
        convert(str(tmp_path / "no-such-dir"), str(tmp_path / "o.gguf"), progress=False)
    (np_ckpt / "tokenizer.json").unlink()
    with pytest.raises(ConvertError, match="no tokenizer"):
        convert(str(np_ckpt), str(tmp_path / "o.gguf"), progress=False)
    (np_ckpt / "model.safetensors").rename(np_ckpt / "pytorch_model.bin")
    with pytest.raises(ConvertError, match=r"no \*.safetensors weights \(found pytorch_model.bin"):
        convert(str(np_ckpt), str(tmp_path / "o.gguf"), progress=False)
    (np_ckpt / "config.json").unlink()
    with pytest.raises(ConvertError, match="config.json: missing"):
        convert(str(np_ckpt), str(tmp_path / "o.gguf"), progress=False)
    assert not list(tmp_path.glob("o.gguf*"))


def test_missing_shard(hf_models, tmp_path):
    d, _ = hf_models("qwen2")
    bad = tmp_path / "bad"
    shutil.copytree(d, bad)
    next(bad.glob("model-*.safetensors")).unlink()
    with pytest.raises(
        ConvertError, match=r"model-.*\.safetensors: missing \(listed in model.safetensors.index.json\)"
    ):
        convert(str(bad), str(tmp_path / "o.gguf"), progress=False)


def test_unsupported_architecture_is_named(np_ckpt, tmp_path):
    cfg = json.loads((np_ckpt / "config.json").read_text())
    cfg["architectures"] = ["GPTNeoXForCausalLM"]
    (np_ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        ConvertError,
        match="unsupported architecture 'GPTNeoXForCausalLM' "
        r"\(supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM",
    ):
        convert(str(np_ckpt), str(tmp_path / "o.gguf"), progress=False)


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(rope_scaling={"rope_type": "yarn", "factor": 4.0}), "RoPE scaling type 'yarn' is not supported"),
        (dict(hidden_act="gelu"), "hidden_act 'gelu' is not supported"),
        (dict(num_key_value_heads=3), "num_attention_heads 4 is not a multiple of num_key_value_heads 3"),
    ],
)
def test_unsupported_settings(np_ckpt, tmp_path, change, match):
    cfg = json.loads((np_ckpt / "config.json").read_text())
    cfg.update(change)
    (np_ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConvertError, match=match):
        convert(str(np_ckpt), str(tmp_path / "o.gguf"), progress=False)


def test_shape_mismatch_and_missing_tensor(tmp_path, tok_dir):
    cfg = llama_config(vocab_size=N_VOCAB)
    d = write_numpy_checkpoint(tmp_path / "a", cfg, reshape={"model.layers.0.mlp.up_proj.weight": (48, 32)})
    shutil.copy(tok_dir / "tokenizer.json", d)
    with pytest.raises(
        ConvertError,
        match=r"shape mismatch: 'model.layers.0.mlp.up_proj.weight' is \[48, 32\] "
        r"but config.json implies \[64, 32\]",
    ):
        convert(str(d), str(tmp_path / "o.gguf"), progress=False)
    d = write_numpy_checkpoint(tmp_path / "b", cfg, drop=("model.layers.0.self_attn.k_proj.weight",))
    shutil.copy(tok_dir / "tokenizer.json", d)
    with pytest.raises(ConvertError, match="missing tensor 'model.layers.0.self_attn.k_proj.weight'"):
        convert(str(d), str(tmp_path / "o.gguf"), progress=False)
    d = write_numpy_checkpoint(tmp_path / "c", cfg, reshape={"model.layers.0.self_attn.q_proj.bias": (32,)})
    with pytest.raises(ConvertError, match="unexpected tensor 'model.layers.0.self_attn.q_proj.bias'"):
        convert(str(d), str(tmp_path / "o.gguf"), progress=False)
    d = write_numpy_checkpoint(tmp_path / "d", llama_config(vocab_size=300))
    shutil.copy(tok_dir / "tokenizer.json", d)
    with pytest.raises(ConvertError, match="the tokenizer has 401 tokens but the model's embedding has 300 rows"):
        convert(str(d), str(tmp_path / "o.gguf"), progress=False)


def test_corrupt_safetensors(np_ckpt, tmp_path):
    f = np_ckpt / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])  # truncated: offsets run past the end
    with pytest.raises(ConvertError, match="corrupt safetensors file: tensor '.*' .* has data range"):
        convert(str(np_ckpt), str(tmp_path / "o.gguf"), progress=False)
    f.write_bytes((10).to_bytes(8, "little") + b"not json!!" + data[100:])
    with pytest.raises(ConvertError, match="corrupt safetensors file \\(header is not JSON"):
        convert(str(np_ckpt), str(tmp_path / "o.gguf"), progress=False)
    f.write_bytes(b"\xff" * 16)
    with pytest.raises(ConvertError, match="header length .* exceeds the file"):
        convert(str(np_ckpt), str(tmp_path / "o.gguf"), progress=False)


def test_unknown_type(np_ckpt, tmp_path):
    with pytest.raises(ConvertError, match="unknown output type 'q3_k'"):
        convert(str(np_ckpt), str(tmp_path / "o.gguf"), "q3_k", progress=False)


# ---- Hugging Face Hub and the command line ---------------------------------------------------------


def _run_cli(args, env_extra, cwd):
    env = dict(os.environ, **env_extra)
    # The apls this test imported (the installed package, or the source tree with APLS_EXT_DIR).
    env["PYTHONPATH"] = os.pathsep.join([str(Path(apls.__file__).parents[1]), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "apls", "convert", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def _fake_cache(hf_home: Path, repo: str, files_from: Path):
    """A Hugging Face cache holding `repo` at main (the hub's on-disk layout)."""
    commit = "0" * 40
    root = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in files_from.iterdir():
        shutil.copy(f, snap / f.name)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)


def test_hub_offline(np_ckpt, tmp_path):
    hf_home = tmp_path / "hf"
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    r = _run_cli(["someone/tiny-llama", "-o", str(tmp_path / "o.gguf")], env, tmp_path)
    assert r.returncode == 1
    assert "someone/tiny-llama is not in the local Hugging Face cache" in r.stderr and "HF_HUB_OFFLINE" in r.stderr
    _fake_cache(hf_home, "someone/tiny-llama", np_ckpt)
    r = _run_cli(["someone/tiny-llama", "-o", str(tmp_path / "o.gguf"), "--type", "f32"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert _core.Model(str(tmp_path / "o.gguf")).n_vocab == N_VOCAB


def test_cli(np_ckpt, tmp_path, capsys):
    from apls.cli import main

    assert main(["convert", str(np_ckpt), "-o", str(tmp_path / "m.gguf"), "--type", "q8_0", "-q"]) == 0
    assert _core.Model(str(tmp_path / "m.gguf")).arch == "llama"
    assert main(["convert", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.gguf")]) == 1
    assert "no such directory" in capsys.readouterr().err
