"""`apls bench --speculative`: Spec-Bench-style measurement of APLS against plain decoding on the
same engine — per draft configuration (the sources a policy may draft from), task group and
overall: tokens/s of both, speedup, tau (mean tokens per verify, the verifier's own included),
acceptance, drafted nodes per round, the verify batch's cost relative to a plain step, what each
source proposed and got accepted, and whether every output is identical."""

from __future__ import annotations

import json
import statistics
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .generate import SamplingParams
from .policy import DRAFT_SOURCES
from .speculative import SpecStats

GREEDY = SamplingParams(temperature=0.0)

SPEC_BENCH_GROUPS = ("mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag")
# MT-bench's categories, which Spec-Bench's question.jsonl names one by one and groups as "mt_bench".
MT_BENCH_CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")


def load_prompts(path: str, limit: int | None = None) -> OrderedDict[str, list[str]]:
    """Spec-Bench question.jsonl ({"category", "turns"}) or {"category", "text"} lines, grouped
    into Spec-Bench's six task groups (MT-bench's categories, and lines without one, form
    "mt_bench"); any other category is a group of its own, after those six (tests/data/
    code_prompts.jsonl: "code_completion", "code_edit"). First turns only. `limit`: most prompts
    per group. Raises ValueError on a line without a prompt."""
    groups: OrderedDict[str, list[str]] = OrderedDict((g, []) for g in SPEC_BENCH_GROUPS)
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            q = json.loads(line)
            text = q["turns"][0] if "turns" in q else q.get("text")
            if not text:
                raise ValueError(f"{path}:{n}: no prompt ('turns' or 'text')")
            cat = q.get("category") or "mt_bench"
            g = "mt_bench" if cat in MT_BENCH_CATEGORIES else str(cat)
            groups.setdefault(g, [])
            if limit is None or len(groups[g]) < limit:
                groups[g].append(text)
    return OrderedDict((g, v) for g, v in groups.items() if v)


def _row(plain_tok, plain_s, apls_tok, apls_s, st: SpecStats, identical: bool, plain_wall_s: float) -> dict:
    ar = plain_tok / plain_s if plain_s else 0.0
    ap = apls_tok / apls_s if apls_s else 0.0
    step = plain_wall_s / plain_tok if plain_tok else 0.0  # one plain step (s, wall: as the rounds' times)
    vr = st.n_verify_rounds
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
        "nodes_per_round": st.n_drafted / vr if vr else 0.0,
        "candidates_per_round": st.n_candidates / vr if vr else 0.0,
        # The verify batch's time relative to a plain step, and where a round's time goes (ms).
        "verify_cost": (st.t_tree_verify_s / vr) / step if vr and step else 0.0,
        "ms_per_round": {  # per verify round (plain steps' and plain chains' time is in "plain")
            "draft": 1e3 * st.t_draft_s / vr if vr else 0.0,
            "verify": 1e3 * st.t_tree_verify_s / vr if vr else 0.0,
            "plain": 1e3 * (st.t_verify_s - st.t_tree_verify_s) / vr if vr else 0.0,
            "host": 1e3 * st.t_host_s / vr if vr else 0.0,
        },
        "by_source": {
            src: {
                "drafted": st.drafted_by[i],
                "accepted": st.accepted_by[i],
                "acceptance": st.accepted_by[i] / st.drafted_by[i] if st.drafted_by[i] else 0.0,
                "accepted_per_round": st.accepted_by[i] / vr if vr else 0.0,
            }
            for i, src in enumerate(DRAFT_SOURCES)
            if st.drafted_by[i]
        },
    }


_SUMMED = (
    "n_rounds",
    "n_drafted",
    "n_accepted",
    "n_draft_waits",
    "t_draft_s",
    "t_verify_s",
    "t_host_s",
    "n_verify_rounds",
    "n_candidates",
    "n_skip_drafted",
    "t_tree_verify_s",
)


def _add_stats(agg: SpecStats, st: SpecStats) -> None:
    for k in _SUMMED:
        setattr(agg, k, getattr(agg, k) + getattr(st, k))
    for i in range(len(DRAFT_SOURCES)):
        agg.drafted_by[i] += st.drafted_by[i]
        agg.accepted_by[i] += st.accepted_by[i]


