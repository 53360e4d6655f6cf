"""The CUDA backend end to end against the CPU backend (skipped without a usable GPU).

Op-level checks (every kernel against the CPU op, NMSE per type, poisoned outputs) are the C++
program tests/cpp/test_cuda_ops.cpp; these tests check whole models: logits, greedy tokens,
lossless speculative decoding and KV-cache operations on the GPU."""

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from smollm2_cases import PLANS, chat_ids, plain_greedy
from tiny_model import write_tiny_llama

import apls
from apls import _core
from apls.policy import DraftLength, StaticPolicy

GREEDY = apls.SamplingParams(temperature=0.0)

pytestmark = [
    pytest.mark.skipif(_core.cuda_device_count() == 0, reason=f"no usable CUDA device ({_core.cuda_describe()})"),
    pytest.mark.usefixtures("auto_device"),
]  # "auto" as users get it (conftest.py pins the CPU)

PROMPTS = [
    "Explain how a rainbow forms.",
    "Write a haiku about autumn.",
    "What is 17 times 23?",
    "List three uses of copper.",
    "def fibonacci(n):",
    "Why is the sky blue?",
    "Describe the water cycle.",
    "What is the capital of Australia?",
]


@pytest.fixture(scope="module")
def cpu(smollm2_path):
    return apls.Model(smollm2_path, n_ctx=512, device="cpu")


@pytest.fixture(scope="module")
def gpu(smollm2_path):
    return apls.Model(smollm2_path, n_ctx=512, device="cuda")


def test_device_selection(gpu, cpu, smollm2_path):
    assert gpu.device == "cuda" and cpu.device == "cpu"
    auto = apls.Model(smollm2_path)  # auto: the GPU when one is usable
    assert auto.device == "cuda" and auto.device_note == "" and gpu.device_note == cpu.device_note == ""
    with pytest.raises(apls.InvalidArgumentError, match="device must be"):
        apls.Model(smollm2_path, device="tpu")


@pytest.mark.parametrize(
    "kw, reason",
    [
        (dict(d=16, n_head=4, n_kv=2), "head dimensions"),
        (dict(weight_type=GGMLQuantizationType.Q5_0), "no kernels for tensor"),
    ],
)
def test_auto_device_takes_the_cpu_for_models_cuda_does_not_run(tmp_path, kw, reason):
    """A model the CUDA kernels do not cover (head dimension 4; Q5_0 matrices, which only the
    CPU runs) loads on the CPU under "auto" and decodes there; asked for "cuda", it is refused
    at load with the reason, not at the first decode."""
    path = tmp_path / "m.gguf"
    write_tiny_llama(path, **kw)
    m = apls.Model(str(path))
    assert m.device == "cpu" and reason in m.device_note
    assert np.isfinite(m.context(n_ctx=32).decode([1, 2, 3], logits="last")).all()
    with pytest.raises(apls.UnsupportedError, match=reason):
        apls.Model(str(path), device="cuda")
    ok = tmp_path / "ok.gguf"  # the same tiny llama with head dimension 8 stays on the GPU
    write_tiny_llama(ok)
    assert apls.Model(str(ok)).device == "cuda"


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_logits_match_float64_reference(smollm2_f16_path):
    """F16 weights, F32 cache, against the NumPy float64 forward (tests/reference.py). Decode (the
    matrix-vector kernels, float activations) differs from it only by float32 summation order,
    ~2e-6 after 30 layers as on the CPU (test_model.py). Prompt processing goes through cuBLAS
    with F16 activations, checked against the envelope of that rounding (below)."""
    from reference import Reference

    gpu = apls.Model(smollm2_f16_path, device="cuda")
    ids = chat_ids(gpu, PROMPTS[0])[:40]
    ref = Reference(smollm2_f16_path).forward(ids)
    ref16 = Reference(smollm2_f16_path, act_f16=True).forward(ids)
    prefill = gpu.context(n_ctx=256, kv_type="f32").decode(ids, logits="all")
    # F16 activation rounding moves SmolLM2's logits chaotically (as Q8 rounding does on the CPU,
    # test_model.py::test_full_model_matches_float_reference): which tokens get hit depends on
    # float summation order, so, as there, the GPU prompt path must stay within the envelope that
    # the reference measures for the rounding itself (F16-rounded vs float), on average and at most.
    ours = np.array([rel_err(prefill[t], ref[t]) for t in range(len(ids))])
    envelope = np.array([rel_err(ref16[t], ref[t]) for t in range(len(ids))])
    assert ours.mean() <= 1.5 * envelope.mean(), (ours, envelope)
    assert ours.max() <= 2.0 * envelope.max(), (ours, envelope)
    ctx = gpu.context(n_ctx=256, kv_type="f32")
    errs = [rel_err(ctx.decode([t])[-1], ref[i]) for i, t in enumerate(ids)]
    assert max(errs) < 1e-5, errs


