#!/usr/bin/env bash
# Lint, format and type checks (CI runs this first): ruff over the Python code, clang-format over
# the C++ and CUDA sources, mypy over python/apls (apls._core typed by python/apls/_core.pyi;
# tests/test_core_stub.py checks the stub against the built extension). The tools go into the
# test venv (tools/test_venv.sh), not into the environment that runs this script.
# `bash tools/lint.sh --fix` rewrites the files instead of failing on format.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/test_venv.sh
# mypy resolves the package's imports: the runtime dependencies and the server extra too.
test_venv_pip "ruff==0.17.6" "clang-format==23.1.5" "mypy==2.4.1" "numpy>=1.24" "gguf>=0.10" "jinja2>=3.1" "tqdm>=4.60" \
    "fastapi>=0.110" "uvicorn>=0.29" "sse-starlette>=2.1" "prometheus-client>=0.20" "pydantic>=2.6"
# The clang-format wheel installs a script beside the interpreter, not a runnable module.
CLANG_FORMAT=$(dirname "$TEST_PY")/clang-format

# Generated files keep the generator's layout.
cxx_files() {
    git ls-files 'cpp/*.cpp' 'cpp/*.h' 'cpp/*.hpp' 'cpp/*.cu' 'cpp/*.cuh' 'cpp/*.inc' 'tests/*.cpp' 'tests/*.h' \
        'tests/*.c' 'examples/*.cpp' 'examples/*.c' 'tools/*.cu' 'tools/*.cpp' | grep -v '^cpp/src/unicode_data.cpp$'
}

if [ "${1:-}" = "--fix" ]; then
    "$TEST_PY" -m ruff check --fix python tools tests
    "$TEST_PY" -m ruff format python tools tests
    cxx_files | xargs "$CLANG_FORMAT" -i
    exit 0
fi
"$TEST_PY" -m ruff check python tools tests
"$TEST_PY" -m ruff format --check python tools tests
cxx_files | xargs "$CLANG_FORMAT" --dry-run --Werror
"$TEST_PY" -m mypy   # settings and files: [tool.mypy] in pyproject.toml
echo "lint: clean"