def run(
    model,
    prompts_path: str,
    policy_factory: Callable | dict[str, Callable],
    limit: int | None = 10,
    max_tokens: int = 128,
    log=print,
    clock: str = "wall",
) -> dict:
    """Greedy, batch 1, chat template applied. clock "wall": speeds from wall time; "cpu": from
    the process's CPU time (with one thread, the work itself on a machine others load; the
    rounds' own breakdown stays wall time). `policy_factory()` makes the policy once for the
    run: an adaptive policy keeps what it learned across prompts, as it would in a server. A dict
    {name: factory} measures several configurations: each prompt is decoded plainly once, then by
    each configuration in turn, so machine noise hits them alike.
    Returns {"overall": {...}, "groups": {name: {...}}, "config": {...}} of the first
    configuration, and "drafts": {configuration: {"overall", "groups"}} of all."""
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', not {clock!r}")
    seconds = (lambda st: st.decode_cpu_s) if clock == "cpu" else (lambda st: st.decode_s)
    factories = policy_factory if isinstance(policy_factory, dict) else {"apls": policy_factory}
    groups = load_prompts(prompts_path, limit)
    n_ctx = 2048
    policies = {name: make() for name, make in factories.items()}
    zero: dict[str, Any] = {"plain_tok": 0, "plain_s": 0.0, "plain_wall_s": 0.0, "apls_tok": 0, "apls_s": 0.0}
    zero["ident"] = True
    tot = {name: dict(zero) for name in policies}
    overall_stats = {name: SpecStats() for name in policies}
    res: dict[str, dict[str, Any]] = {name: {"groups": {}} for name in policies}
    draft_cost: list[float] = []
    for g, texts in groups.items():
        gs = {name: dict(zero) for name in policies}
        gstats = {name: SpecStats() for name in policies}
        for text in texts:
            ids = model.tokenize(
                model.chat_prompt([{"role": "user", "content": text}]), add_special=False, parse_special=True
            )[-(n_ctx - max_tokens - 32) :]
            # Plain decoding, then each configuration; generation time only (prefill is the same work).
            plain = list(model.generate_tokens(ids, max_tokens, GREEDY, n_ctx=n_ctx))
            ps = model.last_stats
            for name, policy in policies.items():
                out = list(model.generate_tokens(ids, max_tokens, GREEDY, n_ctx=n_ctx, speculative=True, policy=policy))
                st = model.last_stats
                for acc in (gs[name], tot[name]):
                    acc["plain_tok"] += ps.n_generated
                    acc["plain_s"] += seconds(ps)
                    acc["plain_wall_s"] += ps.decode_s
                    acc["apls_tok"] += st.n_generated
                    acc["apls_s"] += seconds(st)
                    acc["ident"] &= out == plain
                _add_stats(gstats[name], st)
                _add_stats(overall_stats[name], st)
                if name == next(iter(policies)) and st.n_skip_drafted and ps.n_generated:
                    draft_cost.append((st.t_draft_s / st.n_skip_drafted) / (ps.decode_s / ps.n_generated))
        for name in policies:
            a = gs[name]
            r = res[name]["groups"][g] = _row(
                a["plain_tok"], a["plain_s"], a["apls_tok"], a["apls_s"], gstats[name], a["ident"], a["plain_wall_s"]
            )
            log(
                f"{name:<12} {g:<15} plain {r['ar_tok_s']:7.1f} tok/s  apls {r['apls_tok_s']:7.1f} tok/s  "
                f"{r['speedup']:.2f}x  tau {r['tau']:.2f}  acc {r['acceptance']:.2f}  "
                f"nodes {r['nodes_per_round']:.2f}  identical {r['identical']}"
            )
    for name in policies:
        a = tot[name]
        overall = _row(
            a["plain_tok"], a["plain_s"], a["apls_tok"], a["apls_s"], overall_stats[name], a["ident"], a["plain_wall_s"]
        )
        overall["rounds"] = overall_stats[name].n_rounds
        costs = getattr(policies[name], "draft_costs", None)  # the adaptive policy's measured skip drafts
        if costs:
            overall["draft_costs"] = costs
            kept = [a for a in getattr(policies[name], "arms", []) if a.n_draft != 0]
            log(f"{name}: draft token / plain step {costs}; skip candidates kept: {len(kept)} of {len(costs)}")
        res[name]["overall"] = overall
    first = res[next(iter(policies))]
    first["overall"]["draft_cost_vs_full_step"] = statistics.fmean(draft_cost) if draft_cost else 0.0
    return {
        "overall": first["overall"],
        "groups": first["groups"],
        "drafts": res,
        "config": {
            "prompts": prompts_path,
            "limit": limit,
            "max_tokens": max_tokens,
            "drafts": list(policies),
            "clock": clock,
            "n_threads": model.n_threads,
        },
    }


def format_table(res: dict) -> str:
    """Markdown: a row per configuration and group (and overall), then the sources of each
    configuration's overall row (nodes verified and accepted)."""
    lines = [
        "| draft | group | plain tok/s | APLS tok/s | speedup | tau | acceptance | nodes/round | verify cost "
        "| identical |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    drafts = res.get("drafts") or {"apls": {"groups": res["groups"], "overall": res["overall"]}}
    for name, d in drafts.items():
        for g, r in list(d["groups"].items()) + [("overall", d["overall"])]:
            lines.append(
                f"| {name} | {g} | {r['ar_tok_s']:.1f} | {r['apls_tok_s']:.1f} | {r['speedup']:.2f}x | {r['tau']:.2f} "
                f"| {r['acceptance']:.2f} | {r['nodes_per_round']:.2f} | {r['verify_cost']:.2f}x | {r['identical']} |"
            )
    lines += [
        "",
        "| draft | source | nodes verified | accepted | acceptance | accepted per round |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in drafts.items():
        for src, b in d["overall"]["by_source"].items():
            lines.append(
                f"| {name} | {src} | {b['drafted']} | {b['accepted']} | {b['acceptance']:.2f} "
                f"| {b['accepted_per_round']:.2f} |"
            )
    ms = {name: d["overall"]["ms_per_round"] for name, d in drafts.items()}
    lines += ["", "| draft | ms per verify round: draft | verify | plain steps | host |", "|---|---|---|---|---|"]
    lines += [
        f"| {n} | {m['draft']:.2f} | {m['verify']:.2f} | {m['plain']:.2f} | {m['host']:.3f} |" for n, m in ms.items()
    ]
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
