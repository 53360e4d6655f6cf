#!/usr/bin/env python3
"""Variants of the adaptive policy side by side on Spec-Bench: each prompt is decoded plainly
once, then by every variant in turn (apls.spec_bench.run with several configurations), so
machine noise hits them alike. Prints each variant's per-group speedups and writes the JSON.

Variants (--variants, comma-separated):
  default     make_policy("adaptive", ...) as `apls bench --speculative` runs it
  plain-arm   the same with a plain-decoding arm beside the model-free one (the default before
              the model-free arm became the plain fallback)
  text-only   StaticPolicy: the model-free sources every round, no arms to choose

Usage:
  python tools/bench_policies.py [--model M.gguf] [--device cpu] [--threads 2] [--limit 10]
      [--max-tokens 256] [--variants default,plain-arm] [--json out.json]
"""

import argparse
import json

import apls
from apls import spec_bench
from apls.plan import Plan
from apls.policy import AdaptivePolicy, StaticPolicy, TreeShape, _Arm, make_policy


def with_plain_arm(model):
    """The default adaptive policy with plain decoding as an arm of its own, started first (the
    arm AdaptivePolicy(with_plain=True) adds; unchanged where the default already has one)."""
    pol = make_policy("adaptive", model)
    if not isinstance(pol, AdaptivePolicy) or any(not a.sources for a in pol.arms):
        return pol
    pol.arms.insert(0, _Arm(Plan(), n_draft=0, sources=()))
    pol.current = 0
    return pol


def text_only(model):
    text = make_policy("adaptive", model).tree  # the default's model-free sources
    return StaticPolicy(tree=TreeShape(text.sources), skip=False)


VARIANTS = {
    "default": lambda model: make_policy("adaptive", model),
    "plain-arm": with_plain_arm,
    "text-only": text_only,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="GGUF model (default: apls' default model)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--prompts", default="tests/data/spec_bench_prompts.jsonl")
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--variants", default="default,plain-arm")
    ap.add_argument("--json")
    args = ap.parse_args()
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    model = apls.Model(args.model or apls.default_model_path(), device=args.device, n_threads=args.threads)
    res = spec_bench.run(
        model,
        args.prompts,
        {n: (lambda n=n: VARIANTS[n](model)) for n in names},
        limit=args.limit,
        max_tokens=args.max_tokens,
    )
    print(f"\n| variant | overall | tau | nodes a round | {' | '.join(res['groups'])} |")
    print("|---|---|---|---|" + "---|" * len(res["groups"]))
    for name, r in res["drafts"].items():
        o = r["overall"]
        groups = " | ".join(f"{g['speedup']:.2f}x" for g in r["groups"].values())
        print(f"| {name} | **{o['speedup']:.3f}x** | {o['tau']:.2f} | {o['nodes_per_round']:.2f} | {groups} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
