#!/usr/bin/env bash
# Lint and format checks (CI runs this): ruff over the Python code, clang-format over the C++ and
# CUDA sources. `bash tools/lint.sh --fix` rewrites the files instead of failing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install -q "ruff==0.17.6" "clang-format==23.1.5"
# The clang-format wheel installs a script beside the interpreter, not a runnable module.
CLANG_FORMAT=$(dirname "$("$PY" -c 'import sys; print(sys.executable)')")/clang-format
[ -x "$CLANG_FORMAT" ] || CLANG_FORMAT=clang-format

# Generated files keep the generator's layout.
cxx_files() {
    git ls-files 'cpp/*.cpp' 'cpp/*.h' 'cpp/*.hpp' 'cpp/*.cu' 'cpp/*.cuh' 'cpp/*.inc' 'tests/*.cpp' 'tests/*.h' \
        'tests/*.c' 'examples/*.cpp' 'examples/*.c' 'tools/*.cu' 'tools/*.cpp' | grep -v '^cpp/src/unicode_data.cpp$'
}

if [ "${1:-}" = "--fix" ]; then
    "$PY" -m ruff check --fix python tools tests
    "$PY" -m ruff format python tools tests
    cxx_files | xargs "$CLANG_FORMAT" -i
    exit 0
fi
"$PY" -m ruff check python tools tests
"$PY" -m ruff format --check python tools tests
cxx_files | xargs "$CLANG_FORMAT" --dry-run --Werror
echo "lint: clean"
