"""The conversion itself: check everything, then stream tensors into a GGUF file."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .errors import ConvertError
from .hparams import read_hparams, read_json, write_hparams
from .hub import resolve_source
from .safetensors_io import Checkpoint
from .tensors import OUT_TYPES, OutTensor, plan_tensors, tensor_data
from .tokenizer import read_tokenizer

log = logging.getLogger("apls.convert")


class _Streamed:
    """What GGUFWriter.write_tensor_data needs of an array (nbytes, tofile), with the data made
    and written a chunk at a time."""

    def __init__(self, ckpt: Checkpoint, t: OutTensor, bar):
        self.ckpt, self.t, self.bar, self.nbytes = ckpt, t, bar, t.nbytes

    def tofile(self, fout) -> None:
        written = 0
        for chunk in tensor_data(self.ckpt, self.t):
            chunk.tofile(fout)
            written += chunk.nbytes
            if self.bar is not None:
                self.bar.update(chunk.nbytes)
        if written != self.nbytes:  # a bug, not bad input: the header already promised nbytes
            raise RuntimeError(f"{self.t.name}: wrote {written} bytes, expected {self.nbytes}")


def _file_type(out_type: str) -> int:
    from gguf import LlamaFileType as FT

    return {
        "f32": FT.ALL_F32,
        "f16": FT.MOSTLY_F16,
        "bf16": FT.MOSTLY_BF16,
        "q8_0": FT.MOSTLY_Q8_0,
        "q4_0": FT.MOSTLY_Q4_0,
        "q4_1": FT.MOSTLY_Q4_1,
        "q5_0": FT.MOSTLY_Q5_0,
        "q5_1": FT.MOSTLY_Q5_1,
    }[out_type]


def convert(
    src: str, out: str | None = None, out_type: str = "f16", *, revision: str | None = None, progress: bool = True
) -> Path:
    """Convert a Hugging Face checkpoint to a GGUF file that APLS and llama.cpp load.

    Args:
        src: a checkpoint directory, or a Hugging Face repo id (downloaded, or taken from the
            cache when HF_HUB_OFFLINE=1).
        out: the GGUF file to write (default: <checkpoint name>-<type>.gguf here).
        out_type: type of the 2-D weights: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1 (1-D
            tensors stay F32; rows not a multiple of 32 stay F16 for the quantized types).
        revision: a branch, tag or commit of a repo id.
        progress: show progress bars (download and conversion).

    Returns:
        The path written. Nothing is written unless the whole checkpoint checks out; a failed
        write leaves no file behind.

    Raises:
        ConvertError: missing or corrupt files, an unsupported architecture or tokenizer, shapes
        that disagree with config.json (the message names what is wrong).
        OSError: the output cannot be written.
    """
    if out_type not in OUT_TYPES:
        raise ConvertError(f"unknown output type '{out_type}' (supported: {', '.join(OUT_TYPES)})")
    model_dir = resolve_source(src, revision)
    cfg = read_json(model_dir / "config.json")
    hp = read_hparams(cfg)
    ckpt = Checkpoint(model_dir)
    tensors = plan_tensors(ckpt, hp, out_type)
    tok = read_tokenizer(model_dir, hp.n_vocab, cfg)

    name = src.rstrip("/").split("/")[-1] if not Path(src).is_dir() else Path(src).resolve().name
    out_path = Path(out) if out else Path(f"{name}-{out_type}.gguf")
    return _write(out_path, hp, name, out_type, tok, tensors, ckpt, progress)


def _write(out_path: Path, hp, name: str, out_type: str, tok, tensors, ckpt: Checkpoint, progress: bool) -> Path:
    import gguf
    from tqdm import tqdm

    part = out_path.with_name(out_path.name + ".part")
    w = gguf.GGUFWriter(part, hp.spec.gguf_arch)
    try:
        write_hparams(w, hp, name)
        w.add_file_type(_file_type(out_type))
        if out_type not in ("f32", "f16", "bf16"):
            w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        tok.write(w)
        for t in tensors:
            w.add_tensor_info(t.name, t.shape, np.dtype(np.float32), t.nbytes, raw_dtype=t.qtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        total = sum(t.nbytes for t in tensors)
        with tqdm(
            total=total, unit="B", unit_scale=True, desc=f"Converting to {out_type}", disable=not progress
        ) as bar:
            for t in tensors:
                bar.set_postfix_str(t.name, refresh=False)
                w.write_tensor_data(_Streamed(ckpt, t, bar))  # type: ignore[arg-type]  # duck-typed: nbytes, tofile
        w.close()
        os.replace(part, out_path)
    except BaseException:
        w.close()
        part.unlink(missing_ok=True)
        raise
    log.info("wrote %s: %s, %d tensors, %s", out_path, hp.spec.gguf_arch, len(tensors), out_type)
    return out_path
