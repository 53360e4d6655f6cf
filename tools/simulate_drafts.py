"""Token-tree drafts simulated over recorded greedy outputs: what each draft source (and their
combination) would give on the CPU or the GPU, without running the verifier.

Greedy verification accepts exactly the path of the tree that follows the plain greedy output, so
rounds over a recorded output need no model: each round asks the drafter for its cut tree
(apls._core.draft_tree, the same code the engine round runs), accepts the longest path matching
the recording plus one token, and feeds the outcome back as the engine round would. Token
recycling's successor table is filled from the recorded top-k of each output position (the real
round also fills it from rejected nodes' rows, so the simulation under-fills it a little).

    python tools/simulate_drafts.py record --prompts tests/data/spec_bench_prompts.jsonl \\
        --limit 10 --max-tokens 256 -o /tmp/greedy.jsonl
    python tools/simulate_drafts.py simulate /tmp/greedy.jsonl --cost 1,1.05,1.12,1.2,1.3 --json sim.json
    python tools/simulate_drafts.py simulate /tmp/greedy.jsonl --param lookup_depth=8 --param suffix_depth=8

simulate prints, per group and overall, tau (tokens per verify), nodes verified per round and the
expected speedup over plain decoding under the verify cost curve given (cost[n]: a batch of n + 1
tokens relative to one plain step; --round-cost adds a fixed cost to each round that verifies a
node; draft and host time are not counted).

    python tools/simulate_drafts.py bound /tmp/greedy.jsonl --cost 1,1.05,... --depth 24

bound gives the ceiling of one-chain drafts copied from the text (no model): each round an
oracle drafts the longest span of the output still to come (up to --depth tokens) that occurs in
the prompt and the output so far, where it may start:
  copy       anywhere (even a one-token coincidence counts);
  anchored   right after an earlier occurrence of the text's last token (an n-gram lookup of any
             length >= 1 with a perfect choice among its matches);
  successor  as anchored, or else with a token of the last token's successor table (the top 4 of
             the latest row verified after that token, as token recycling keeps them) and then
             what follows an occurrence of that token.
It prints tau and the speedup under the cost curve, per group. (Trees that follow several matches
at once can beat a one-chain oracle where copied spans are long.)
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

SOURCE_SETS = ("lookup", "suffix", "recycle", "lookup,suffix", "lookup,suffix,recycle")
TOP_K = 8


def record(args) -> None:
    import apls
    from apls.spec_bench import load_prompts

    model = apls.Model(args.model or apls.default_model_path(), n_threads=args.threads)
    groups = load_prompts(args.prompts, args.limit)
    with open(args.output, "w") as f:
        for g, texts in groups.items():
            for text in texts:
                ids = model.tokenize(
                    model.chat_prompt([{"role": "user", "content": text}]), add_special=False, parse_special=True
                )
                ctx = model.context(n_ctx=2048)
                for i in range(0, len(ids) - 1, 512):
                    ctx.decode(ids[i : min(i + 512, len(ids) - 1)], logits="last")
                out, topk, tok = [], [], ids[-1]
                for _ in range(args.max_tokens):
                    row = ctx.decode([tok], logits="last")[-1]
                    top = np.argpartition(-row, TOP_K)[:TOP_K]
                    top = top[np.lexsort((top, -row[top]))]  # by logit, ties to the lower id
                    topk.append([int(t) for t in top])
                    tok = int(top[0])
                    out.append(tok)
                    if model.vocab.is_eog(tok):
                        break
                f.write(json.dumps({"group": g, "prompt": [int(t) for t in ids], "output": out, "topk": topk}) + "\n")
                print(g, len(out), flush=True)


def simulate_one(drafter, params, n_max, prompt, output, topk, n_vocab, stats, round_cost=0.0) -> None:
    from apls import _core

    drafter.start(np.array(prompt, np.int32))
    recycle = params.sources & (1 << _core.DRAFT_SOURCES.index("recycle"))
    row = np.full(n_vocab, -np.inf, np.float32)

    def see(pos_of_row: int, token: int) -> None:  # the verifier's row after `token` predicted output[pos_of_row]
        if recycle and pos_of_row < len(topk):
            row[:] = -np.inf
            row[topk[pos_of_row]] = np.arange(TOP_K, 0, -1, dtype=np.float32)
            drafter.recycle(token, row)

    see(0, prompt[-1])
    drafter.append(np.array(output[:1], np.int32))
    pos = 1  # output[:pos] is generated; output[pos - 1] is the round's last token
    while pos < len(output):
        tree = _core.draft_tree(drafter, params, n_max)
        tokens, parents = tree.tokens, tree.parents
        path, at = [], -1
        while pos + len(path) < len(output):
            want = output[pos + len(path)]
            nxt = next((i for i, (t, p) in enumerate(zip(tokens, parents)) if p == at and t == want), -1)
            if nxt < 0:
                break
            path.append(nxt)
            at = nxt
        # Calibration: each judged node's estimated acceptance (given its parent) and its outcome.
        pp = tree.p_path
        for i, par in enumerate(parents):
            if par == -1 or par in path:
                est = pp[i] / (pp[par] if par >= 0 else 1.0)
                stats["calib"].append((est, i in path, tree.sources(i)))
        drafter.learn(tree, path)
        gained = output[pos : pos + len(path) + 1]
        for j, t in enumerate([output[pos - 1], *gained[:-1]]):
            see(pos + j, t)
        drafter.append(np.array(gained, np.int32))
        stats["rounds"] += 1
        stats["tokens"] += len(gained)
        stats["nodes"] += len(tokens)
        stats["cost"] += params.verify_cost[len(tokens)] if params.verify_cost else 1.0
        stats["cost"] += round_cost if tokens else 0.0
        pos += len(gained)


def calibration(judged) -> dict[str, list]:
    """Judged nodes by estimated acceptance (tenths): count, mean estimate, observed acceptance;
    for every node and per proposing source."""
    from apls import _core

    out = {}
    for k, name in [(-1, "all"), *enumerate(_core.DRAFT_SOURCES)]:
        rows = []
        for lo in np.arange(0.0, 1.0, 0.1):
            sel = [(e, a) for e, a, src in judged if lo <= e < lo + 0.1 + (lo > 0.85) and (k < 0 or src >> k & 1)]
            if sel:
                rows.append(
                    (float(lo), len(sel), float(np.mean([e for e, _ in sel])), float(np.mean([a for _, a in sel])))
                )
        if rows:
            out[name] = rows
    return out


def simulate(args) -> None:
    import apls
    from apls import _core

    model = apls.Model(args.model or apls.default_model_path())
    recs = [json.loads(line) for line in open(args.recording)]
    cost = [float(c) for c in args.cost.split(",")] if args.cost else []
    results = {}
    for srcs in args.sources.split(";"):
        params = _core.TreeParams()
        params.sources = sum(1 << _core.DRAFT_SOURCES.index(s) for s in srcs.split(","))
        params.n_nodes_max = args.n_max
        params.branching = not args.chain
        params.verify_cost = cost
        for kv in args.param:
            name, _, value = kv.partition("=")
            if not hasattr(params, name) or name in ("sources", "verify_cost", "seq"):
                raise SystemExit(f"--param {kv}: not a draft source limit of TreeParams")
            setattr(params, name, int(value))
        drafter = _core.Drafter(model._model)  # one session: the suffix index keeps earlier outputs
        per_group: dict[str, dict] = {}
        t0 = time.perf_counter()
        for r in recs:
            st = per_group.setdefault(r["group"], {"rounds": 0, "tokens": 0, "nodes": 0, "cost": 0.0, "calib": []})
            simulate_one(
                drafter, params, args.n_max, r["prompt"], r["output"], r["topk"], model.n_vocab, st, args.round_cost
            )
        tot = {k: sum(st[k] for st in per_group.values()) for k in ("rounds", "tokens", "nodes", "cost")}
        calib = [c for st in per_group.values() for c in st.pop("calib")]
        rows = {**per_group, "overall": tot}
        results[srcs] = {
            g: {
                "tau": st["tokens"] / st["rounds"],
                "nodes_per_round": st["nodes"] / st["rounds"],
                "speedup": st["tokens"] / st["cost"],
            }
            for g, st in rows.items()
        }
        print(f"sources {srcs} ({time.perf_counter() - t0:.1f} s)")
        for g, v in results[srcs].items():
            print(f"  {g:<15} tau {v['tau']:.2f}  nodes/round {v['nodes_per_round']:.2f}  speedup {v['speedup']:.2f}x")
        results[srcs]["calibration"] = calibration(calib)
        for name, rows_c in results[srcs]["calibration"].items():
            print(
                f"  calibration {name}: "
                + "  ".join(f"{lo:.1f}+: {n} est {e:.2f} got {a:.2f}" for lo, n, e, a in rows_c)
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "results": results}, f, indent=2)


def longest_copy(ctx: list[int], future: list[int], anchor: int | None) -> int:
    """Length of the longest prefix of `future` found in ctx at some position j (after a token
    equal to `anchor` when it is given)."""
    best = 0
    for j in range(1 if anchor is not None else 0, len(ctx)):
        if anchor is not None and ctx[j - 1] != anchor:
            continue
        n = 0
        while n < len(future) and j + n < len(ctx) and ctx[j + n] == future[n]:
            n += 1
        if n > best:
            best = n
            if best == len(future):
                break
    return best


def oracle_draft(kind: str, ctx: list[int], future: list[int], successors: dict[int, set[int]]) -> int:
    """Nodes an oracle of `kind` drafts and gets accepted (bound's docstring above)."""
    if kind == "copy":
        return longest_copy(ctx, future, None)
    n = longest_copy(ctx, future, ctx[-1])
    if kind == "successor" and future and future[0] in successors.get(ctx[-1], ()):
        n = max(n, 1 + longest_copy(ctx, future[1:], future[0]))
    return n


def bound(args) -> None:
    recs = [json.loads(line) for line in open(args.recording)]
    cost = [float(c) for c in args.cost.split(",")] if args.cost else []
    results = {}
    for kind in ("copy", "anchored", "successor"):
        per_group: dict[str, list[float]] = {}
        successors: dict[int, set[int]] = {}  # one session, as token recycling's table ("successor" only)
        for r in recs:
            prompt, out = r["prompt"], r["output"]
            st = per_group.setdefault(r["group"], [0, 0, 0.0])  # tokens, rounds, cost
            i = 0
            while i < len(out):
                ctx = prompt + out[:i]
                n = min(oracle_draft(kind, ctx, out[i : i + args.depth], successors), len(out) - i - 1)
                st[0] += n + 1
                st[1] += 1
                st[2] += (cost[min(n, len(cost) - 1)] if cost else 1.0) + (args.round_cost if n else 0.0)
                if kind == "successor":  # the rows this round verified: their top k join the table
                    for j in range(i, min(i + n + 1, len(r["topk"]))):
                        successors[ctx[-1] if j == i else out[j - 1]] = set(r["topk"][j][:4])
                i += n + 1
        tot = [sum(v[k] for v in per_group.values()) for k in range(3)]
        results[kind] = {
            g: {"tau": v[0] / v[1], "speedup": v[0] / v[2]} for g, v in {**per_group, "overall": tot}.items()
        }
        print(f"oracle {kind} (depth {args.depth})")
        for g, v in results[kind].items():
            print(f"  {g:<15} tau {v['tau']:.2f}  speedup {v['speedup']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "results": results}, f, indent=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="record plain greedy outputs and their top-k")
    r.add_argument("--model")
    r.add_argument("--prompts", default="tests/data/spec_bench_prompts.jsonl")
    r.add_argument("--limit", type=int, default=10)
    r.add_argument("--max-tokens", type=int, default=256)
    r.add_argument("--threads", type=int, default=0)
    r.add_argument("-o", "--output", required=True)
    s = sub.add_parser("simulate", help="simulate token-tree rounds over a recording")
    s.add_argument("recording")
    s.add_argument("--model")
    s.add_argument("--sources", default=";".join(SOURCE_SETS), help="source sets separated by ';'")
    s.add_argument("--n-max", type=int, default=8)
    s.add_argument("--cost", default="", help="verify cost curve cost[0..]: 1,1.1,... (empty: verify n_max)")
    s.add_argument(
        "--round-cost",
        type=float,
        default=0.0,
        help="a verify round's fixed cost beyond the curve, in plain steps (a GPU's wait and launch: ~0.1)",
    )
    s.add_argument("--chain", action="store_true", help="verify only the likeliest path")
    s.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=INT",
        help="a draft source limit of TreeParams (lookup_depth=8, suffix_branches=2, ...); repeatable",
    )
    s.add_argument("--json")
    b = sub.add_parser("bound", help="the ceiling of text-copy drafts on a recording (an oracle)")
    b.add_argument("recording")
    b.add_argument("--depth", type=int, default=24, help="longest chain drafted (default 24: lookup_depth)")
    b.add_argument("--cost", default="", help="verify cost curve cost[0..], as for simulate (empty: 1)")
    b.add_argument("--round-cost", type=float, default=0.0)
    b.add_argument("--json")
    args = ap.parse_args()
    {"record": record, "simulate": simulate, "bound": bound}[args.cmd](args)


if __name__ == "__main__":
    main()
