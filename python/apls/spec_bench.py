"""`apls bench --speculative`: Spec-Bench-style measurement of APLS against plain decoding on the
same engine — per task group and overall: tokens/s of both, speedup, tau (mean tokens per verify,
the verifier's own included), acceptance, and whether every output is identical."""

from __future__ import annotations

import json
import statistics
from collections import OrderedDict

from .generate import SamplingParams
from .speculative import SpecStats

GREEDY = SamplingParams(temperature=0.0)

SPEC_BENCH_GROUPS = ("mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag")


def load_prompts(path: str, limit: int | None = None) -> OrderedDict[str, list[str]]:
    """Spec-Bench question.jsonl ({"category", "turns"}) or {"category", "text"} lines, grouped
    into Spec-Bench's six task groups (MT-bench's categories form "mt_bench"); first turns only.
    `limit`: most prompts per group. Raises ValueError on a line without a prompt."""
    groups: OrderedDict[str, list[str]] = OrderedDict((g, []) for g in SPEC_BENCH_GROUPS)
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            q = json.loads(line)
            text = q["turns"][0] if "turns" in q else q.get("text")
            if not text:
                raise ValueError(f"{path}:{n}: no prompt ('turns' or 'text')")
            cat = q.get("category", "mt_bench")
            g = cat if cat in SPEC_BENCH_GROUPS else "mt_bench"
            if limit is None or len(groups[g]) < limit:
                groups[g].append(text)
    return OrderedDict((g, v) for g, v in groups.items() if v)


def _row(plain_tok, plain_s, apls_tok, apls_s, st: SpecStats, identical: bool) -> dict:
    ar = plain_tok / plain_s if plain_s else 0.0
    ap = apls_tok / apls_s if apls_s else 0.0
    # draft_waits_per_round: the host's waits for drafted tokens per round (1 when the draft ran
    # as one device chain; the drafted tokens per round, (tau - 1) / acceptance, when it waited
    # per token).
    return {
        "ar_tok_s": ar,
        "apls_tok_s": ap,
        "speedup": ap / ar if ar else 0.0,
        "tau": st.tau,
        "acceptance": st.acceptance,
        "identical": identical,
        "draft_waits_per_round": st.n_draft_waits / st.n_rounds if st.n_rounds else 0.0,
    }


def run(model, prompts_path: str, policy_factory, limit: int | None = 10, max_tokens: int = 128, log=print) -> dict:
    """Greedy, batch 1, chat template applied. `policy_factory()` makes the policy once for the
    run: an adaptive policy keeps what it learned across prompts, as it would in a server.
    Returns {"overall": {...}, "groups": {name: {...}}, "config": {...}}."""
    groups = load_prompts(prompts_path, limit)
    n_ctx = 2048
    res_groups, tot = {}, {"plain_tok": 0, "plain_s": 0.0, "apls_tok": 0, "apls_s": 0.0, "ident": True}
    overall_stats = SpecStats()
    draft_cost: list[float] = []
    policy = policy_factory()
    for g, texts in groups.items():
        gs = {"plain_tok": 0, "plain_s": 0.0, "apls_tok": 0, "apls_s": 0.0, "ident": True}
        gstats = SpecStats()
        for text in texts:
            ids = model.tokenize(
                model.chat_prompt([{"role": "user", "content": text}]), add_special=False, parse_special=True
            )[-(n_ctx - max_tokens - 32) :]
            # Plain decoding, then APLS; generation time only (prefill is the same work).
            plain = list(model.generate_tokens(ids, max_tokens, GREEDY, n_ctx=n_ctx))
            ps = model.last_stats
            out = list(model.generate_tokens(ids, max_tokens, GREEDY, n_ctx=n_ctx, speculative=True, policy=policy))
            st = model.last_stats
            same = out == plain
            for acc in (gs, tot):
                acc["plain_tok"] += ps.n_generated
                acc["plain_s"] += ps.decode_s
                acc["apls_tok"] += st.n_generated
                acc["apls_s"] += st.decode_s
                acc["ident"] &= same
            for agg in (gstats, overall_stats):
                for k in ("n_rounds", "n_drafted", "n_accepted", "n_draft_waits", "t_draft_s", "t_verify_s"):
                    setattr(agg, k, getattr(agg, k) + getattr(st, k))
            if st.n_drafted and ps.n_generated:
                draft_cost.append((st.t_draft_s / st.n_drafted) / (ps.decode_s / ps.n_generated))
        res_groups[g] = _row(gs["plain_tok"], gs["plain_s"], gs["apls_tok"], gs["apls_s"], gstats, gs["ident"])
        r = res_groups[g]
        log(
            f"{g:<15} plain {r['ar_tok_s']:7.1f} tok/s  apls {r['apls_tok_s']:7.1f} tok/s  {r['speedup']:.2f}x  "
            f"tau {r['tau']:.2f}  acc {r['acceptance']:.2f}  identical {r['identical']}"
        )
    overall = _row(tot["plain_tok"], tot["plain_s"], tot["apls_tok"], tot["apls_s"], overall_stats, tot["ident"])
    overall["draft_cost_vs_full_step"] = statistics.fmean(draft_cost) if draft_cost else 0.0
    overall["rounds"] = overall_stats.n_rounds
    return {
        "overall": overall,
        "groups": res_groups,
        "config": {"prompts": prompts_path, "limit": limit, "max_tokens": max_tokens},
    }


