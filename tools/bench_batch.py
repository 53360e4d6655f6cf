"""Decode-step cost against batch size: one token for each of N sequences per step (what
continuous batching runs), the ceiling of a server's aggregate tokens/s over one stream.
Prints a table, writes JSON.

    python tools/bench_batch.py [-m MODEL] [-t THREADS] [--batches 1,2,4,8,16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import apls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", default=None, help="GGUF file (default: the default model)")
    ap.add_argument("-t", "--threads", type=int, default=0)
    ap.add_argument("--batches", default="1,2,4,8,16")
    ap.add_argument("--context", type=int, default=64, help="tokens each sequence holds before the steps (default 64)")
    ap.add_argument("--reps", type=int, default=5, help="interleaved repetitions; the fastest counts (default 5)")
    ap.add_argument("--steps", type=int, default=10, help="steps per repetition (default 10)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    sizes = [int(x) for x in args.batches.split(",")]
    model = apls.Model(args.model or apls.default_model_path(), n_threads=args.threads)
    ctx = model.context(
        n_ctx=max(sizes) * (args.context + args.steps + 16), n_seq_max=max(sizes), n_batch=max(max(sizes), args.context)
    )
    prompt = (model.tokenize("The quick brown fox jumps over the lazy dog. " * 32))[: args.context]
    for s in range(max(sizes)):
        ctx.decode(prompt, seq_ids=[s] * len(prompt), logits="last")
    best = {n: float("inf") for n in sizes}
    for _ in range(args.reps):
        for n in sizes:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                ctx.decode([prompt[-1]] * n, seq_ids=list(range(n)), logits="all")  # (n, n_vocab)
            best[n] = min(best[n], (time.perf_counter() - t0) / args.steps)
            for s in range(n):
                ctx.kv.truncate(s, len(prompt))
    rows = [
        {"batch": n, "step_ms": 1e3 * best[n], "tokens_per_s": n / best[n], "step_vs_1": best[n] / best[sizes[0]]}
        for n in sizes
    ]
    print("| sequences per step | step ms | tokens/s | step cost vs 1 | tokens/s vs 1 |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['batch']} | {r['step_ms']:.1f} | {r['tokens_per_s']:.1f} | {r['step_vs_1']:.2f}x | {r['batch'] / r['step_vs_1']:.2f}x |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"model": model.path, "threads": ctx.n_threads, "context": args.context, "results": rows}, f, indent=2
            )
            f.write("\n")


if __name__ == "__main__":
    main()
