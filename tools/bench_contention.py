#!/usr/bin/env python3
"""Decode speed when engines share the CPUs (SmolLM2-135M by default).

Runs P processes at once, each decoding one token at a time with T threads for S seconds, beside
B processes that only keep a CPU busy, and prints each configuration's total and per-process
tokens/s. With more busy threads than CPUs, threads of one engine wait for threads that the
scheduler has put aside; this measures what that costs. The one-process rows are the reference.

Usage: PYTHONPATH=python APLS_EXT_DIR=build python tools/bench_contention.py \
           [--model PATH] [--configs 1x2,1x2+1,2x2,2x1] [--seconds 10] [--json FILE]
"""

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import apls  # noqa: E402


def decode_loop(path: str, n_threads: int, seconds: float, start, out) -> None:
    """One engine: one-token decode steps (the same token each time) for `seconds`."""
    model = apls.Model(path, device="cpu")  # the CPU thread pool is what this measures
    ctx = model.context(n_ctx=512, n_threads=n_threads)
    ids = model.tokenize("The three primary colors are")
    ctx.decode(ids)
    start.wait()  # every process starts its timed loop together
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ctx.decode([ids[-1]])
        n += 1
        if ctx.kv.seq_len(0) >= 448:
            ctx.kv.truncate(0, len(ids))  # keep the context short and the same in every process
    out.put(n / (time.perf_counter() - t0))


def busy_loop(stop) -> None:
    """Other work on the machine (a compiler, a second service): one CPU kept busy."""
    x = 0
    while not stop.is_set():
        for _ in range(100000):
            x += 1


def run_config(path: str, procs: int, threads: int, busy: int, seconds: float) -> list:
    mp_ctx = mp.get_context("spawn")
    start, out, stop = mp_ctx.Barrier(procs), mp_ctx.Queue(), mp_ctx.Event()
    hogs = [mp_ctx.Process(target=busy_loop, args=(stop,)) for _ in range(busy)]
    ps = [mp_ctx.Process(target=decode_loop, args=(path, threads, seconds, start, out)) for _ in range(procs)]
    for p in hogs + ps:
        p.start()
    speeds = [out.get() for _ in ps]
    stop.set()
    for p in ps + hogs:
        p.join()
    return speeds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="GGUF file (default: the embedded SmolLM2)")
    ap.add_argument(
        "--configs",
        default="1x2,1x2+1,2x2,2x1",
        help="PROCESSESxTHREADS[+BUSY], comma-separated (BUSY: CPU-bound processes beside)",
    )
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    path = a.model or apls.default_model_path()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = []
    print(f"CPUs available: {cpus}; engine: {os.environ.get('APLS_EXT_DIR', 'installed')}", flush=True)
    print("| engines x threads | busy processes beside | total tok/s | per engine tok/s |")
    print("|---|---|---|---|")
    for cfg in a.configs.split(","):
        shape, _, busy = cfg.lower().partition("+")
        procs, threads = (int(v) for v in shape.split("x"))
        speeds = run_config(path, procs, threads, int(busy or 0), a.seconds)
        rows.append(
            {
                "processes": procs,
                "threads": threads,
                "busy": int(busy or 0),
                "total": sum(speeds),
                "per_process": speeds,
            }
        )
        print(
            f"| {procs} x {threads} | {int(busy or 0)} | {sum(speeds):.1f} | {' / '.join(f'{s:.1f}' for s in speeds)} |",
            flush=True,
        )
    if a.json:
        Path(a.json).write_text(json.dumps({"cpus": cpus, "model": path, "seconds": a.seconds, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
