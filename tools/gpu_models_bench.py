#!/usr/bin/env python3
"""GPU benchmark over synthetic models in real shapes (and the real SmolLM2): prompt processing
(512 tokens) and decode tokens/s, decode bytes/s against the measured copy bandwidth, and the
cost of verifying k+1 tokens relative to one. Prints a table last, writes JSON.

    python tools/gpu_models_bench.py --out DIR [--donor TOKENIZER.gguf] [--rows 7b-f16,7b-q4_0,...]

Run by tools/gpu_bench.sh (phase `models`) on the GPU machine. The llama.cpp anchors in the table
are the figures measured on the lent H100 with llama-bench (issue "CUDA backend").
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synthetic  # noqa: E402 (tools/synthetic.py)

import apls  # noqa: E402
from apls.bench import run_bench  # noqa: E402

ROWS = {  # name: (shape, type, llama.cpp pp512, llama.cpp decode) on the H100
    "7b-f16": ("llama-2-7b", "f16", 20212, 178.8),
    "7b-q4_0": ("llama-2-7b", "q4_0", 11420, 341.6),
    "1b-f16": ("llama-3.2-1b", "f16", 67238, 758.2),
    "smollm2-q4_1": (None, None, 40358, 917.5),
}


def copy_bandwidth() -> float:
    """Device-to-device copy, bytes read + written per second (torch; 0 when absent)."""
    try:
        import torch
    except ImportError:
        return 0.0
    a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    ts = []
    for _ in range(10):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        b.copy_(a)
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e) / 1e3)
    return 2 * a.numel() / float(np.median(ts))


def verify_cost(model, ks=(1, 2, 4, 8, 12, 16), n_ctx_prompt=512, reps=20):
    """Time of one forward over k+1 tokens (a verify batch) relative to one token, after a
    512-token prompt; the cache is truncated back after each call."""
    ctx = model.context(n_ctx=1024, n_batch=512)
    rng = np.random.default_rng(0)
    ctx.decode(rng.integers(0, model.n_vocab, n_ctx_prompt).astype(np.int32), logits="last")
    out = {}
    for n in (1,) + tuple(k + 1 for k in ks):
        toks = rng.integers(0, model.n_vocab, n).astype(np.int32)
        ts = []
        for _i in range(reps + 3):
            t0 = time.perf_counter()
            ctx.decode(toks, logits="last")
            ts.append(time.perf_counter() - t0)
            ctx.kv.truncate(0, n_ctx_prompt)
        out[n] = float(np.median(ts[3:]))
    return {f"k={n - 1}": out[n] / out[1] for n in out if n > 1} | {"t1_ms": out[1] * 1e3}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu-out")
    ap.add_argument("--donor", default=None)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--dir", default="/tmp/synth")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(a.dir, exist_ok=True)
    bw = copy_bandwidth()
    print(f"device: {apls._core.cuda_describe()}; copy bandwidth {bw / 1e12:.2f} TB/s", flush=True)
    results = []
    for name in a.rows.split(","):
        shape, wtype, ll_pp, ll_tg = ROWS[name]
        if shape is None:
            path = apls.default_model_path()
        else:
            path = os.path.join(a.dir, f"{name}.gguf")
            if not os.path.exists(path):
                info = synthetic.write_synthetic_gguf(
                    path, synthetic.SHAPES[shape], wtype, **({"donor": a.donor} if a.donor else {})
                )
                print(f"{name}: wrote {info['bytes'] / 1e9:.2f} GB in {info['seconds']:.1f} s", flush=True)
        t0 = time.perf_counter()
        res = run_bench(path, n_prompt=512, n_gen=128, reps=a.reps, device="cuda")
        model = apls.Model(path, device="cuda")
        size = os.path.getsize(path)
        row = {
            "name": name,
            "bytes": size,
            "load_s": time.perf_counter() - t0,
            "pp512": res["prefill_tok_s"],
            "decode": res["decode_tok_s"],
            "llama_pp512": ll_pp,
            "llama_decode": ll_tg,
            "bw_frac": res["decode_tok_s"] * size / bw if bw else 0.0,
        }
        if name.startswith("7b"):
            row["verify"] = verify_cost(model)
        del model
        results.append(row)
        print(json.dumps(row), flush=True)
        if shape is not None and name != a.rows.split(",")[-1]:
            pass
    with open(os.path.join(a.out, "models.json"), "w") as f:
        json.dump({"device": apls._core.cuda_describe(), "copy_bw": bw, "rows": results}, f, indent=2)
    print()
    print(
        "| model | size GB | pp512 tok/s (vs llama.cpp H100) | decode tok/s (vs llama.cpp H100) | decode bytes/s vs copy bw |"
    )
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['name']} | {r['bytes'] / 1e9:.2f} | {r['pp512']:.0f} ({r['pp512'] / r['llama_pp512']:.2f}x) | "
            f"{r['decode']:.1f} ({r['decode'] / r['llama_decode']:.2f}x) | {100 * r['bw_frac']:.0f}% |"
        )
    for r in results:
        if "verify" in r:
            v = r["verify"]
            print(
                f"| verify {r['name']} (1 token {v['t1_ms']:.2f} ms) | "
                + " ".join(f"{k}: {x:.2f}x" for k, x in v.items() if k.startswith("k="))
                + " |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
