"""Offline plan search (`apls tune`): find the draft plan and draft length with the highest
measured speed on calibration prompts.

The search is argued from the cost of a round. With per-token acceptance a (the chance the
draft's next token equals the full model's), a k-token draft yields tau = (1 - a^(k+1)) / (1 - a)
tokens per round at a cost of k * c_draft + c_verify(k + 1), both measured on this machine. So:
  1. acceptance is measured exactly as rounds see it: for every calibration position, the draft
     plan decodes one token on top of the full model's cache (all plans share the full model's
     advance, one batched decode per position over all prompts);
  2. sub-blocks (attention or MLP of one layer) are ranked by the acceptance lost when each is
     skipped alone; plans skipping the n least important sub-blocks are scored for every n and
     every draft length with the cost model above (and the draft head size);
  3. the best few predicted plans are run for real (speculative generation on the calibration
     prompts) and the one with the highest measured tokens/s wins.
Bayesian optimisation over 2^60 subsets spends most of its evaluations learning what step 2's
ranking gives at once (sub-blocks act nearly independently on acceptance at these depths).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .plan import Plan


@dataclass
class TuneResult:
    plan: Plan
    n_draft: int
    measured_speedup: float
    predicted_speedup: float
    acceptance: float
    ranking: list[tuple[str, int, float]] = field(default_factory=list)  # (kind, layer, acceptance when skipped alone)
    candidates: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = self.plan.to_dict()
        d["n_draft"] = self.n_draft
        d["metrics"] = {
            "measured_speedup": self.measured_speedup,
            "predicted_speedup": self.predicted_speedup,
            "acceptance": self.acceptance,
            "candidates": self.candidates,
        }
        return d


def _time(fn, reps: int = 5) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


class Calibration:
    """Calibration sequences (prompt + the full model's greedy continuation) and their cache."""

    def __init__(self, model, prompts: Sequence[Sequence[int]], n_gen: int = 32):
        self.model = model
        self.prompts = [list(p) for p in prompts]
        self.n_gen = n_gen
        self.conts: list[list[int]] = []
        for p in self.prompts:
            ctx = model.context(n_ctx=len(p) + n_gen + 8)
            ids = list(p)
            logits = ctx.decode(ids, logits="last")[-1]
            cont = []
            for _ in range(n_gen):
                t = int(np.argmax(logits))
                cont.append(t)
                logits = ctx.decode([t], logits="last")[-1]
            self.conts.append(cont)

    def acceptance(self, plans: Sequence[Plan]) -> np.ndarray:
        """Per plan: the fraction of continuation positions where the plan's next-token argmax,
        computed on top of the full model's cache, equals the full model's greedy token."""
        P = len(self.prompts)
        n_ctx = sum(len(p) + self.n_gen + 8 + 16 for p in self.prompts)  # + a partial block each
        ctx = self.model.context(n_ctx=n_ctx, n_seq_max=P, n_batch=max(P, 512))
        for s, p in enumerate(self.prompts):  # full-model cache up to the last prompt token
            ctx.decode(p[:-1], seq_ids=[s] * (len(p) - 1), logits="last")
        last = [p[-1] for p in self.prompts]
        hits = np.zeros(len(plans))
        seqs = list(range(P))
        for i in range(self.n_gen):
            lens = [ctx.kv_seq_len(s) for s in seqs]
            for j, plan in enumerate(plans):
                rows = ctx.decode(last, seq_ids=seqs, logits="all", plan=plan)
                hits[j] += sum(int(np.argmax(rows[s])) == self.conts[s][i] for s in seqs)
                for s in seqs:
                    ctx.kv_truncate(s, lens[s])
            ctx.decode(last, seq_ids=seqs, logits="last")  # the full model advances every sequence
            last = [self.conts[s][i] for s in seqs]
        return hits / (P * self.n_gen)


def _tau(a: float, k: int) -> float:
    return float(k + 1) if a >= 1.0 else (1.0 - a ** (k + 1)) / (1.0 - a)


def tune(
    model,
    prompts: Sequence[Sequence[int]],
    n_gen: int = 32,
    k_options: Sequence[int] = (1, 2, 3, 4, 6, 8),
    head_options: Sequence[int] | None = None,
    n_measure: int = 3,
    measure_tokens: int = 64,
    log=print,
) -> TuneResult:
    """Search a draft plan for `model` on token-id `prompts`; see the module docstring.

    Returns the best plan with its draft length and measured speedup over plain decoding.
    """
    from .policy import DraftLength, StaticPolicy

    n = model.n_layer
    heads = list(head_options) if head_options is not None else [0, model.n_vocab // 4]
    cal = Calibration(model, prompts, n_gen)

    # Costs on this machine: one full decode step, a verify of j tokens, a draft step per plan.
    ctx = model.context(n_ctx=600)
    ctx.decode(list(range(100, 400)), logits="last")
    base = ctx.kv_seq_len(0)

    def step(tokens, plan=None):
        ctx.decode(tokens, logits="all", plan=plan)
        ctx.kv_truncate(0, base)

    t1 = _time(lambda: step([500]))
    verify = {j: _time(lambda j=j: step(list(range(500, 500 + j)))) / t1 for j in range(1, max(k_options) + 2)}
    log(
        f"tune: full step {t1 * 1e3:.2f} ms; verify cost "
        + ", ".join(f"k={j - 1}: {verify[j]:.2f}x" for j in sorted(verify))
    )

    # 1. Rank sub-blocks by the acceptance lost when skipped alone (first and last layers kept).
    blocks = [(kind, l) for l in range(1, n - 1) for kind in ("attn", "mlp")]
    single = [Plan.skipping([l] if k == "attn" else [], [l] if k == "mlp" else []) for k, l in blocks]
    acc = cal.acceptance(single)
    order = sorted(range(len(blocks)), key=lambda i: -acc[i])
    ranking = [(blocks[i][0], blocks[i][1], float(acc[i])) for i in order]
    log("tune: least important sub-blocks: " + ", ".join(f"{k}{l}({a:.2f})" for k, l, a in ranking[:8]))

    # 2. Plans skipping the m least important sub-blocks, every head size; predicted speedup.
    plans, meta = [], []
    for m in range(2, len(order) + 1, 2):
        chosen = [blocks[i] for i in order[:m]]
        for h in heads:
            plans.append(
                Plan.skipping([l for k, l in chosen if k == "attn"], [l for k, l in chosen if k == "mlp"], head_rows=h)
            )
            meta.append(m)
    accs = cal.acceptance(plans)
    scored = []
    for plan, a in zip(plans, accs):
        c = _time(lambda plan=plan: step([500], plan), reps=3) / t1
        for k in k_options:
            pred = _tau(float(a), k) / (k * c + verify[k + 1])
            scored.append((pred, plan, k, float(a), c))
    scored.sort(key=lambda x: -x[0])
    top = []
    for pred, plan, k, a, c in scored:
        if all(plan != p for _, p, *_ in top):
            top.append((pred, plan, k, a, c))
        if len(top) == n_measure:
            break

    # 3. Measure the best predictions for real.
    from .generate import SamplingParams

    greedy = SamplingParams(temperature=0.0)
    n_ctx = max(len(p) for p in cal.prompts) + measure_tokens + 16

    def measure(gen_fn) -> float:
        t0 = time.perf_counter()
        n_tok = 0
        for p in cal.prompts:
            n_tok += len(list(gen_fn(p)))
        return n_tok / (time.perf_counter() - t0)

    plain = measure(lambda p: model.generate_tokens(p, measure_tokens, greedy, ignore_eos=True, n_ctx=n_ctx))
    candidates, best = [], None
    for pred, plan, k, a, c in top:
        policy = StaticPolicy(plan, DraftLength(n_max=k, p_min=0.0), adapt_length=False)
        speed = measure(
            lambda p, policy=policy: model.generate_tokens(
                p, measure_tokens, greedy, ignore_eos=True, n_ctx=n_ctx, speculative=True, policy=policy
            )
        )
        cand = {
            "plan": plan.describe(),
            "n_draft": k,
            "acceptance": a,
            "draft_cost": c,
            "predicted_speedup": pred,
            "measured_speedup": speed / plain,
        }
        candidates.append(cand)
        log(
            f"tune: {plan.describe()} k={k}: acceptance {a:.2f}, draft cost {c:.2f}x, predicted {pred:.2f}x, "
            f"measured {speed / plain:.2f}x"
        )
        if best is None or cand["measured_speedup"] > best[0]["measured_speedup"]:
            best = (cand, plan, k)
    cand, plan, k = best
    return TuneResult(
        plan, k, cand["measured_speedup"], cand["predicted_speedup"], cand["acceptance"], ranking, candidates
    )
