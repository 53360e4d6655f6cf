#!/usr/bin/env bash
# The Python test suite against an AddressSanitizer + UndefinedBehaviorSanitizer build of the
# extension apls._core (the C++ tests already run under ASan+UBSan+LSan in tools/test.sh).
#
#   tools/test_sanitized.sh [pytest args...]     e.g. tools/test_sanitized.sh -x -k gguf
#
# Builds _core with APLS_SANITIZE=ON (GCC, RelWithDebInfo) in the `asan` preset's build/asan, the
# build whose C++ tests tools/test.sh runs (the engine's objects compiled once under ASan for both:
# CI runs test.sh first), puts it with python/apls into build/asan/pkg (first on PYTHONPATH, so it
# shadows an installed apls),
# and runs pytest with libasan preloaded (the interpreter itself is not instrumented). Leak
# detection is off for the Python process: CPython keeps allocations alive at exit by design, so
# LSan would report the interpreter, not us. Any ASan or UBSan report aborts the run.
# It runs in the test venv (tools/test_venv.sh), as tools/test.sh does.
# Environment: JOBS (build parallelism, default 2), PYTHON (makes the venv, default python3),
# APLS_TEST_VENV (default build/test-venv), PYTEST_WORKERS (pytest-xdist processes, default 2: much
# of an instrumented run is Python and one-thread waits, so two processes keep two cores busy; 0 runs
# everything in this process).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
B=build/asan
. tools/test_venv.sh
PY=$TEST_PY
test_venv_ninja   # the `asan` preset below

# The test dependencies (as pyproject.toml lists them) and pybind11 for the build; the package
# itself is not installed: the sanitized copy below is what the tests import.
test_venv_deps

# The `asan` preset (CMakePresets.json: CPU only, as ASan and the CUDA runtime do not mix) with the
# extension added; its engine objects are the ones tools/test.sh built, when it ran first.
cmake --preset asan -DAPLS_BUILD_PYTHON=ON -DPython_EXECUTABLE="$(command -v "$PY")" >/dev/null
# The C libraries too: tests/test_native.py installs them from this tree (APLS_BUILD_DIR below)
# and runs a C consumer against them, under the same preloaded sanitizers.
cmake --build --preset asan -j "$JOBS" --target _core apls apls_static

rm -rf "$B/pkg" && mkdir -p "$B/pkg"
cp -r python/apls "$B/pkg/apls"
cp "$B"/_core*.so "$B/pkg/apls/"

LIBASAN=$(${CXX:-g++} -print-file-name=libasan.so)
[ -f "$LIBASAN" ] || { echo "test_sanitized.sh: libasan.so not found ($LIBASAN)" >&2; exit 2; }
# libstdc++ too: ASan's __cxa_throw interceptor must find the real one when it starts, and the
# interpreter does not load libstdc++ itself (without this, the first C++ exception aborts).
LIBSTDCXX=$(readlink -f "$(${CXX:-g++} -print-file-name=libstdc++.so)")
PRELOAD="$LIBASAN $LIBSTDCXX"
# Check the sanitized module is the one imported, and that ASan is live in it.
LD_PRELOAD=$PRELOAD ASAN_OPTIONS=detect_leaks=0 PYTHONPATH="$PWD/$B/pkg" "$PY" -c '
import apls, apls._core as c, sys
assert apls.__file__.startswith(sys.argv[1]), apls.__file__
print("sanitized apls._core:", c.__file__)' "$PWD/$B/pkg"

export LD_PRELOAD=$PRELOAD
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=0:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$PWD/$B/pkg${PYTHONPATH:+:$PYTHONPATH}"
export APLS_SANITIZED=1
export APLS_BUILD_DIR="$PWD/$B"
# Tests left out: test_sampling_keeps_the_full_model_distribution is a chi-square test over
# 2 x 20,000 speculative rounds (about half an hour per case under ASan on two cores, more than
# the rest of the suite together). Its code (spec_round with rejection sampling, the sampler
# chain) runs under ASan+UBSan in the other speculative tests and in fuzz_batch's spec rounds.
# test_perplexity_per_type quantizes the F16 model to six types and evaluates each (two minutes
# under ASan); quantization and those types' kernels run under ASan+UBSan in the other
# test_quantize tests. Four numerical-fidelity tests of test_model.py (greedy runs and logits
# against the NumPy reference: 3.5 minutes here, most of it the reference and the decode kernels
# the other tests run too) are left to the plain run; test_f16_model_logits_match_reference keeps
# F16 weights and an F32 cache under the sanitizers. The long greedy-identity tests take fewer
# prompts here (APLS_SANITIZED).
exec "$PY" -m pytest tests -q -p no:cacheprovider -n "${PYTEST_WORKERS:-2}" \
  --deselect "tests/test_speculative.py::test_sampling_keeps_the_full_model_distribution" \
  --deselect "tests/test_quantize.py::test_perplexity_per_type" \
  --deselect "tests/test_model.py::test_f16_model_greedy_32_tokens_identical" \
  --deselect "tests/test_model.py::test_greedy_32_tokens_match_reference" \
  --deselect "tests/test_model.py::test_full_model_matches_float_reference" \
  --deselect "tests/test_model.py::test_f16_kv_cache_matches_reference" "$@"
