#!/usr/bin/env bash
# Fuzz the engine's hostile-input surfaces (docs/FUZZING.md): the GGUF reader, the tokenizer,
# the C API's batch entry points (libFuzzer + ASan + UBSan, clang) and the chat-template
# renderer (atheris, Python).
#
#   tools/fuzz.sh build                 build the libFuzzer targets into build/fuzz (APLS_FUZZ=ON)
#   tools/fuzz.sh ci [SECONDS]          each target for SECONDS (default 60) over the repo corpus;
#                                       fails on any crash, leak, sanitizer report or timeout
#   tools/fuzz.sh campaign SECONDS [TARGET...]
#                                       long runs; new inputs go to build/fuzz/corpus/<target>,
#                                       logs to build/fuzz/logs, crashes to build/fuzz/artifacts
#   tools/fuzz.sh merge TARGET          add the campaign's new-coverage inputs (<= 8 KB) to
#                                       tests/fuzz/corpus/TARGET
#   tools/fuzz.sh replay                every target once over its corpus and regression inputs
#
# Needs clang with libFuzzer (Debian: apt-get install -y clang libclang-rt-14-dev; `ci` installs
# them when apt-get is there and clang is not) and, for the chat template, pip install atheris.
# Environment: JOBS (build parallelism, and how many targets `ci` fuzzes at once; default 2),
# CC/CXX (default clang/clang++), FUZZ_BUILD (build directory, default build/fuzz; an absolute path).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=${FUZZ_BUILD:-$ROOT/build/fuzz}
JOBS=${JOBS:-2}
PY=${PYTHON:-python3}
CPP_TARGETS=(fuzz_gguf fuzz_tokenizer fuzz_batch)
ALL_TARGETS=("${CPP_TARGETS[@]}" fuzz_chat_template)
# Per-input limits: a slow input (timeout) or a big allocation (malloc/rss limit) is a finding.
COMMON=(-max_len=65536 -timeout=20 -rss_limit_mb=2560 -malloc_limit_mb=2048 -print_final_stats=1)

need_clang() {
  if ! command -v "${CXX:-clang++}" >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      apt-get install -y -q clang libclang-rt-14-dev >/dev/null ||
        { apt-get update -qq && apt-get install -y -q clang libclang-rt-14-dev >/dev/null; }
    else
      echo "fuzz.sh: clang not found (apt-get install -y clang libclang-rt-14-dev)" >&2; exit 2
    fi
  fi
}

need_atheris() {
  "$PY" -c "import atheris" 2>/dev/null || "$PY" -m pip install -q atheris
}

build() {
  need_clang
  # CPU only: the sanitizers and the CUDA runtime do not mix (APLS_CUDA in the environment
  # would override the cache value).
  APLS_CUDA=OFF CC=${CC:-clang} CXX=${CXX:-clang++} cmake -S . -B "$B" -DAPLS_FUZZ=ON -DAPLS_CUDA=OFF \
    -DAPLS_BUILD_TESTS=OFF -DAPLS_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$B" -j "$JOBS" --target "${CPP_TARGETS[@]}"
}

# run TARGET SECONDS WORKDIR [extra libFuzzer args...]: fuzz TARGET, new inputs into WORKDIR,
# starting from WORKDIR and the repo corpus. Returns libFuzzer's status (non-zero: a finding).
run() {
  local t=$1 secs=$2 work=$3; shift 3
  mkdir -p "$work" "$B/artifacts/$t" "$B/logs"
  local seeds=("$work" "$ROOT/tests/fuzz/corpus/$t")
  [ -d "$ROOT/tests/fuzz/regressions/$t" ] && seeds+=("$ROOT/tests/fuzz/regressions/$t")
  if [ "$t" = fuzz_chat_template ]; then
    "$PY" tests/fuzz/fuzz_chat_template.py "${COMMON[@]}" -max_total_time="$secs" \
      -artifact_prefix="$B/artifacts/$t/" "$@" "${seeds[@]}"
  else
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
      "$B/tests/fuzz/$t" "${COMMON[@]}" -max_total_time="$secs" -artifact_prefix="$B/artifacts/$t/" "$@" "${seeds[@]}"
  fi
}

