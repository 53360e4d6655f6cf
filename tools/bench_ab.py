#!/usr/bin/env python3
"""Two builds side by side: `apls bench` (prompt and decode tok/s) run alternately with the
Python package of build A and of build B, so that machine noise hits both alike.

Each build is a directory holding the `apls` package with its `_core` extension (a source tree's
python/ with the module linked in, as COMMON.md's build steps leave it). Every round runs A then
B (then B then A on the next round); the table gives the mean tok/s of each, B / A, and the
per-round ratios' spread.

Usage:
  python tools/bench_ab.py --a OLD/python --b NEW/python [--model M.gguf] [--rounds 4]
      [--device cpu] [--prompt 512] [--gen 128] [--threads 0] [--json out.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys


def bench_once(pythonpath, args):
    """One `apls bench --json` run with the package at pythonpath; its result dict."""
    cmd = [sys.executable, "-m", "apls", "bench", "--json", "-", "-p", str(args.prompt), "-n", str(args.gen)]
    cmd += ["-r", str(args.reps), "-d", args.device, "-t", str(args.threads)]
    if args.model:
        cmd += ["-m", args.model]
    env = dict(os.environ, PYTHONPATH=pythonpath)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        sys.exit(f"apls bench failed with {pythonpath}:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout)  # stdout holds only the JSON document (the table goes to stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="python/ directory of build A (the baseline)")
    ap.add_argument("--b", required=True, help="python/ directory of build B")
    ap.add_argument("--model", help="GGUF model (default: apls' default model)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--reps", type=int, default=2, help="repetitions inside each apls bench run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", help="write the rounds and the summary here")
    args = ap.parse_args()

    rows = {"a": [], "b": []}
    for i in range(args.rounds):
        order = ("a", "b") if i % 2 == 0 else ("b", "a")
        for k in order:
            rows[k].append(bench_once(getattr(args, k), args))
        print(
            f"round {i + 1}: A prefill {rows['a'][-1]['prefill_tok_s']:.1f} decode {rows['a'][-1]['decode_tok_s']:.1f}"
            f" | B prefill {rows['b'][-1]['prefill_tok_s']:.1f} decode {rows['b'][-1]['decode_tok_s']:.1f}",
            file=sys.stderr,
        )
    summary = {}
    print(f"\n| {args.device}, prompt {args.prompt} / gen {args.gen} | A tok/s | B tok/s | B / A | per-round B / A |")
    print("|---|---|---|---|---|")
    for key, name in (("prefill_tok_s", "prompt"), ("decode_tok_s", "decode")):
        a = [r[key] for r in rows["a"]]
        b = [r[key] for r in rows["b"]]
        ratios = [y / x for x, y in zip(a, b)]
        summary[name] = {"a": statistics.fmean(a), "b": statistics.fmean(b), "ratios": ratios}
        spread = f"{min(ratios):.3f} .. {max(ratios):.3f}"
        print(
            f"| {name} | {statistics.fmean(a):.1f} | {statistics.fmean(b):.1f} | "
            f"{statistics.fmean(b) / statistics.fmean(a):.3f} | {spread} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rounds": rows, "summary": summary}, f, indent=2)


if __name__ == "__main__":
    main()