def test_greedy_tokens_match_cpu(cpu, gpu):
    """Greedy tokens equal the CPU's; where they diverge the CPU's own top two logits at that
    step must be a near-tie (Q4_1 weights: the CPU rounds activations to Q8, the GPU does not)."""
    for text in PROMPTS:
        ids = chat_ids(cpu, text)
        want, got = plain_greedy(cpu, ids, 32), plain_greedy(gpu, ids, 32)
        if got == want:
            continue
        i = next(j for j in range(32) if got[j] != want[j])
        row = cpu.logits(ids + want[:i])[-1]
        top2 = np.sort(row)[-2:]
        assert top2[1] - top2[0] < 0.3, (text, i, top2)


@pytest.mark.parametrize("name", sorted(PLANS))
def test_speculative_greedy_identical_on_cuda(gpu, name):
    for text in PROMPTS:
        ids = chat_ids(gpu, text)
        want = plain_greedy(gpu, ids, 64)
        policy = StaticPolicy(PLANS[name], DraftLength(n_max=8, p_min=0.0))
        got = gpu.generate_tokens(ids, 64, GREEDY, ignore_eos=True, speculative=True, policy=policy)
        assert list(got) == want, (name, text)
        assert gpu.last_stats.n_rounds < 64


def test_long_drafts_stay_within_the_invariant_batch(gpu):
    """Verify batches of more than 16 tokens would take the prompt kernels (cuBLAS), whose
    logits are not bit-identical to one-token decoding: a draft of up to 24 tokens is cut to 15,
    and the output stays plain greedy."""
    for text in PROMPTS[:4]:
        ids = chat_ids(gpu, text)
        policy = StaticPolicy(PLANS["skip"], DraftLength(n_max=24, p_min=0.0), adapt_length=False)
        got = gpu.generate_tokens(ids, 96, GREEDY, ignore_eos=True, speculative=True, policy=policy)
        assert list(got) == plain_greedy(gpu, ids, 96), text
        longest = len(gpu.last_stats.drafted_at)  # drafted_at[i]: rounds that drafted an (i+1)-th token
        assert longest == 15, gpu.last_stats.drafted_at


@pytest.mark.parametrize("name", ["skip", "groups"])
def test_draft_chain_drafts_what_waiting_per_token_drafts(gpu, name, monkeypatch):
    """Greedy drafting without a confidence stop is queued as one chain (each token taken from
    the previous step's choice on the device, one wait per round): the rounds, drafts and output
    are those of waiting for every token (APLS_DRAFT_CHAIN=0), and the output is plain greedy."""
    for text in PROMPTS[:4]:
        ids = chat_ids(gpu, text)
        runs, waits = {}, {}
        for chain in ("1", "0"):
            monkeypatch.setenv("APLS_DRAFT_CHAIN", chain)
            policy = StaticPolicy(PLANS[name], DraftLength(n_max=8, p_min=0.0), adapt_length=False)
            out = list(gpu.generate_tokens(ids, 64, GREEDY, ignore_eos=True, speculative=True, policy=policy))
            s = gpu.last_stats
            runs[chain] = (out, s.n_rounds, s.n_drafted, s.n_accepted)
            waits[chain] = s.n_draft_waits
        assert runs["1"] == runs["0"], (name, text)
        assert runs["1"][0] == plain_greedy(gpu, ids, 64), (name, text)
        out, n_rounds, n_drafted, _ = runs["1"]
        assert n_drafted > 2 * n_rounds  # chains of several steps per round
        assert waits == {"1": n_rounds, "0": n_drafted}  # chained: one wait per round, not per token


def test_plans_match_cpu_f16(smollm2_f16_path):
    cpu = apls.Model(smollm2_f16_path, device="cpu")
    gpu = apls.Model(smollm2_f16_path, device="cuda")
    ids = chat_ids(cpu, PROMPTS[1])[:12]
    for plan in PLANS.values():
        cc, gc = cpu.context(n_ctx=64, kv_type="f32"), gpu.context(n_ctx=64, kv_type="f32")
        x = cc.decode(ids, logits="all", plan=plan)
        y = gc.decode(ids, logits="all", plan=plan)
        fin = np.isfinite(x)
        assert np.array_equal(fin, np.isfinite(y))  # draft head: the same -inf tail
        assert rel_err(y[fin], x[fin]) < 1e-5


