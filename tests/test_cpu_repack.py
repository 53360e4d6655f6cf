"""The CPU kernels' packed weights (cpu/repack.cpp, Model::pack_for_cpu): a model's logits are
bit-identical with and without them (APLS_CPU_REPACK=0), for a prompt, one-token steps and a
batch, on one thread and two. The kernels themselves: test_kernels.py::test_matmul_packed_*."""

import os
import subprocess
import sys

import pytest

from apls import _core

PROBE = """
import hashlib, sys
import numpy as np
import apls
from apls import _core
m = apls.Model(sys.argv[1], n_ctx=256, n_threads=int(sys.argv[2]), device="cpu")
ctx = m.context(n_ctx=256)
ids = m.tokenize("def quicksort(xs):\\n    ")
h = hashlib.sha256(np.asarray(ctx.decode(ids, logits="all"), dtype=np.float32).tobytes())
for t in range(200, 204):  # one-token steps
    h.update(np.asarray(ctx.decode([t], logits="last"), dtype=np.float32).tobytes())
h.update(np.asarray(ctx.decode(list(range(300, 309)), logits="all"), dtype=np.float32).tobytes())  # a batch
print(_core.cpu_repack_enabled(), h.hexdigest())
"""


def _probe(path, threads, repack):
    env = dict(os.environ, APLS_CPU_REPACK=repack)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, path, str(threads)], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def _same_with_and_without(path, threads):
    on_enabled, on = _probe(path, threads, "1")
    off_enabled, off = _probe(path, threads, "0")
    assert (on_enabled, off_enabled) == ("True", "False")
    assert on == off


@pytest.mark.skipif(not _core.kernel_packs(_core.kernel_isa(), "Q5_0"), reason="this CPU's kernels pack nothing")
@pytest.mark.parametrize("threads", [1, 2])
def test_repack_same_logits(qwen05b_path, threads):
    """Qwen2.5-Coder-0.5B: Q5_0 attention and FFN matrices (k = 896: a short last octet per row)."""
    _same_with_and_without(qwen05b_path, threads)


@pytest.mark.skipif(not _core.kernel_packs(_core.kernel_isa(), "Q4_1"), reason="this CPU's kernels keep Q4_1 as it is")
@pytest.mark.parametrize("threads", [1, 2])
def test_repack_row_octets_same_logits(smollm2_path, threads):
    """SmolLM2-135M: Q4_1 layers and the tied Q8_0 head in row octets (AVX2), whose embedding
    lookup still reads the GGUF bytes."""
    _same_with_and_without(smollm2_path, threads)
