"""python/apls/_core.pyi, the type stub of the C++ extension, against the built extension:
mypy's stubtest reports a name present in one and not the other, or a signature that differs
where the runtime shows one (pybind11 functions mostly do not)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(bool(os.environ.get("APLS_SANITIZED")), reason="a static check: the plain build runs it")
def test_stub_matches_the_extension():
    pytest.importorskip("mypy.stubtest", reason="mypy is installed by tools/lint.sh")
    env = dict(os.environ, MYPYPATH=str(ROOT / "python"))  # the repository's stub, whichever _core is imported
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "apls._core",
            "--allowlist",
            str(ROOT / "tools" / "stubtest_allowlist.txt"),
            "--mypy-config-file",
            str(ROOT / "pyproject.toml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
