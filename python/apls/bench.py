"""Engine speed, llama-bench style: prompt processing and generation tokens/s, optionally
side by side with llama.cpp (through llama-cpp-python) in the same run."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .model import Model


@dataclass
class Runner:
    """One engine under test: prefill(tokens) and decode_one(token) on a fresh state."""

    name: str
    reset: Callable[[], None]
    prefill: Callable[[np.ndarray], object]
    decode_one: Callable[[int], object]
    n_threads: int = 0
    pp: list[float] = field(default_factory=list)  # tokens/s per repetition
    tg: list[float] = field(default_factory=list)


def apls_runner(model: Model, n_ctx: int, n_threads: int) -> Runner:
    ctx = model.context(n_ctx=n_ctx, n_threads=n_threads, n_batch=512)

    def prefill(tokens):
        for i in range(0, len(tokens), 512):
            ctx.decode(tokens[i : i + 512], logits="last")

    return Runner("apls", ctx.kv_clear, prefill, lambda t: ctx.decode([t], logits="last"), ctx.n_threads)


def llama_cpp_runner(path: str, n_ctx: int, n_threads: int) -> Runner | None:
    try:
        import llama_cpp  # noqa: F401
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(
        model_path=path,
        n_ctx=n_ctx,
        n_batch=512,
        n_ubatch=512,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        verbose=False,
        logits_all=False,
    )
    return Runner("llama.cpp", llm.reset, lambda toks: llm.eval(toks.tolist()), lambda t: llm.eval([t]), n_threads)


def _measure(r: Runner, prompt: np.ndarray, gen: np.ndarray) -> None:
    if len(prompt):
        r.reset()
        t0 = time.perf_counter()
        r.prefill(prompt)
        r.pp.append(len(prompt) / (time.perf_counter() - t0))
    if len(gen):
        r.reset()
        t0 = time.perf_counter()
        for t in gen:
            r.decode_one(int(t))
        r.tg.append(len(gen) / (time.perf_counter() - t0))


def _stats(v: list[float]) -> dict[str, float]:
    if not v:
        return {"mean": 0.0, "std": 0.0}
    return {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0}


def run_bench(
    path: str,
    n_prompt: int = 512,
    n_gen: int = 128,
    n_threads: int = 0,
    reps: int = 5,
    vs_llama_cpp: bool = False,
    seed: int = 0,
    device: str = "auto",
) -> dict:
    """Measure and return a result dict (see `apls bench --help` for the keys).

    Repetitions of the engines are interleaved, so machine noise hits them alike.
    Raises RuntimeError if `vs_llama_cpp` is asked for and llama-cpp-python is not installed.
    """
    model = Model(path, device=device)
    n_ctx = max(n_prompt, n_gen) + 16
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, model.n_vocab, n_prompt).astype(np.int32)  # random tokens, as llama-bench
    gen = rng.integers(0, model.n_vocab, n_gen).astype(np.int32)
    runners = [apls_runner(model, n_ctx, n_threads)]
    threads = runners[0].n_threads  # the peer runs on as many threads as we do
    if vs_llama_cpp:
        peer = llama_cpp_runner(path, n_ctx, threads)
        if peer is None:
            raise RuntimeError("--vs-llama-cpp needs llama-cpp-python: pip install llama-cpp-python")
        runners.append(peer)
    for r in runners:  # warm-up, as llama-bench: page in the weights, start the threads, size the buffers
        r.reset()
        r.prefill(prompt if len(prompt) else gen[:1])
        r.decode_one(int(gen[0]) if len(gen) else 0)
    for _ in range(reps):
        for r in runners:
            _measure(r, prompt, gen)

    ours = runners[0]
    result = {
        "model": path,
        "device": model.device,
        "n_prompt": n_prompt,
        "n_gen": n_gen,
        "n_threads": threads,
        "reps": reps,
        "prefill_tok_s": _stats(ours.pp)["mean"],
        "prefill_tok_s_std": _stats(ours.pp)["std"],
        "decode_tok_s": _stats(ours.tg)["mean"],
        "decode_tok_s_std": _stats(ours.tg)["std"],
    }
    if len(runners) > 1:
        peer = runners[1]
        result["llama_cpp"] = {
            "prefill_tok_s": _stats(peer.pp)["mean"],
            "prefill_tok_s_std": _stats(peer.pp)["std"],
            "decode_tok_s": _stats(peer.tg)["mean"],
            "decode_tok_s_std": _stats(peer.tg)["std"],
        }
        # Ratios of per-repetition pairs measured back to back, then averaged.
        result["prefill_ratio"] = statistics.fmean(a / b for a, b in zip(ours.pp, peer.pp)) if ours.pp else 0.0
        result["decode_ratio"] = statistics.fmean(a / b for a, b in zip(ours.tg, peer.tg)) if ours.tg else 0.0
    return result


def format_table(res: dict) -> str:
    rows = [("apls", res["prefill_tok_s"], res["prefill_tok_s_std"], res["decode_tok_s"], res["decode_tok_s_std"])]
    if "llama_cpp" in res:
        p = res["llama_cpp"]
        rows.append(("llama.cpp", p["prefill_tok_s"], p["prefill_tok_s_std"], p["decode_tok_s"], p["decode_tok_s_std"]))
    cell = "{:8.1f} ± {:5.1f}"  # 16 characters: every column below is as wide
    out = [
        f"model: {res['model']}  threads: {res['n_threads']}  reps: {res['reps']}",
        f"| {'engine':<9} | {'pp' + str(res['n_prompt']) + ' tok/s':<16} | {'tg' + str(res['n_gen']) + ' tok/s':<16} |",
        f"|{'-' * 11}|{'-' * 18}|{'-' * 18}|",
    ]
    for name, pp, pps, tg, tgs in rows:
        out.append(f"| {name:<9} | {cell.format(pp, pps)} | {cell.format(tg, tgs)} |")
    if "llama_cpp" in res:
        pr, dr = f"{res['prefill_ratio']:8.2f}x", f"{res['decode_ratio']:8.2f}x"
        out.append(f"| {'ratio':<9} | {pr:<16} | {dr:<16} |")
    return "\n".join(out)


def dumps(res: dict) -> str:
    return json.dumps(res, indent=2)
