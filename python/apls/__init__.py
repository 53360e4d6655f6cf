"""APLS: a GGUF inference engine with self-speculative decoding by adaptive, parallel layer skipping."""

import os as _os

# Development builds (cmake -B build-x -DAPLS_BUILD_PYTHON=ON) put the extension outside the
# package; APLS_EXT_DIR points at it so `PYTHONPATH=python` works without `pip install`.
if _os.environ.get("APLS_EXT_DIR"):
    __path__.insert(0, _os.environ["APLS_EXT_DIR"])  # noqa: F821 (the package's own __path__)

from . import _core  # noqa: E402 (after the extension's directory is known)
from ._core import (  # noqa: E402
    AplsError,
    FileError,
    FormatError,
    InternalError,
    InvalidArgumentError,
    KVCacheFullError,
    OutOfMemoryError,
    Sampler,
    UnsupportedError,
)
from .chat import ChatTemplateError  # noqa: E402
from .default_model import default_model_path  # noqa: E402
from .generate import SamplingParams  # noqa: E402
from .kv import KVView  # noqa: E402
from .model import Context, Model  # noqa: E402
from .plan import Plan  # noqa: E402
from .quantize import quantize  # noqa: E402

__all__ = [
    "AplsError",
    "ChatTemplateError",
    "Context",
    "FileError",
    "FormatError",
    "InternalError",
    "InvalidArgumentError",
    "KVCacheFullError",
    "KVView",
    "Model",
    "OutOfMemoryError",
    "Plan",
    "Sampler",
    "SamplingParams",
    "UnsupportedError",
    "default_model_path",
    "quantize",
]
__version__ = _core.version()
