#!/usr/bin/env bash
# Run the tests in a virtualenv of their own (tools/test_venv.sh: build/test-venv, made on the
# first run, reused after): the environment that runs this script, and any `apls` installed in
# it, are left as they were.
#
#   bash tools/test.sh [PYTEST ARGS]           the full gate (CI runs it): the package built and
#       installed into the test venv (with the CUDA backend where nvcc is), the C++ tests under
#       AddressSanitizer + UndefinedBehaviorSanitizer (CTest), then every Python test.
#   bash tools/test.sh --quick [PYTEST ARGS]   the edit-test loop (a few minutes once the venv
#       exists): lint, the incremental `dev` preset build (build/dev: Release, CPU only), CTest,
#       and the Python tests not marked `slow`, against that build.
#
# Environment: JOBS (build parallelism, default 2), PYTHON (makes the venv, default python3),
# APLS_TEST_VENV (default build/test-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
. tools/test_venv.sh
test_venv_ninja   # the builds use the presets of CMakePresets.json

if [ "${1:-}" = "--quick" ]; then
    shift
    bash tools/lint.sh
    test_venv_deps
    # The `dev` preset of CMakePresets.json: Release, CPU only, C++ tests and the extension.
    cmake --preset dev -DPython_EXECUTABLE="$TEST_PY" > /dev/null
    cmake --build --preset dev -j "$JOBS"
    ctest --preset dev -j "$JOBS"
    export APLS_BUILD_DIR=$PWD/build/dev   # tests/test_native.py installs the C library from it
    PYTHONPATH=python APLS_EXT_DIR="$PWD/build/dev" "$TEST_PY" -m pytest -q -m "not slow" "$@"   # testpaths: tests/
    exit
fi

test_venv_deps
# cuBLAS headers for the CUDA backend: where nvcc is installed (as on CI), the package is built
# with it, so CI compiles and links it; its tests skip without a GPU.
test_venv_pip nvidia-cublas==13.0.2.14
APLS_CUBLAS_ROOT=$("$TEST_PY" -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cu13'))")
export APLS_CUBLAS_ROOT
if command -v nvcc > /dev/null; then export APLS_CUDA=ON; fi   # compile it or fail, never skip quietly
# Conversion tests build tiny Hugging Face models: torch (the CPU build that this machine image
# keeps on disk; a plain `pip install torch` would fetch a CUDA build of several GB).
test_venv_pip torch==2.13.0 "transformers>=4.45" safetensors
test_venv_pip ".[test]"                              # builds the engine and apls._core into the venv

# The C++ tests under ASan + UBSan (the `asan` preset: build/asan). CPU only: ASan/LSan and the
# static CUDA runtime do not mix, and there is no GPU to run CUDA code on here.
cmake --preset asan > /dev/null
cmake --build --preset asan -j "$JOBS"
ctest --preset asan -j "$JOBS"

# The package installed in the venv is the one under test (python/ is not on the path);
# tests/test_native.py installs the C library from the asan build instead of building its own.
export APLS_BUILD_DIR=$PWD/build/asan
"$TEST_PY" -m pytest -q "$@"   # testpaths: tests/
