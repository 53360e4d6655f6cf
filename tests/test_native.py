"""The native embedding path against the Python API: install the C library with CMake, build the
consumer project (tests/consumer: find_package(apls), apls::apls) against the installed tree,
run it, and check that its greedy token ids and text equal apls.Model's greedy generation.

Which library: APLS_BUILD_DIR names an existing CMake build tree to install from (tools/test.sh
has one); otherwise the engine is configured and built here in a temporary directory (a few
minutes on two cores; JOBS sets the parallelism). Skipped without cmake or a C compiler."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import apls
from apls.generate import SamplingParams, generate_tokens

ROOT = Path(__file__).resolve().parent.parent
N_TOKENS = 16
PROMPTS = ["The three primary colors are", "def fibonacci(n):"]


def _clean_env(**extra) -> dict:
    """The environment for child processes without the sanitizer preload of tools/test_sanitized.sh:
    make and the compiler are not ours to check (make trips ASan's strict string checks), and the
    consumer, when it is built instrumented, brings its own runtime."""
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env.update(extra)
    return env


def _run(cmd, **kw):
    kw.setdefault("env", _clean_env())
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def _cache_value(build: Path, key: str) -> str:
    m = re.search(rf"^{key}:[A-Z]+=(.*)$", (build / "CMakeCache.txt").read_text(), re.M)
    return m.group(1) if m else ""


@pytest.fixture(scope="module")
def consumer(tmp_path_factory):
    """Path of the consumer program built against a freshly installed APLS."""
    if shutil.which("cmake") is None or (shutil.which("cc") is None and shutil.which("gcc") is None):
        pytest.skip("cmake and a C compiler are needed for the native embedding test")
    tmp = tmp_path_factory.mktemp("native")
    jobs = os.environ.get("JOBS", "2")
    build = os.environ.get("APLS_BUILD_DIR")
    if build:
        build = Path(build).resolve()
        _run(["cmake", "--build", build, "-j", jobs])  # up to date: a no-op
    else:
        build = tmp / "build"
        _run(
            [
                "cmake",
                "-S",
                ROOT,
                "-B",
                build,
                "-DCMAKE_BUILD_TYPE=Release",
                "-DAPLS_BUILD_TESTS=OFF",
                "-DAPLS_BUILD_EXAMPLES=OFF",
                "-DAPLS_BUILD_PYTHON=OFF",
            ]
        )
        _run(["cmake", "--build", build, "-j", jobs])
    prefix = tmp / "prefix"
    _run(["cmake", "--install", build, "--prefix", prefix])
    assert (prefix / "include" / "apls" / "apls.hpp").exists()

    # An instrumented library (APLS_SANITIZE=ON) needs an instrumented program to load it.
    san = "-fsanitize=address,undefined" if _cache_value(build, "APLS_SANITIZE") == "ON" else ""
    cbuild = tmp / "consumer"
    _run(
        [
            "cmake",
            "-S",
            ROOT / "tests" / "consumer",
            "-B",
            cbuild,
            f"-DCMAKE_PREFIX_PATH={prefix}",
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DCMAKE_C_FLAGS={san}",
            f"-DCMAKE_CXX_FLAGS={san}",
            f"-DCMAKE_EXE_LINKER_FLAGS={san}",
        ]
    )
    _run(["cmake", "--build", cbuild])
    return cbuild / "apls_consumer"


@pytest.fixture(scope="module")
def model(smollm2_path):
    return apls.Model(smollm2_path)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_consumer_greedy_ids_equal_python(consumer, model, smollm2_path, prompt):
    out = _run([consumer, smollm2_path, prompt, N_TOKENS], env=_clean_env(ASAN_OPTIONS="detect_leaks=1")).stdout
    m = re.match(r"ids:((?: \d+)*)\ntext: (.*)\n\Z", out, re.S)
    assert m, f"unexpected consumer output:\n{out}"
    native_ids = [int(t) for t in m.group(1).split()]
    native_text = m.group(2)

    # Python: the same greedy loop through apls.generate (stops at end of generation too).
    ids = model.tokenize(prompt)
    py_ids = list(generate_tokens(model.context(n_ctx=2048), ids, N_TOKENS, SamplingParams(temperature=0).sampler()))
    assert native_ids == py_ids
    assert 1 <= len(native_ids) <= N_TOKENS
    assert native_text == model.generate(prompt, N_TOKENS, temperature=0)
    assert native_text == model.detokenize(native_ids)


def test_consumer_reports_errors(consumer, tmp_path):
    """A missing model file: non-zero exit and the library's message on stderr."""
    r = subprocess.run(
        [str(consumer), str(tmp_path / "missing.gguf")], capture_output=True, text=True, env=_clean_env()
    )
    assert r.returncode != 0
    assert "missing.gguf" in r.stderr and "cannot open" in r.stderr
