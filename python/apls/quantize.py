"""Quantize a GGUF model file: `apls quantize IN.gguf OUT.gguf TYPE`.

The numbers are the engine's (C++ `quantize_rows`, also in the C API as `apls_quantize_rows`);
this module decides which tensor gets which type, and streams the output file with the `gguf`
package: tensor infos first, then one tensor at a time (input rows dequantized in chunks), so
the model is never held in memory twice.

Which tensor gets which type (docs/QUANTIZATION.md has the table):

- 1-D tensors (norms, biases) are written as F32.
- A single TYPE (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, F16, F32) applies to every
  2-D weight.
- Mixes, after llama.cpp's published rule of thumb: Q4_K_M is Q4_K except the output head
  (`output.weight`, or `token_embd.weight` when the embeddings are tied) in Q6_K, and `attn_v`
  and `ffn_down` in Q6_K in the layers that get more bits (the first and last eighth of the
  layers and every third layer in between); Q5_K_M is the same over Q5_K.
- A K-quant needs rows that are a multiple of 256; other tensors fall back to a 32-block type
  of at least as many bits: Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0 (llama.cpp's choice).
  A 32-block type on rows that are not a multiple of 32 is an error naming the tensor.
- A tensor already in a quantized type is copied as it is when that is its target type, and
  otherwise refused unless `allow_requantize` (it would be dequantized and quantized again,
  adding the second rounding to the first).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field

import numpy as np

from . import _core

TYPES = ("Q8_0", "Q6_K", "Q5_K", "Q5_1", "Q5_0", "Q4_K", "Q4_1", "Q4_0", "F16", "F32")
MIXES = {"Q4_K_M": ("Q4_K", "Q6_K"), "Q5_K_M": ("Q5_K", "Q6_K")}  # mix -> (base, more bits)
K_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
FLOAT_TYPES = ("F32", "F16", "BF16")
# general.file_type (llama.cpp's LLAMA_FTYPE numbers, as gguf.LlamaFileType): a single K-quant
# is recorded as the "_S" variant of its family.
FILE_TYPE = {
    "F32": 0,
    "F16": 1,
    "Q4_0": 2,
    "Q4_1": 3,
    "Q8_0": 7,
    "Q5_0": 8,
    "Q5_1": 9,
    "Q4_K": 14,
    "Q4_K_M": 15,
    "Q5_K": 16,
    "Q5_K_M": 17,
    "Q6_K": 18,
}
ROW_CHUNK = 4096  # rows dequantized at a time: bounds the float32 working set per tensor


@dataclass
class QuantizeResult:
    """What `quantize` wrote: per tensor its output type, and the sizes of the files' tensors."""

    types: dict[str, str] = field(default_factory=dict)
    in_bytes: int = 0
    out_bytes: int = 0

    def counts(self) -> dict[str, int]:
        """Number of tensors per output type."""
        out: dict[str, int] = {}
        for t in self.types.values():
            out[t] = out.get(t, 0) + 1
        return out


def _more_bits(layer: int, n_layer: int) -> bool:
    """Layers whose attn_v / ffn_down get the larger type in the _M mixes: the first and last
    eighth, and every third layer in between."""
    return layer < n_layer // 8 or layer >= 7 * n_layer // 8 or (layer - n_layer // 8) % 3 == 2


_LAYER = re.compile(r"^blk\.(\d+)\.(.+)$")


def target_type(name: str, shape, ftype: str, n_layer: int, tied_output: bool) -> str:
    """The output type of tensor `name` (GGUF shape: ne0 first) for TYPE or mix `ftype`."""
    if len(shape) < 2:
        return "F32"
    if ftype in MIXES:
        base, more = MIXES[ftype]
        t = base
        m = _LAYER.match(name)
        if (
            name == "output.weight"
            or (tied_output and name == "token_embd.weight")
            or m
            and m.group(2) in ("attn_v.weight", "ffn_down.weight")
            and _more_bits(int(m.group(1)), n_layer)
        ):
            t = more
    else:
        t = ftype
    block = 256 if t in K_FALLBACK else 32 if t not in FLOAT_TYPES else 1
    if int(shape[0]) % block != 0:
        if t in K_FALLBACK:
            t = K_FALLBACK[t]
            block = 32
        if int(shape[0]) % block != 0:
            raise ValueError(
                f"tensor '{name}' has rows of {int(shape[0])} elements, not a multiple of {block}: "
                f"it cannot be stored as {t}"
            )
    return t


def copy_metadata(reader, writer) -> None:
    """Every key-value pair of a GGUFReader into a GGUFWriter, except the header fields and
    the two keys the writer sets itself (architecture, file type)."""
    from gguf import GGUFValueType

    for key, f in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
            continue
        vtype = f.types[0]
        sub = f.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(key, f.contents(), vtype, sub_type=sub)


