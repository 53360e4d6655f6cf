"""Lazy reading of (sharded) safetensors checkpoints.

The files are memory-mapped and each tensor is read only when asked for, so converting keeps
about one tensor in memory. The format is parsed here (8-byte header length, JSON header, raw
data) rather than with the `safetensors` package because its NumPy loader cannot return
BF16, the usual dtype of checkpoints, and conversion must not need torch.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConvertError

# safetensors dtype -> (NumPy dtype to view the bytes as, bytes per element)
_DTYPES = {
    "F32": (np.float32, 4),
    "F16": (np.float16, 2),
    "BF16": (np.uint16, 2),
    "F64": (np.float64, 8),
    "I64": (np.int64, 8),
    "I32": (np.int32, 4),
    "I16": (np.int16, 2),
    "I8": (np.int8, 1),
    "U8": (np.uint8, 1),
    "BOOL": (np.bool_, 1),
}
_FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
_MAX_HEADER = 100 << 20


@dataclass
class TensorRef:
    """Where one tensor lives: file, dtype, shape, byte range in the file."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def _read_header(path: Path) -> dict[str, TensorRef]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ConvertError(f"{path}: corrupt safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or 8 + n > size:
            raise ConvertError(f"{path}: corrupt safetensors file (header length {n} exceeds the file's {size} bytes)")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConvertError(f"{path}: corrupt safetensors file (header is not JSON: {e})") from None
    if not isinstance(header, dict):
        raise ConvertError(f"{path}: corrupt safetensors file (header is not a JSON object)")
    data_start, data_size = 8 + n, size - 8 - n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (b, end) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ConvertError(f"{path}: corrupt safetensors file (bad header entry for '{name}')") from None
        if dtype not in _DTYPES:
            raise ConvertError(
                f"{path}: tensor '{name}' has dtype {dtype}, which conversion does not read "
                f"(supported: {', '.join(_FLOAT_DTYPES)})"
            )
        if any(d < 0 for d in shape):
            raise ConvertError(f"{path}: corrupt safetensors file (negative dimension in '{name}')")
        if not (0 <= b <= end <= data_size) or end - b != int(np.prod(shape, dtype=np.int64)) * _DTYPES[dtype][1]:
            raise ConvertError(
                f"{path}: corrupt safetensors file: tensor '{name}' ({dtype} {list(shape)}) has "
                f"data range [{b}, {end}) but the file holds {data_size} data bytes"
            )
        out[name] = TensorRef(path, dtype, shape, data_start + b, data_start + end)
    return out


class Checkpoint:
    """The tensors of a checkpoint directory: `model.safetensors.index.json` with its shards,
    or the directory's `*.safetensors` files.

    Raises:
        ConvertError: no safetensors files (naming other weight formats found), a shard the
        index names is missing, a corrupt file, or a tensor the index places in the wrong file.
    """

    def __init__(self, model_dir: Path):
        self.dir = Path(model_dir)
        index = self.dir / "model.safetensors.index.json"
        self.tensors: dict[str, TensorRef] = {}
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ConvertError(f"{index}: not a safetensors index ({e})") from None
            files = sorted(set(weight_map.values()))
            for fn in files:
                if not (self.dir / fn).exists():
                    raise ConvertError(f"{self.dir / fn}: missing (listed in {index.name})")
            for fn in files:
                self.tensors.update(_read_header(self.dir / fn))
            for name, fn in weight_map.items():
                ref = self.tensors.get(name)
                if ref is None or ref.file.name != fn:
                    raise ConvertError(f"{index}: tensor '{name}' is not in {fn}")
        else:
            files = sorted(self.dir.glob("*.safetensors"))
            if not files:
                other = sorted(p.name for p in self.dir.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
                hint = (
                    f" (found {', '.join(other)}: only safetensors is read; re-save with safe_serialization)"
                    if other
                    else ""
                )
                raise ConvertError(f"{self.dir}: no *.safetensors weights{hint}")
            for p in files:
                for name, ref in _read_header(p).items():
                    if name in self.tensors:
                        raise ConvertError(f"tensor '{name}' is in both {self.tensors[name].file.name} and {p.name}")
                    self.tensors[name] = ref
        self._maps: dict[Path, np.memmap] = {}

    def names(self) -> list[str]:
        return list(self.tensors)

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    def raw(self, name: str) -> np.ndarray:
        """The tensor as stored (BF16 as uint16 bit patterns), a view of the mapping."""
        ref = self.tensors[name]
        m = self._maps.get(ref.file)
        if m is None:
            m = self._maps[ref.file] = np.memmap(ref.file, dtype=np.uint8, mode="r")
        return m[ref.begin : ref.end].view(_DTYPES[ref.dtype][0]).reshape(ref.shape)

    def rows_f32(self, name: str, r0: int = 0, r1: int = -1) -> np.ndarray:
        """Rows [r0, r1) of the tensor (all of a 1-D one) as float32, read now."""
        ref = self.tensors[name]
        if ref.dtype not in _FLOAT_DTYPES:
            raise ConvertError(f"tensor '{name}' has dtype {ref.dtype}; weights must be floating point")
        a = self.raw(name)
        if a.ndim >= 2:
            a = a[r0 : (a.shape[0] if r1 < 0 else r1)]
        if ref.dtype == "BF16":
            return (a.astype(np.uint32) << 16).view(np.float32)
        return a.astype(np.float32)

    def dtype(self, name: str) -> str:
        return self.tensors[name].dtype

    def iter_dtypes(self) -> Iterator[str]:
        return (r.dtype for r in self.tensors.values())
