"""Hugging Face checkpoints → GGUF (llama.cpp's metadata keys and tensor names).

One concern per module: `hub` (where the checkpoint comes from), `safetensors_io` (lazy
tensor reading), `hparams` (config.json → architecture and metadata), `tensors` (names,
shapes, types, q/k layout), `tokenizer` (tokenizer.ggml.*), `writer` (the streamed write).
"""

from .errors import ConvertError
from .hparams import ARCHITECTURES
from .tensors import OUT_TYPES
from .writer import convert

__all__ = ["ARCHITECTURES", "ConvertError", "OUT_TYPES", "convert"]
