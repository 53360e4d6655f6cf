"""Hugging Face tensor names → GGUF names (llama.cpp's), shape checks, output types, and the
row layout change llama's RoPE needs.

Llama in GGUF rotates adjacent pairs (x[2i], x[2i+1]) while Hugging Face's checkpoints are
laid out for rotate-half pairs (x[i], x[i + hd/2]); the rows of q and k (and their biases) are
reordered per head so the engine's RoPE computes the same thing. Qwen2/Qwen3 keep Hugging
Face's layout and use NEOX RoPE instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf.quants import quant_shape_to_byte_shape, quantize

from .errors import ConvertError
from .hparams import HParams
from .safetensors_io import Checkpoint

# --type names → GGUF tensor type of the 2-D weights (1-D tensors stay F32).
OUT_TYPES: dict[str, QT] = {
    "f32": QT.F32,
    "f16": QT.F16,
    "bf16": QT.BF16,
    "q8_0": QT.Q8_0,
    "q4_0": QT.Q4_0,
    "q4_1": QT.Q4_1,
    "q5_0": QT.Q5_0,
    "q5_1": QT.Q5_1,
}

_GLOBAL = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER = {
    "input_layernorm.weight": "attn_norm",
    "self_attn.q_proj.weight": "attn_q",
    "self_attn.q_proj.bias": "attn_q",
    "self_attn.k_proj.weight": "attn_k",
    "self_attn.k_proj.bias": "attn_k",
    "self_attn.v_proj.weight": "attn_v",
    "self_attn.v_proj.bias": "attn_v",
    "self_attn.o_proj.weight": "attn_output",
    "self_attn.o_proj.bias": "attn_output",
    "self_attn.q_norm.weight": "attn_q_norm",
    "self_attn.k_norm.weight": "attn_k_norm",
    "post_attention_layernorm.weight": "ffn_norm",
    "mlp.gate_proj.weight": "ffn_gate",
    "mlp.up_proj.weight": "ffn_up",
    "mlp.down_proj.weight": "ffn_down",
}
_LAYER_RE = re.compile(r"model\.layers\.(\d+)\.(.+)")
_IGNORED_RE = re.compile(r".*\.rotary_emb\.inv_freq$")  # recomputed from rope_theta


@dataclass
class OutTensor:
    """One tensor of the output file: GGUF name, its source, NumPy-order shape, type, bytes."""

    name: str
    src: str
    shape: tuple[int, ...]
    qtype: QT
    permute_heads: int  # > 0: reorder rows for adjacent-pair RoPE, this many heads
    nbytes: int


def expected_shapes(hp: HParams, tied: bool) -> dict[str, tuple[int, ...]]:
    """Every tensor the architecture needs, by Hugging Face name, with its (out, in) shape."""
    d, f, hd = hp.n_embd, hp.n_ff, hp.head_dim
    shapes = {"model.embed_tokens.weight": (hp.n_vocab, d), "model.norm.weight": (d,)}
    if not tied:
        shapes["lm_head.weight"] = (hp.n_vocab, d)
    for i in range(hp.n_layer):
        p = f"model.layers.{i}."
        shapes.update(
            {
                p + "input_layernorm.weight": (d,),
                p + "self_attn.q_proj.weight": (hp.q_dim, d),
                p + "self_attn.k_proj.weight": (hp.kv_dim, d),
                p + "self_attn.v_proj.weight": (hp.kv_dim, d),
                p + "self_attn.o_proj.weight": (d, hp.q_dim),
                p + "post_attention_layernorm.weight": (d,),
                p + "mlp.gate_proj.weight": (f, d),
                p + "mlp.up_proj.weight": (f, d),
                p + "mlp.down_proj.weight": (d, f),
            }
        )
        if hp.qkv_bias:
            shapes.update(
                {
                    p + "self_attn.q_proj.bias": (hp.q_dim,),
                    p + "self_attn.k_proj.bias": (hp.kv_dim,),
                    p + "self_attn.v_proj.bias": (hp.kv_dim,),
                }
            )
        if hp.o_bias:
            shapes[p + "self_attn.o_proj.bias"] = (d,)
        if hp.spec.qk_norm:
            shapes.update({p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,)})
    return shapes


def gguf_name(hf_name: str) -> str | None:
    """The GGUF name of a Hugging Face tensor name, or None if it is not one we know."""
    if hf_name in _GLOBAL:
        return _GLOBAL[hf_name]
    m = _LAYER_RE.fullmatch(hf_name)
    if m and m.group(2) in _LAYER:
        kind = "bias" if hf_name.endswith(".bias") else "weight"
        return f"blk.{int(m.group(1))}.{_LAYER[m.group(2)]}.{kind}"
    return None


def _layer_order(hf_name: str) -> tuple[int, int]:
    m = _LAYER_RE.fullmatch(hf_name)
    if hf_name == "model.embed_tokens.weight":
        return (-1, 0)
    if not m:
        return (1 << 30, 0 if hf_name == "model.norm.weight" else 1)
    return (int(m.group(1)), list(_LAYER).index(m.group(2)))


def plan_tensors(ckpt: Checkpoint, hp: HParams, out_type: str) -> list[OutTensor]:
    """The output tensors in file order, checked against config.json.

    Raises:
        ConvertError: an unknown --type, a missing tensor, a tensor the configuration does not
        have, or a shape that disagrees with config.json (each named).
    """
    if out_type not in OUT_TYPES:
        raise ConvertError(f"unknown output type '{out_type}' (supported: {', '.join(OUT_TYPES)})")
    want = OUT_TYPES[out_type]
    tied = hp.tied if hp.tied is not None else "lm_head.weight" not in ckpt
    shapes = expected_shapes(hp, tied)
    for name in ckpt.names():
        if name in shapes or _IGNORED_RE.fullmatch(name) or (tied and name == "lm_head.weight"):
            continue
        raise ConvertError(
            f"unexpected tensor '{name}' {list(ckpt.shape(name))}: not part of a {hp.hf_arch} with this config.json"
        )
    out = []
    for src in sorted(shapes, key=_layer_order):
        if src not in ckpt:
            hint = " (config.json says tie_word_embeddings = false)" if src == "lm_head.weight" else ""
            raise ConvertError(f"missing tensor '{src}'{hint}")
        if tuple(ckpt.shape(src)) != shapes[src]:
            raise ConvertError(
                f"shape mismatch: '{src}' is {list(ckpt.shape(src))} but config.json implies {list(shapes[src])}"
            )
        shape = shapes[src]
        qtype = QT.F32
        if len(shape) == 2:
            qtype = want
            if want not in (QT.F32, QT.F16, QT.BF16) and shape[1] % 32:
                qtype = QT.F16  # rows must be whole 32-element blocks
        heads = 0
        if hp.spec.permute_qk and ".self_attn.q_proj." in src:
            heads = hp.n_head
        elif hp.spec.permute_qk and ".self_attn.k_proj." in src:
            heads = hp.n_head_kv
        nbytes = int(np.prod(quant_shape_to_byte_shape(shape, qtype))) if len(shape) == 2 else 4 * shape[0]
        dst = gguf_name(src)
        if dst is None:  # expected_shapes names only tensors the table knows
            raise ConvertError(f"no GGUF name for tensor '{src}'")
        out.append(OutTensor(dst, src, shape, qtype, heads, nbytes))
    return out


def rope_pairs_order(a: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the rows of a q or k projection (or bias) from rotate-half to adjacent pairs:
    within each head of hd rows, rows j and j + hd/2 become rows 2j and 2j + 1."""
    hd = a.shape[0] // n_head
    return a.reshape(n_head, 2, hd // 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)


def _encode(a: np.ndarray, qtype: QT) -> np.ndarray:
    if qtype == QT.F32:
        return np.ascontiguousarray(a, dtype=np.float32)
    if qtype == QT.F16:
        return np.ascontiguousarray(a, dtype=np.float16)
    return quantize(np.ascontiguousarray(a, dtype=np.float32), qtype)


_SAME = {("F32", QT.F32), ("F16", QT.F16), ("BF16", QT.BF16)}


def tensor_data(ckpt: Checkpoint, t: OutTensor, chunk_bytes: int = 64 << 20) -> Iterator[np.ndarray]:
    """The output tensor's bytes as arrays, in row order; rows are read and converted a chunk
    at a time so memory stays near chunk_bytes whatever the tensor's size."""
    if t.permute_heads:  # q/k projections: small enough to reorder whole
        yield _encode(rope_pairs_order(ckpt.rows_f32(t.src), t.permute_heads), t.qtype)
        return
    if len(t.shape) == 1:
        yield ckpt.rows_f32(t.src)
        return
    rows = t.shape[0]
    step = max(1, chunk_bytes // (4 * t.shape[1]))
    same = (ckpt.dtype(t.src), t.qtype) in _SAME
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        if same:  # bit-exact copy, no float round trip
            yield np.ascontiguousarray(ckpt.raw(t.src)[r0:r1])
        else:
            yield _encode(ckpt.rows_f32(t.src, r0, r1), t.qtype)
