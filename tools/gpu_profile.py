#!/usr/bin/env python3
"""Where a decode step's time goes on the GPU (SmolLM2 by default): host time per decode call
with and without CUDA graphs, the cost of the Python and logits round trip, and a speculative
round's parts. Prints one line per measurement. Run under `nsys profile --stats=true` for kernels.

    python tools/gpu_profile.py [MODEL.gguf] [--device cuda]
"""

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import apls  # noqa: E402
from apls import _core  # noqa: E402


def dev_us(e):
    """A profiler row's own device time in us (torch >= 2.4 names it self_device_time_total)."""
    return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)


def per_call_ms(fn, n=100, warm=10):
    for _ in range(warm):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e3


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument(
        "--kernels", default="1", type=lambda v: [int(x) for x in v.split(",")], help="batch sizes to profile"
    )
    ap.add_argument("--top", type=int, default=12, help="kernels listed per step (default 12)")
    ap.add_argument("--tree", action="store_true", help="also profile a token tree of each size (random parents)")
    a = ap.parse_args()
    m = apls.Model(a.model or apls.default_model_path(), device=a.device)
    print(f"device {m.device}: {_core.cuda_describe()}")
    ctx = m.context(n_ctx=1024)
    ctx.decode(list(range(100, 164)), logits="last")
    base = ctx.kv_seq_len(0)

    def random_parents(n, seed=0):  # node i's parent: -1 (the root's) or an earlier node
        rng = random.Random(seed)
        return [-1] + [rng.randrange(-1, i) for i in range(1, n)]

    def step(n, logits="last", parent=None):
        def fn():
            if logits == "choose" and not hasattr(ctx, "decode_choose"):  # an older build (gpu_bench abprofile)
                ctx.decode(list(range(200, 200 + n)), logits="last")
            elif logits == "choose":  # a verify batch: every row's logits and choice, none copied back
                ctx.decode_choose(list(range(200, 200 + n)), logits="all", fetch=[False] * n, parent=parent)
            else:
                ctx.decode(list(range(200, 200 + n)), logits=logits)
            ctx.kv.truncate(0, base)

        return fn

    try:  # kernel times through CUPTI (torch's profiler records every kernel of the process)
        import torch
        from torch.profiler import ProfilerActivity, profile

        torch.zeros(1, device="cuda")
        shapes = [(n, None) for n in a.kernels]
        if a.tree:
            shapes += [(n, random_parents(n)) for n in a.kernels if n > 1]
        for n, parent in shapes:  # per kernel, per step of n tokens (a verify batch: every row's choice)
            fn = step(n, "choose", parent)
            fn()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(20):
                    fn()

            rows = [e for e in prof.key_averages() if dev_us(e) > 0]
            total = sum(dev_us(e) for e in rows) / 20
            print(
                f"\nkernels of a {n}-token {'tree ' if parent else ''}step: {total:.1f} us per step, "
                f"{sum(e.count for e in rows) / 20:.0f} kernels"
            )
            print("| kernel | us per step | calls per step |")
            print("|---|---|---|")
            for e in sorted(rows, key=lambda e: -dev_us(e))[: a.top]:
                print(f"| {e.key[:70]} | {dev_us(e) / 20:.1f} | {e.count / 20:.0f} |")
    except Exception as e:  # noqa: BLE001 - profiling is optional
        print(f"(no kernel profile: {e})")
    for n in (1, 2, 5, 9, 16):
        print(f"decode {n:2d} tokens (python, last logits): {per_call_ms(step(n)):.3f} ms")
    print(f"decode  9 tokens, all logits:              {per_call_ms(step(9, 'all')):.3f} ms")
    # The C++ speculative round (greedy, no logits copied): full draft plan vs a skipping one.
    from apls.plan import Plan

    for name, plan in (("identity", Plan()), ("skip 10 layers", Plan.skipping(range(10, 20), range(10, 20)))):
        for k in (1, 4, 8):

            def rnd(plan=plan, k=k):
                ctx.spec_round(300, plan, n_draft_max=k, draft_p_min=0.0)
                ctx.kv.truncate(0, base)

            print(f"spec_round {name}, k={k}: {per_call_ms(rnd, n=50):.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