def _progress(total: int, enabled: bool):
    """A progress bar over `total` elements (tqdm when installed, else plain lines on stderr)."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm

        return tqdm(total=total, unit="w", unit_scale=True, desc="quantize", file=sys.stderr)
    except ImportError:

        class _Plain:
            def __init__(self):
                self.n, self.last = 0, -1

            def update(self, k):
                self.n += k
                pct = 100 * self.n // max(total, 1)
                if pct // 10 != self.last // 10:
                    print(f"quantize: {pct}%", file=sys.stderr)
                    self.last = pct

            def set_postfix_str(self, s):
                pass

            def close(self):
                pass

        return _Plain()


def quantize(
    in_path: str, out_path: str, type: str, *, allow_requantize: bool = False, n_threads: int = 0, progress: bool = True
) -> QuantizeResult:
    """Write `in_path` (GGUF) to `out_path` with its weights in `type`: a single type (see TYPES)
    or a mix (Q4_K_M, Q5_K_M); the module docstring says which tensor gets which type.

    Returns a `QuantizeResult`. Raises ValueError for an unknown type, a tensor whose rows do not
    fit the type, or an already-quantized tensor without `allow_requantize` (the message names
    the tensor); OSError when a file cannot be read or written. A partial output is removed."""
    from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
    from gguf.quants import dequantize

    if type not in TYPES and type not in MIXES:
        raise ValueError(f"unknown quantization type '{type}' (choose from {', '.join(TYPES + tuple(MIXES))})")
    n_threads = n_threads if n_threads > 0 else _core.physical_cores()  # the engine's default
    r = GGUFReader(in_path)
    arch = r.fields["general.architecture"].contents()
    names = {t.name for t in r.tensors}
    layers = [int(m.group(1)) for m in (_LAYER.match(n) for n in names) if m]
    n_layer = max(layers) + 1 if layers else 0
    tied = "output.weight" not in names

    # Plan every tensor first: errors come before anything is written.
    plan = []
    res = QuantizeResult()
    for t in r.tensors:
        src = t.tensor_type.name
        dst = target_type(t.name, [int(s) for s in t.shape], type, n_layer, tied)
        if len(t.shape) < 2 and src not in FLOAT_TYPES:
            dst = src  # 1-D integer / quantized tensors: copied
        if src not in FLOAT_TYPES and src != dst and not allow_requantize:
            raise ValueError(
                f"tensor '{t.name}' is already quantized ({src}); re-quantizing it to {dst} adds a "
                f"second rounding: pass allow_requantize=True (--allow-requantize) to do it anyway"
            )
        plan.append((t, src, dst))
        res.types[t.name] = dst
        res.in_bytes += int(t.n_bytes)

    w = GGUFWriter(out_path, arch)
    try:
        copy_metadata(r, w)
        w.add_file_type(FILE_TYPE[type])
        for t, _src, dst in plan:
            k = int(t.shape[0])
            rows = int(t.n_elements) // k
            if dst in ("F32", "F16"):
                dt = np.float32 if dst == "F32" else np.float16
                w.add_tensor_info(
                    t.name, [int(s) for s in reversed(t.shape)], np.dtype(dt), rows * k * np.dtype(dt).itemsize
                )
            else:
                qt = GGMLQuantizationType[dst]
                nbytes = rows * int(_core.type_row_size(dst, k))
                w.add_tensor_info(t.name, (rows, nbytes // rows), np.dtype(np.uint8), nbytes, raw_dtype=qt)
            res.out_bytes += int(w.tensors[-1][t.name].nbytes)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()

        bar = _progress(sum(int(t.n_elements) for t, _, _ in plan), progress)
        for t, src, dst in plan:
            if bar is not None:
                bar.set_postfix_str(f"{t.name} {src}->{dst}")
            k = int(t.shape[0])
            rows = int(t.n_elements) // k
            data = t.data.reshape(rows, -1)  # rows of ne0 elements (bytes for block types)
            if src == dst:
                out = np.ascontiguousarray(data)
            elif dst in ("F32", "F16"):
                out = np.empty((rows, k), np.float32 if dst == "F32" else np.float16)
                for r0 in range(0, rows, ROW_CHUNK):
                    out[r0 : r0 + ROW_CHUNK] = _rows_f32(data[r0 : r0 + ROW_CHUNK], t.tensor_type, k, dequantize)
            else:
                out = np.empty((rows, int(_core.type_row_size(dst, k))), np.uint8)
                for r0 in range(0, rows, ROW_CHUNK):
                    x = _rows_f32(data[r0 : r0 + ROW_CHUNK], t.tensor_type, k, dequantize)
                    out[r0 : r0 + ROW_CHUNK] = _core.quantize_rows(dst, x, n_threads)
            w.write_tensor_data(
                out.reshape(-1) if out.dtype == np.uint8 else out.reshape([int(s) for s in reversed(t.shape)])
            )
            if bar is not None:
                bar.update(int(t.n_elements))
        if bar is not None:
            bar.close()
        w.close()
    except BaseException:
        w.close()
        try:
            os.remove(out_path)
        except OSError:
            pass
        raise
    return res


def _rows_f32(rows: np.ndarray, src_type, k: int, dequantize) -> np.ndarray:
    """Rows of a tensor in any GGUF type as (n, k) float32."""
    if rows.dtype == np.float32:
        return np.ascontiguousarray(rows)
    if rows.dtype == np.float16:
        return rows.astype(np.float32)
    return np.asarray(dequantize(np.ascontiguousarray(rows), src_type), np.float32).reshape(-1, k)