def format_table(res: dict) -> str:
    lines = [
        "| group | plain tok/s | APLS tok/s | speedup | tau | acceptance | identical |",
        "|---|---|---|---|---|---|---|",
    ]
    for g, r in list(res["groups"].items()) + [("overall", res["overall"])]:
        lines.append(
            f"| {g} | {r['ar_tok_s']:.1f} | {r['apls_tok_s']:.1f} | {r['speedup']:.2f}x | {r['tau']:.2f} | "
            f"{r['acceptance']:.2f} | {r['identical']} |"
        )
    return "\n".join(lines)


def run_long(
    model,
    prompts_path: str,
    plan,
    lengths=(1024, 2048, 4096),
    max_tokens: int = 64,
    n_sink: int = 4,
    n_window: int = 256,
    log=print,
) -> dict:
    """Long-context mode: for each context length, plain decoding against APLS with the static
    draft plan, with a draft KV view (sinks + window), and with progressive reduction (more
    attention skipped) plus the view. Reports tokens/s, speedup, draft cost per token relative
    to a full step, tau, and identity of the outputs."""
    from .kv_policy import KVViewPolicy
    from .plan import Plan
    from .policy import DraftLength, ProgressiveSchedule, StaticPolicy

    blob = "\n\n".join(t for g in load_prompts(prompts_path).values() for t in g)
    all_ids = model.tokenize(blob, add_special=False)
    n = model.n_layer
    more = Plan.skipping(set(plan.skip_attn) | set(range(2, n - 2, 2)), plan.skip_mlp, plan.groups, plan.head_rows)
    configs = {
        "apls": lambda: StaticPolicy(plan, DraftLength(n_max=4)),
        "apls+view": lambda: StaticPolicy(plan, DraftLength(n_max=4), kv=KVViewPolicy(n_sink, n_window, 0)),
        "apls+progressive+view": lambda: StaticPolicy(
            plan,
            DraftLength(n_max=4),
            schedule=ProgressiveSchedule([(0, plan), (2048, more)]),
            kv=KVViewPolicy(n_sink, n_window, 0),
        ),
    }
    out = {}
    for L in lengths:
        ids = all_ids[:L]
        n_ctx = L + max_tokens + 64
        plain = list(model.generate_tokens(ids, max_tokens, GREEDY, ignore_eos=True, n_ctx=n_ctx))
        ps = model.last_stats
        row = {"plain_tok_s": ps.decode_tok_s}
        step = ps.decode_s / max(ps.n_generated, 1)
        for name, make in configs.items():
            got = list(
                model.generate_tokens(
                    ids, max_tokens, GREEDY, ignore_eos=True, n_ctx=n_ctx, speculative=True, policy=make()
                )
            )
            st = model.last_stats
            row[name] = {
                "tok_s": st.decode_tok_s,
                "speedup": st.decode_tok_s / ps.decode_tok_s,
                "draft_cost": (st.t_draft_s / max(st.n_drafted, 1)) / step,
                "tau": st.tau,
                "identical": got == plain,
            }
        out[str(L)] = row
        log(
            f"context {L}: plain {row['plain_tok_s']:.1f} tok/s; "
            + "; ".join(
                f"{k} {v['speedup']:.2f}x (draft {v['draft_cost']:.2f}, tau {v['tau']:.2f}, identical {v['identical']})"
                for k, v in row.items()
                if isinstance(v, dict)
            )
        )
    return out