# ci_target TARGET SECONDS: one target of `ci`; its report line (and, on a finding, the log's
# error) goes to $B/logs/ci_TARGET.result.
ci_target() {
  local t=$1 secs=$2 work start=$SECONDS
  work=$(mktemp -d)
  if run "$t" "$secs" "$work" >"$B/logs/ci_$t.log" 2>&1; then
    echo "fuzz $t: ok, $(grep -E '^stat::number_of_executed_units' "$B/logs/ci_$t.log" | awk '{print $2}') runs in $((SECONDS - start)) s" \
      >"$B/logs/ci_$t.result"
  else
    { echo "fuzz $t: FAILED (log: $B/logs/ci_$t.log, inputs: $B/artifacts/$t)"
      grep -E -A30 'ERROR|invariant broken|Traceback' "$B/logs/ci_$t.log" | head -60 || true; } >"$B/logs/ci_$t.result"
  fi
  rm -rf "$work"
}

mkdir -p "$B/logs"
case "${1:-}" in
  build) build ;;
  ci)
    secs=${2:-60}
    build
    need_atheris
    # JOBS targets at a time: each fuzzer is one process on one core, so on a 2-core runner two
    # run side by side in the time of one (each still gets its SECONDS).
    running=0
    for t in "${ALL_TARGETS[@]}"; do
      if [ "$running" -ge "$JOBS" ]; then wait -n || true; running=$((running - 1)); fi
      ci_target "$t" "$secs" &
      running=$((running + 1))
    done
    wait
    fail=0
    for t in "${ALL_TARGETS[@]}"; do
      cat "$B/logs/ci_$t.result"
      grep -q "FAILED" "$B/logs/ci_$t.result" && fail=1
    done
    exit $fail ;;
  campaign)
    secs=${2:?campaign SECONDS [TARGET...]}; shift 2
    targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
    [ -x "$B/tests/fuzz/fuzz_gguf" ] || build
    for t in "${targets[@]}"; do
      echo "campaign $t: $secs s, log $B/logs/campaign_$t.log"
      run "$t" "$secs" "$B/corpus/$t" >"$B/logs/campaign_$t.log" 2>&1 || echo "campaign $t: finding (see log)"
    done ;;
  merge)
    # Add to tests/fuzz/corpus/TARGET the campaign inputs (up to MERGE_MAX_BYTES, default 8192:
    # the repository stays small) that reach new coverage; the files already there stay.
    t=${2:?merge TARGET}
    small=$(mktemp -d)
    find "$B/corpus/$t" -type f -size -"$(( ${MERGE_MAX_BYTES:-8192} + 1 ))"c -exec cp {} "$small/" \;
    if [ "$t" = fuzz_chat_template ]; then
      # atheris's -merge=1 sees no features (its coverage is Python's): keep every input.
      cp -n "$small"/* "tests/fuzz/corpus/$t/" 2>/dev/null || true
    else
      "$B/tests/fuzz/$t" -merge=1 -max_len=65536 "tests/fuzz/corpus/$t" "$small"
    fi
    rm -rf "$small"
    echo "tests/fuzz/corpus/$t: $(ls "tests/fuzz/corpus/$t" | wc -l) files, $(du -sb "tests/fuzz/corpus/$t" | cut -f1) bytes" ;;
  replay)
    [ -x "$B/tests/fuzz/fuzz_gguf" ] || build
    for t in "${CPP_TARGETS[@]}"; do
      dirs=("tests/fuzz/corpus/$t"); [ -d "tests/fuzz/regressions/$t" ] && dirs+=("tests/fuzz/regressions/$t")
      "$B/tests/fuzz/$t" -runs=0 "${dirs[@]}" 2>&1 | tail -1
    done
    "$PY" -m pytest -q tests/test_chat_template.py ;;
  *) sed -n '2,19p' "$0"; exit 2 ;;
esac