def test_kv_operations_on_cuda_match_cpu(smollm2_f16_path):
    """Delete with shift (keys re-rotated on the GPU), fork with copy-on-write, truncate: the next
    token's logits agree with the CPU backend doing the same operations."""
    cpu = apls.Model(smollm2_f16_path, device="cpu")
    gpu = apls.Model(smollm2_f16_path, device="cuda")
    ids = chat_ids(cpu, PROMPTS[2])
    outs = []
    for m in (cpu, gpu):
        ctx = m.context(n_ctx=256, n_seq_max=2, kv_block_size=16, kv_type="f32")
        for t in ids:
            ctx.decode([t])
        ctx.kv.delete(0, 3, 11, shift=True)  # middle of blocks: compaction copies + rotation
        ctx.kv.fork(0, 1)  # shared blocks, then a private copy on append
        a = ctx.decode([ids[-1]], seq_ids=[1])
        ctx.kv.truncate(0, ctx.kv.seq_len(0) - 2)
        b = ctx.decode([ids[-2]], seq_ids=[0])
        outs.append((a, b))
    for x, y in zip(outs[0], outs[1]):
        assert rel_err(y[-1], x[-1]) < 1e-5


def test_kv_full_on_cuda_is_a_clear_error(gpu):
    ctx = gpu.context(n_ctx=32, kv_block_size=16)
    ctx.decode(list(range(1, 30)))
    with pytest.raises(apls.KVCacheFullError):
        ctx.decode(list(range(1, 10)))
    ctx.decode([5])  # still usable


_PDL_PROBE = """
import hashlib, sys
import numpy as np
import apls
from apls import _core
m = apls.Model(sys.argv[1], n_ctx=512, device="cuda")
ctx = m.context(n_ctx=512)
ids = m.tokenize("The three primary colors are")
first = np.asarray(ctx.decode(ids, logits="all"), dtype=np.float32)
h = hashlib.sha256(first.tobytes())
for t in range(200, 216):  # single-token decode steps (graphs replayed)
    h.update(np.asarray(ctx.decode([t], logits="last"), dtype=np.float32).tobytes())
h.update(np.asarray(ctx.decode(list(range(300, 309)), logits="all"), dtype=np.float32).tobytes())  # a verify batch
print(h.hexdigest())
"""


_GROUPS_PROBE = """
import hashlib, sys
import numpy as np
import apls
m = apls.Model(sys.argv[1], n_ctx=512, device="cuda")
ctx = m.context(n_ctx=512)
plan = apls.Plan.skipping([], [14], groups=[(8, 11), (20, 23)])
ids = m.tokenize("The three primary colors are")
h = hashlib.sha256(np.asarray(ctx.decode(ids, logits="all"), dtype=np.float32).tobytes())
for t in range(200, 208):  # single-token steps under the plan (graphs replayed)
    h.update(np.asarray(ctx.decode([t], logits="last", plan=plan), dtype=np.float32).tobytes())
h.update(np.asarray(ctx.decode(list(range(300, 309)), logits="all", plan=plan), dtype=np.float32).tobytes())
print(h.hexdigest())
"""


def _probe_digest(probe, path, **env):
    import os
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-c", probe, str(path)],
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_fused_parallel_groups_change_no_result(smollm2_path):
    """A parallel group's layers run side by side (each matrix stage of all members one launch);
    the logits are bit-identical to running them one after the other."""
    fused = _probe_digest(_GROUPS_PROBE, smollm2_path, APLS_CUDA_FUSED_GROUPS="1")
    alone = _probe_digest(_GROUPS_PROBE, smollm2_path, APLS_CUDA_FUSED_GROUPS="0")
    assert len(fused) == 64 and fused == alone


def test_dependent_launch_changes_no_result(smollm2_path):
    """Programmatic dependent launch (cuda/pdl.cuh) overlaps a kernel's start with the end of the
    one before it; every kernel waits for its inputs, so logits are bit-identical with it off."""
    on = _probe_digest(_PDL_PROBE, smollm2_path, APLS_CUDA_PDL="1")
    off = _probe_digest(_PDL_PROBE, smollm2_path, APLS_CUDA_PDL="0")
    assert len(on) == 64 and on == off
