"""The CUDA backend where no GPU is usable (CI): it is compiled when asked for, and asking for the
GPU is a clear error that leaves the CPU path working."""

import ctypes
import os

import numpy as np
import pytest

import apls
from apls import _core


def test_cuda_backend_compiled_when_requested():
    # tools/test.sh sets APLS_CUDA=ON where nvcc exists: the package must then carry the backend.
    if os.environ.get("APLS_CUDA", "").upper() != "ON":
        pytest.skip("APLS_CUDA=ON not requested for this build")
    assert _core.cuda_compiled()
    assert _core.cuda_describe().startswith("CUDA")


def _has_nvidia_driver() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _core.cuda_compiled(), reason="this build has no CUDA backend")
@pytest.mark.skipif(_has_nvidia_driver(), reason="the NVIDIA driver is installed here")
def test_no_driver_is_not_called_an_old_driver():
    # Without libcuda the static runtime reports cudaErrorInsufficientDriver ("CUDA driver version
    # is insufficient"), which sends users looking for a driver update: the message says no driver.
    msg = _core.cuda_describe()
    assert "no GPU driver" in msg and "insufficient" not in msg and "too old" not in msg, msg


@pytest.mark.skipif(_core.cuda_device_count() > 0, reason="a GPU is usable here: tests/test_cuda.py runs instead")
def test_cuda_without_gpu_is_a_clear_error(smollm2_path, auto_device):
    with pytest.raises(apls.UnsupportedError, match="cuda"):
        apls.Model(smollm2_path, device="cuda")
    m = apls.Model(smollm2_path)  # auto: the CPU, and why
    assert m.device == "cpu"
    want = "no usable CUDA device" if _core.cuda_compiled() else "no CUDA backend"
    assert want in m.device_note
    assert apls.Model(smollm2_path, device="cpu").device_note == ""
    assert np.isfinite(m.logits(m.tokenize("Hello"))).all()


def test_unknown_device_is_named(smollm2_path):
    with pytest.raises(apls.InvalidArgumentError, match="device must be 'auto', 'cpu' or 'cuda', not 'tpu'"):
        apls.Model(smollm2_path, device="tpu")


def test_apls_device_names_the_device_for_auto(smollm2_path, monkeypatch):
    """APLS_DEVICE=cpu|cuda decides what "auto" means (the device_note says so); a device the
    caller names wins over it; any other value is an error naming the variable, and leaves a
    named device loading."""
    monkeypatch.setenv("APLS_DEVICE", "cpu")
    m = apls.Model(smollm2_path)
    assert (m.device, m.device_note) == ("cpu", "named by APLS_DEVICE=cpu")
    assert np.isfinite(m.logits(m.tokenize("Hello"))).all()
    monkeypatch.setenv("APLS_DEVICE", "cuda")
    if _core.cuda_device_count() == 0:  # as if the caller had asked for "cuda"
        with pytest.raises(apls.UnsupportedError, match="cuda"):
            apls.Model(smollm2_path)
    else:
        assert apls.Model(smollm2_path).device == "cuda"
    named = apls.Model(smollm2_path, device="cpu")
    assert (named.device, named.device_note) == ("cpu", "")
    monkeypatch.setenv("APLS_DEVICE", "tpu")
    with pytest.raises(apls.InvalidArgumentError, match="APLS_DEVICE='tpu' is not a device"):
        apls.Model(smollm2_path)
    assert apls.Model(smollm2_path, device="cpu").device == "cpu"
