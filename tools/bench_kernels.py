#!/usr/bin/env python3
"""Micro-benchmark of the CPU matmul kernels on the SmolLM2-135M shapes, per ISA.

    PYTHONPATH=python APLS_EXT_DIR=$PWD/build-kern python tools/bench_kernels.py [--json out.json]

With --types, the layer shapes are timed in each listed weight type instead (e.g. --types
Q4_1,Q5_0,Q5_1,Q8_0 for the 576-wide shapes; the K-quants need rows that are a multiple of 256, so
they are timed on ffn_down (k = 1536) and on 1536-wide variants of the others, with --k 1536).

Per shape: microseconds per call and GB/s of weight bytes, for n_tok = 1 (decode) and n_tok = 512
(prefill), one thread. Single-shape numbers run with the matrix hot in cache (it is re-read every
call). Then the whole per-token set (30 layers x 7 matrices with distinct buffers, plus the output
head: ~96 MB, more than the L3, as in real decoding) on 1 and 2 threads, and the tokens/s ceiling
that the matmuls alone allow.
"""

import argparse
import json
import os
import statistics
import sys

import numpy as np

from apls import _core

# (name, type, k, rows) for one layer of SmolLM2-135M Q4_1, then the tied Q8_0 output head.
LAYER = [
    ("attn_q", "Q4_1", 576, 576),
    ("attn_k", "Q4_1", 576, 192),
    ("attn_v", "Q4_1", 576, 192),
    ("attn_o", "Q4_1", 576, 576),
    ("ffn_gate", "Q4_1", 576, 1536),
    ("ffn_up", "Q4_1", 576, 1536),
    ("ffn_down", "Q4_1", 1536, 576),
]
HEAD = ("output", "Q8_0", 576, 49152)
# --qwen: the matrices that dominate Qwen2.5-Coder-1.5B/-0.5B Q4_K_M (heads cut to 1/8 of their rows).
QWEN = [
    ("1.5b_attn_q", "Q4_K", 1536, 1536),
    ("1.5b_ffn_up", "Q4_K", 1536, 8960),
    ("1.5b_ffn_down", "Q6_K", 8960, 1536),
    ("1.5b_attn_v", "Q6_K", 1536, 256),
    ("1.5b_output/8", "Q6_K", 1536, 151936 // 8),
    ("0.5b_attn_q", "Q5_0", 896, 896),
    ("0.5b_ffn_up", "Q5_0", 896, 4864),
    ("0.5b_ffn_down", "Q6_K", 4864, 896),
    ("0.5b_output/8", "Q8_0", 896, 151936 // 8),
]
N_LAYERS = 30
# Bytes per block, elements per block, byte offsets of the half-precision scales in a block.
BLOCK = {
    "Q4_0": (18, 32, [0]),
    "Q4_1": (20, 32, [0, 2]),
    "Q5_0": (22, 32, [0]),
    "Q5_1": (24, 32, [0, 2]),
    "Q8_0": (34, 32, [0]),
    "Q4_K": (144, 256, [0, 2]),
    "Q5_K": (176, 256, [0, 2]),
    "Q6_K": (210, 256, [208]),
}


def weights(type_name, k, rows, rng):
    """Random blocks with sane scales (random half bits could be NaN/inf/subnormal)."""
    bs, be, halves = BLOCK[type_name]
    w = rng.integers(0, 256, size=(rows, k // be, bs), dtype=np.uint8)
    for off in halves:
        w[:, :, off : off + 2] = np.array([0.01], np.float16).view(np.uint8)
    return w.reshape(-1)


CPU_CLOCK = False  # --clock cpu: process CPU time (all threads), for a machine shared with other work
PACKED = True  # --repack on: the types the ISA packs (Q5_0, Q5_1) run packed, as the engine runs them


def median_s(isa, mats, n_tok, reps, threads=1):
    return statistics.median(_core.bench_matmuls(isa, mats, n_tok, reps, threads, CPU_CLOCK, PACKED))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--isa", action="append", help="ISA to run (repeatable; default: all available)")
    ap.add_argument("--prefill", type=int, default=512, help="tokens for the prefill rows (0: skip)")
    ap.add_argument("--batch", type=int, nargs="*", default=[], help="also time these small batches (e.g. 8 16)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="cpu: process CPU time (shared machine)")
    ap.add_argument("--generic-prefill", action="store_true", help="also time prefill for the scalar code (slow)")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--types", help="comma-separated weight types for the layer shapes (default: the model's)")
    ap.add_argument("--qwen", action="store_true", help="time the Qwen2.5-Coder matrices (QWEN) instead")
    ap.add_argument("--k", type=int, default=0, help="with --types: inner size of the 576-wide shapes (e.g. 1536)")
    ap.add_argument(
        "--repack",
        choices=["on", "off"],
        default="off" if os.environ.get("APLS_CPU_REPACK") == "0" else "on",
        help="Q5_0/Q5_1 in the CPU kernels' packed layout, as the engine loads them (default: on, off when "
        "APLS_CPU_REPACK=0)",
    )
    args = ap.parse_args()
    global CPU_CLOCK, PACKED
    CPU_CLOCK = args.clock == "cpu"
    PACKED = args.repack == "on"
    isas = args.isa or _core.kernel_isas()
    rng = np.random.default_rng(0)
    shapes = LAYER + [HEAD]
    if args.qwen:
        shapes = QWEN
        args.per_token = False
    elif args.types:
        shapes = [
            (f"{name}:{t}", t, args.k or k if k == 576 else k, rows)
            for t in args.types.split(",")
            for name, _, k, rows in LAYER
        ]
        args.per_token = False
    else:
        args.per_token = True
    mats = {name: (t, weights(t, k, rows, rng), k) for name, t, k, rows in shapes}
    results = {"isas": isas, "clock": args.clock, "shapes": {}, "per_token": {}}

    print(
        f"{'shape':<16} {'type':<5} {'k x rows':>11} {'isa':<8} {'n_tok':>5} {'us/call':>10} {'GB/s':>7} {'GMAC/s':>7}"
    )
    for name, t, k, rows in shapes:
        m = mats[name]
        for isa in isas:
            for n_tok in [1] + args.batch + ([args.prefill] if args.prefill else []):
                if isa == "generic" and n_tok > 1 and not args.generic_prefill:
                    continue
                reps = args.reps if n_tok <= 16 else max(2, args.reps // 10)
                if n_tok <= 16:  # short calls: time many per pass
                    s = median_s(isa, [m] * 50, n_tok, reps) / 50
                else:
                    s = median_s(isa, [m], n_tok, reps)
                gbs = m[1].nbytes / s / 1e9
                gmacs = k * rows * n_tok / s / 1e9
                print(
                    f"{name:<16} {t:<5} {f'{k}x{rows}':>11} {isa:<8} {n_tok:>5} {s * 1e6:>10.1f} {gbs:>7.1f} {gmacs:>7.1f}"
                )
                results["shapes"].setdefault(name, {}).setdefault(isa, {})[str(n_tok)] = {
                    "us": s * 1e6,
                    "gb_per_s": gbs,
                    "gmac_per_s": gmacs,
                }
            sys.stdout.flush()

    if not args.per_token:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
        return
    # The whole per-token set with distinct buffers per layer (streams ~96 MB like a decode step).
    token_mats = []
    for _ in range(N_LAYERS):
        token_mats += [(t, weights(t, k, rows, rng), k) for _, t, k, rows in LAYER]
    token_mats.append(mats[HEAD[0]])
    total_bytes = sum(m[1].nbytes for m in token_mats)
    print(f"\nper-token matmul set: {len(token_mats)} matrices, {total_bytes / 1e6:.1f} MB of weights")
    print(f"{'isa':<8} {'threads':>7} {'ms/token':>9} {'GB/s':>7} {'tok/s ceiling':>14}")
    for isa in isas:
        for threads in (1, 2):
            s = median_s(isa, token_mats, 1, 5 if isa != "generic" else 2, threads)
            print(f"{isa:<8} {threads:>7} {s * 1e3:>9.2f} {total_bytes / s / 1e9:>7.1f} {1 / s:>14.1f}")
            results["per_token"].setdefault(isa, {})[str(threads)] = {
                "ms": s * 1e3,
                "gb_per_s": total_bytes / s / 1e9,
                "tok_per_s_ceiling": 1 / s,
            }
            sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
