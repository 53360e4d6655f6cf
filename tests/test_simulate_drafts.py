"""tools/simulate_drafts.py's `bound`: the ceiling of text-copy drafts on a recording, against a
brute-force search and a hand-computed example."""

import json
import sys

import numpy as np
from conftest import tool_module

sd = tool_module("simulate_drafts")


def brute_longest(ctx, future, anchor):
    """Every (position, length) pair tried: the longest prefix of future found in ctx."""
    best = 0
    for j in range(len(ctx)):
        if anchor is not None and (j == 0 or ctx[j - 1] != anchor):
            continue
        for n in range(1, len(future) + 1):
            if ctx[j : j + n] == future[:n]:
                best = max(best, n)
    return best


def test_longest_copy_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(300):
        ctx = [int(t) for t in rng.integers(0, 4, rng.integers(1, 30))]
        future = [int(t) for t in rng.integers(0, 4, rng.integers(1, 8))]
        for anchor in (None, int(rng.integers(0, 4))):
            assert sd.longest_copy(ctx, future, anchor) == brute_longest(ctx, future, anchor)


def test_bound_on_a_hand_made_recording(tmp_path, capsys, monkeypatch):
    # prompt 1 2 3 4 5, output 3 4 5 9.
    # copy: "3 4 5" is in the prompt, then the bonus 9: one round of 4 tokens (tau 4), verify cost[3].
    # anchored: nothing follows a 5 -> a plain step (3); then after the 3 at position 2, "4 5"
    # matches and 9 is the bonus: 2 rounds, 4 tokens (tau 2), cost 1 + cost[2] + round cost.
    rec = tmp_path / "rec.jsonl"
    rec.write_text(json.dumps({"group": "g", "prompt": [1, 2, 3, 4, 5], "output": [3, 4, 5, 9], "topk": []}) + "\n")
    out = tmp_path / "bound.json"
    argv = ["simulate_drafts.py", "bound", str(rec), "--cost", "1,1.1,1.2,1.3", "--round-cost", "0.1"]
    monkeypatch.setattr(sys, "argv", argv + ["--json", str(out)])
    sd.main()
    res = json.loads(out.read_text())["results"]
    assert res["copy"]["g"]["tau"] == 4.0
    assert abs(res["copy"]["g"]["speedup"] - 4 / 1.4) < 1e-12
    assert res["anchored"]["g"]["tau"] == 2.0
    assert abs(res["anchored"]["g"]["speedup"] - 4 / (1 + 1.2 + 0.1)) < 1e-12
    assert "oracle anchored" in capsys.readouterr().out


def test_successor_oracle_copies_after_a_learned_first_token(tmp_path, monkeypatch):
    # One session of two texts. The first teaches the successor table that 1 follows 8 (its
    # verified rows' top tokens). In the second, nothing in the text follows an 8 (anchored: plain
    # steps), but 1 is a known successor of 8 and "2 4" follows the 1 of the prompt: 1 2 4 and the
    # bonus 3 in one round. Hand-counted rounds / tokens: copy 4 / 7, anchored 5 / 7, successor 4 / 7.
    rec = tmp_path / "rec.jsonl"
    rows = [
        {"group": "g", "prompt": [7, 8], "output": [1, 2], "topk": [[1], [2]]},
        {"group": "g", "prompt": [9, 1, 2, 4], "output": [8, 1, 2, 4, 3], "topk": [[8], [1], [2], [4], [3]]},
    ]
    rec.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "bound.json"
    monkeypatch.setattr(sys, "argv", ["simulate_drafts.py", "bound", str(rec), "--json", str(out)])
    sd.main()
    res = json.loads(out.read_text())["results"]
    assert res["copy"]["g"]["tau"] == 7 / 4
    assert res["anchored"]["g"]["tau"] == 7 / 5
    assert res["successor"]["g"]["tau"] == 7 / 4
