"""Self-speculative decoding: lossless greedy and sampled output, plans (skips, parallel groups,
early exit, draft head, KV views), and the policies."""

import json
import os

import numpy as np
import pytest
from reference import Reference
from smollm2_cases import PLANS, chat_ids, plain_greedy
from tiny_model import write_tiny_llama

import apls
from apls import _core
from apls.kv_policy import KVViewPolicy
from apls.plan import Plan
from apls.policy import AdaptivePolicy, DraftLength, RoundResult, StaticPolicy

GREEDY = apls.SamplingParams(temperature=0.0)

PROMPTS = [
    "Explain how a rainbow forms.",
    "Write a haiku about autumn.",
    "What is 17 times 23?",
    "List three uses of copper.",
    "Summarize the plot of Romeo and Juliet.",
    "def fibonacci(n):",
    "Translate 'good morning' into French.",
    "Why is the sky blue?",
    "Give me a recipe for pancakes.",
    "What causes inflation?",
    "Describe the water cycle.",
    "Who wrote Pride and Prejudice?",
    "How do vaccines work?",
    "Name the planets of the solar system.",
    "What is a prime number?",
    "Write a short poem about the sea.",
    "How does a bicycle stay upright?",
    "What is machine learning?",
    "Tell me a fun fact about octopuses.",
    "What is the capital of Australia?",
]


@pytest.fixture(scope="module")
def model(smollm2_path):
    return apls.Model(smollm2_path, n_ctx=512)


# Under ASan+UBSan (tools/test_sanitized.sh) the long identity runs take a few prompts: the
# same code paths, a tenth of the time (the plain build runs them all).
SANITIZED = bool(os.environ.get("APLS_SANITIZED"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PLANS))
def test_greedy_identical_to_plain_decoding(model, name):
    plan = PLANS[name]
    for text in PROMPTS[:2] if SANITIZED else PROMPTS:
        ids = chat_ids(model, text)
        want = plain_greedy(model, ids, 64)
        policy = StaticPolicy(plan, DraftLength(n_max=4, p_min=0.0))
        got = list(model.generate_tokens(ids, 64, GREEDY, ignore_eos=True, speculative=True, policy=policy))
        assert got == want, (name, text)
        st = model.last_stats
        assert st.n_rounds < 64  # something was accepted: the draft is not useless
        if model.device == "cpu":  # the CPU learns each drafted token as it is made
            assert st.n_draft_waits == st.n_drafted
        else:  # a GPU queues a draft without a confidence stop as one chain (one wait), else per token
            assert 0 < st.n_draft_waits <= st.n_drafted


@pytest.mark.slow
def test_greedy_identical_with_kv_view_and_adaptive_policy(model):
    policy = AdaptivePolicy([PLANS["skip"], PLANS["early-exit"]], explore_every=3)
    policy.kv = KVViewPolicy(n_sink=4, n_window=16, min_context=0)  # a tiny window: sinks + 16
    for text in PROMPTS[:3] if SANITIZED else PROMPTS[:8]:
        ids = chat_ids(model, text)
        got = model.generate_tokens(ids, 64, GREEDY, ignore_eos=True, speculative=True, policy=policy)
        assert list(got) == plain_greedy(model, ids, 64)


def test_generate_text_api_and_stats(model):
    prompt = model.chat_prompt([{"role": "user", "content": "What is a prime number?"}])
    want = model.generate(prompt, 48, temperature=0, add_special=False, parse_special=True)
    policy = StaticPolicy(PLANS["skip"])
    got = model.generate(
        prompt, 48, temperature=0, add_special=False, parse_special=True, speculative=True, policy=policy
    )
    assert got == want
    st = model.last_stats
    assert st.n_rounds > 0 and 1.0 <= st.tau <= 9.0 and 0.0 <= st.acceptance <= 1.0
    assert st.n_accepted == sum(st.accepted_at) and st.n_drafted == sum(st.drafted_at)


# ---- plans against the NumPy reference ------------------------------------------------------


def test_parallel_groups_match_their_definition(smollm2_f16_path):
    # The CPU's summation order (the GPU's groups: tests/test_cuda.py, against the CPU).
    m = _core.Model(smollm2_f16_path, True, "cpu")
    plan = Plan.skipping([3], [5], groups=[(8, 10), (20, 21)])
    layers = plan.layers(m.n_layer)
    toks = np.array([1, 504, 2365, 6354, 16438, 27003, 690, 260], np.int32)
    ours = _core.Context(m, n_ctx=64, kv_type="f32").decode(toks, logits="all", plan=layers)
    ref = Reference(smollm2_f16_path, plan=(layers.attn, layers.mlp, plan.groups)).forward(list(toks))
    err = max(float(np.linalg.norm(ours[t] - ref[t]) / np.linalg.norm(ref[t])) for t in range(len(toks)))
    assert err < 1e-5  # float32 summation order only (see test_model.py)
    full = _core.Context(m, n_ctx=64, kv_type="f32").decode(toks, logits="all")
    assert float(np.linalg.norm(full - ours)) > 1e-2 * float(np.linalg.norm(full))


def test_draft_head_restricts_logits(model):
    ctx = model.context(n_ctx=64)
    rows = ctx.decode([1, 504, 2365], logits="all", plan=Plan(head_rows=1000))
    full = model.context(n_ctx=64).decode([1, 504, 2365], logits="all")
    assert np.isneginf(rows[:, 1000:]).all()
    assert np.array_equal(rows[:, :1000], full[:, :1000])  # the same rows of the same product


def test_bad_plans_are_refused(model):
    with pytest.raises(ValueError, match="layer 30"):
        model.context(n_ctx=16).decode([1], plan=Plan.skipping([30]))
    with pytest.raises(ValueError, match="overlaps"):
        Plan.skipping(groups=[(2, 5), (4, 6)]).layers(30)
    with pytest.raises(apls.InvalidArgumentError, match="head_rows"):
        model.context(n_ctx=16).decode([1], plan=Plan(head_rows=10**6))


# ---- sampling keeps the full model's distribution --------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    return _core.Model(write_tiny_llama(path, n_layer=4, n_vocab=12, seed=3))


def chi2_critical(dof, alpha=1e-3):
    try:
        from scipy.stats import chi2

        return float(chi2.ppf(1 - alpha, dof))
    except ImportError:  # Wilson–Hilferty approximation; z(0.999) = 3.09
        return dof * (1 - 2 / (9 * dof) + 3.09 * np.sqrt(2 / (9 * dof))) ** 3


def first_two_counts(model, prefix, plan, make_sampler, n=20000):
    """(V, V) counts of the first two tokens APLS rounds (up to 3 drafts under `plan`) produce
    after `prefix`, over n runs; make_sampler(i) is run i's sampler."""
    layers = plan.layers(model.n_layer)
    counts = np.zeros((model.n_vocab, model.n_vocab))
    ctx = _core.Context(model, n_ctx=32)
    ctx.decode(np.array(prefix[:-1], np.int32))
    n_keep = ctx.kv_seq_len(0)
    for i in range(n):
        sampler = make_sampler(i)
        toks, last = [], prefix[-1]
        while len(toks) < 2:
            r = _core.spec_round(ctx, last, layers, n_draft_max=3, sampler=sampler)
            toks += r["tokens"]
            last = r["tokens"][-1]
        counts[toks[0], toks[1]] += 1
        ctx.kv_truncate(0, n_keep)
    return counts


def assert_counts_follow(counts, joint):
    """Chi-square test at significance 1e-3 of sample counts against a distribution (joint, sums
    to 1): nothing outside its support, cells expected below 5 pooled so the approximation holds."""
    expected = joint * counts.sum()
    mask = expected > 0
    assert counts[~mask].sum() == 0  # nothing outside the support of the sampler's distribution
    small = mask & (expected < 5)
    obs = list(counts[mask & ~small]) + [counts[small].sum()]
    exp = list(expected[mask & ~small]) + [expected[small].sum()]
    stat = sum((o - e) ** 2 / e for o, e in zip(obs, exp) if e > 0)
    assert stat < chi2_critical(len(obs) - 1), stat


@pytest.mark.parametrize(
    "plan",
    [Plan.skipping([1, 2], [1, 2]), Plan.skipping([0, 1, 2, 3], [0, 1, 2, 3])],
    ids=["reasonable-draft", "bad-draft"],
)
def test_sampling_keeps_the_full_model_distribution(tiny, plan):
    """Joint distribution of the first two tokens after a prefix: APLS rounds vs the full
    model's p(t1) p(t2 | t1) under the same sampler chain (temperature 0.9, top-k 8).
    Chi-square at significance 1e-3 over 12 x 12 cells with 20,000 samples."""
    prefix = [3, 7, 1]
    V = tiny.n_vocab
    chain = [("top_k", 8), ("temperature", 0.9), ("dist", 0)]
    probe = _core.Sampler.chain(chain)
    base = _core.Context(tiny, n_ctx=32)
    p1 = probe.probs(base.decode(np.array(prefix, np.int32))[-1])
    joint = np.zeros((V, V))
    for t1 in range(V):
        if p1[t1] == 0:
            continue
        c = _core.Context(tiny, n_ctx=32)
        p2 = probe.probs(c.decode(np.array(prefix + [t1], np.int32))[-1])
        joint[t1] = p1[t1] * p2
    sampler = _core.Sampler.chain([("top_k", 8), ("temperature", 0.9), ("dist", 12345)])
    assert_counts_follow(first_two_counts(tiny, prefix, plan, lambda i: sampler), joint)


def test_penalties_keep_the_full_model_distribution(tiny):
    """With penalties, each draft and verify row sees the history extended by the drafts before
    it. Joint distribution of the first two tokens after a prefix under a chain with repeat and
    presence penalties (history: the token the rounds start from), against the full model's
    p(t1 | h) p(t2 | h, t1). Chi-square at significance 1e-3, 20,000 samples."""
    prefix = [3, 7, 1]
    V = tiny.n_vocab
    chain = lambda seed: [("penalties", 64, 1.8, 0.0, 0.4), ("top_k", 8), ("temperature", 0.9), ("dist", seed)]  # noqa: E731

    def probe(*hist, seed=0):
        s = _core.Sampler.chain(chain(seed))
        for t in hist:
            s.accept(t)
        return s

    p1 = probe(prefix[-1]).probs(_core.Context(tiny, n_ctx=32).decode(np.array(prefix, np.int32))[-1])
    joint = np.zeros((V, V))
    for t1 in range(V):
        if p1[t1] > 0:
            c = _core.Context(tiny, n_ctx=32)
            joint[t1] = p1[t1] * probe(prefix[-1], t1).probs(c.decode(np.array(prefix + [t1], np.int32))[-1])
    counts = first_two_counts(tiny, prefix, Plan.skipping([1, 2], [1, 2]), lambda i: probe(prefix[-1], seed=1000 + i))
    assert_counts_follow(counts, joint)


@pytest.mark.slow
def test_greedy_with_penalties_identical_to_plain_decoding(model):
    """Greedy with a repetition penalty is not the raw argmax: the rounds pick through the
    sampler with the drafts in its history, and match plain decoding with the same settings."""
    for text in PROMPTS[:2] if SANITIZED else PROMPTS[:4]:
        prompt = model.chat_prompt([{"role": "user", "content": text}])
        kw = dict(
            temperature=0,
            repeat_penalty=1.3,
            presence_penalty=0.2,
            add_special=False,
            parse_special=True,
            ignore_eos=True,
        )
        want = model.generate(prompt, 48, **kw)
        assert want != model.generate(
            prompt, 48, temperature=0, add_special=False, parse_special=True, ignore_eos=True
        )  # the penalty matters here
        policy = StaticPolicy(PLANS["skip"], DraftLength(n_max=4, p_min=0.0))
        assert model.generate(prompt, 48, speculative=True, policy=policy, **kw) == want
        assert model.last_stats.n_accepted > 0


def test_sampler_takes_back_tried_tokens(tiny):
    """A failing round leaves the penalties' history as it was: a bad plan fails before any
    draft; a round that succeeds adds exactly its output."""
    ctx = _core.Context(tiny, n_ctx=64)
    s = _core.Sampler(temperature=0.9, repeat_penalty=1.5, presence_penalty=0.5, seed=1)
    ref = _core.Sampler(temperature=0.9, repeat_penalty=1.5, presence_penalty=0.5, seed=1)
    row = ctx.decode(np.array([1, 2], np.int32))[-1]
    with pytest.raises(apls.InvalidArgumentError):
        _core.spec_round(ctx, 1, _core.Plan(attn=np.ones(3, np.uint8)), sampler=s)  # wrong plan length
    assert list(s.probs(row)) == list(ref.probs(row))
    out = []
    for _ in range(6):  # drafts tried and rejected must leave no trace
        out += _core.spec_round(
            ctx, 3 if not out else out[-1], _core.Plan(attn=np.array([1, 0, 0, 1], np.uint8)), n_draft_max=3, sampler=s
        )["tokens"]
    for t in out:
        ref.accept(t)
    assert list(s.probs(row)) == list(ref.probs(row))
    assert not np.array_equal(
        s.probs(row), _core.Sampler(temperature=0.9, repeat_penalty=1.5, presence_penalty=0.5, seed=1).probs(row)
    )  # the history changed them


# ---- policies --------------------------------------------------------------------------------


def test_draft_length_threshold_moves_the_expected_way():
    d = DraftLength(p_min=0.5, target=0.7)
    for _ in range(20):
        d.update(8, 8)  # everything accepted: draft longer, lower threshold
    low = d.p_min
    assert low < 0.5
    for _ in range(40):
        d.update(8, 0)  # nothing accepted: shorter drafts, higher threshold
    assert d.p_min > low and d.p_min > 0.5


def test_adaptive_policy_prefers_the_faster_plan():
    a, b = Plan.skipping([1]), Plan.skipping([2])
    pol = AdaptivePolicy([a, b], explore_every=5)
    pol.start(10)
    for _ in range(60):
        step = pol.next_round(100)
        fast = step.plan == b
        pol.observe(step, RoundResult([1, 2, 3] if fast else [1], 2, 2 if fast else 0, [0.9, 0.9], 0.001, 0.001))
    runs = [pol.next_round(100).plan for _ in range(20)]
    assert sum(p == b for p in runs) >= 16  # exploration is bounded: at most 1 in 5


def test_plan_json_round_trip(tmp_path):
    p = Plan.skipping([1, 2], [3], groups=[(5, 7)], head_rows=100)
    p.save(str(tmp_path / "plan.json"), n_draft=4)
    assert Plan.load(str(tmp_path / "plan.json")) == p
    pol = StaticPolicy.from_file(str(tmp_path / "plan.json"))
    assert pol.plan == p and pol.draft.n_max == 4 and pol.adapt_length
    # A fixed draft length: p_min stays where the file puts it whatever the acceptance.
    p.save(str(tmp_path / "fixed.json"), n_draft=6, p_min=0.0, adapt_length=False)
    fixed = StaticPolicy.from_file(str(tmp_path / "fixed.json"))
    for _ in range(5):
        fixed.observe(fixed.next_round(100), RoundResult([1], 6, 0, [0.5] * 6, 0.001, 0.001))
    assert fixed.next_round(100).p_min == 0.0 and fixed.next_round(100).n_draft == 6
    (tmp_path / "bad.json").write_text(json.dumps({"skip_attn": [1], "adapt_length": "no"}))
    with pytest.raises(ValueError, match="adapt_length must be true or false"):
        StaticPolicy.from_file(str(tmp_path / "bad.json"))
    (tmp_path / "bad.json").write_text(json.dumps({"skip_atn": [1]}))
    with pytest.raises(ValueError, match="unknown plan keys"):
        Plan.load(str(tmp_path / "bad.json"))


def test_offline_search_skips_the_redundant_layers(tmp_path):
    """A model whose layers 2 and 3 are exact identities: skipping them costs no acceptance, so
    the ranking puts their four sub-blocks first."""
    from apls.tune import Calibration

    path = write_tiny_llama(tmp_path / "redundant.gguf", n_layer=6, n_vocab=32, seed=5, identity_layers=(2, 3))
    m = apls.Model(path)
    rng = np.random.default_rng(0)
    cal = Calibration(m, [list(rng.integers(0, 32, 6)) for _ in range(4)], n_gen=12)
    blocks = [(k, l) for l in range(1, 5) for k in ("attn", "mlp")]
    acc = cal.acceptance([Plan.skipping([l] if k == "attn" else [], [l] if k == "mlp" else []) for k, l in blocks])
    ranked = [blocks[i] for i in np.argsort(-acc, kind="stable")]
    assert set(ranked[:4]) == {("attn", 2), ("mlp", 2), ("attn", 3), ("mlp", 3)}
    assert acc[[blocks.index(b) for b in ranked[:4]]].min() == 1.0
    assert acc[[blocks.index(b) for b in ranked[4:]]].max() < 1.0


def test_adaptive_policy_falls_back_to_plain_decoding_when_drafts_do_not_pay():
    pol = AdaptivePolicy([Plan.skipping([1])], explore_every=10, with_plain=True)
    pol.start(10)
    for _ in range(100):
        step = pol.next_round(100)
        if step.n_draft == 0:  # plain: one token per 1 ms round
            pol.observe(step, RoundResult([7], 0, 0, [], 0.0, 0.001))
        else:  # drafting: two tokens per 4 ms round
            pol.observe(step, RoundResult([7, 8], 4, 1, [0.5] * 4, 0.003, 0.001))
    steps = [pol.next_round(100) for _ in range(30)]
    assert sum(s.n_draft == 0 for s in steps) >= 27


def test_spec_bench_rows_report_what_the_rounds_did(model, tmp_path):
    """`apls bench --speculative`'s rows: output identical to plain greedy, and the per-round
    figures consistent with each other (the CPU waits once per drafted token, so waits per round
    = drafted per round = (tau - 1) / acceptance; a GPU once per drafting round)."""
    from apls import spec_bench

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "\n".join(
            json.dumps({"category": c, "text": t})
            for c, t in [("writing", PROMPTS[0]), ("qa", PROMPTS[3]), ("qa", PROMPTS[7])]
        )
        + "\n"
    )

    def policy():
        return StaticPolicy(PLANS["skip"], DraftLength(n_max=4, p_min=0.0), adapt_length=False)

    res = spec_bench.run(model, str(prompts), policy, limit=2, max_tokens=24, log=lambda *_: None)
    rows = [res["overall"], res["groups"]["mt_bench"], res["groups"]["qa"]]
    for r in rows:
        assert r["identical"] is True and r["ar_tok_s"] > 0 and r["apls_tok_s"] > 0
        if model.device == "cpu":
            assert r["draft_waits_per_round"] == pytest.approx((r["tau"] - 1) / r["acceptance"])
            assert 1.0 < r["draft_waits_per_round"] <= 4.0
        else:  # one device chain per drafting round
            assert 0.0 < r["draft_waits_per_round"] <= 1.0
    assert set(res["groups"]) == {"mt_bench", "qa"}  # groups without prompts are left out
    assert res["overall"]["rounds"] > 0


def test_spec_bench_prompts_group_by_task(tmp_path):
    """Spec-Bench's groups; MT-bench's categories (and no category) as "mt_bench"; any other
    category its own group after those six (the repository's code prompts: two groups of 10)."""
    from apls.spec_bench import load_prompts

    f = tmp_path / "p.jsonl"
    rows = [("code_edit", "e1"), ("writing", "w"), ("rag", "r"), (None, "n"), ("coding", "c"), ("code_edit", "e2")]
    f.write_text("\n".join(json.dumps({"text": t, **({"category": c} if c else {})}) for c, t in rows) + "\n")
    g = load_prompts(str(f))
    assert list(g.items()) == [("mt_bench", ["w", "n", "c"]), ("rag", ["r"]), ("code_edit", ["e1", "e2"])]
    assert load_prompts(str(f), limit=1)["code_edit"] == ["e1"]
    code = load_prompts(os.path.join(os.path.dirname(__file__), "data", "code_prompts.jsonl"))
    assert {k: len(v) for k, v in code.items()} == {"code_completion": 10, "code_edit": 10}


def _plain_or_draft_round(step, draft_tokens=2, draft_s=0.003):
    """Fake timings: plain decoding one token per 1 ms round; a drafting round draft_tokens
    tokens in draft_s + 1 ms."""
    if step.n_draft == 0:
        return RoundResult([7], 0, 0, [], 0.0, 0.001)
    return RoundResult([7] * draft_tokens, 4, draft_tokens - 1, [0.5] * 4, draft_s, 0.001)


def test_adaptive_policy_explores_losing_drafts_less_and_less():
    """Drafts at 0.5x of plain decoding: each lost burst doubles the bursts a candidate sits out,
    and a backed-off candidate whose first round loses again ends its burst there, so over many
    generations the drafting rounds fall well below the fixed 4-in-40 exploration: three
    candidates, each probed for one round in 8 turns of 40 rounds."""
    cands = [Plan.skipping([1]), Plan.skipping([2]), Plan.skipping([3])]
    fixed = AdaptivePolicy(cands, explore_every=40, burst=4, margin=0.05, with_plain=True)
    backing = AdaptivePolicy(cands, explore_every=40, burst=4, margin=0.05, with_plain=True, max_backoff=8)
    share = {}
    for name, pol in (("fixed", fixed), ("backoff", backing)):
        drafting = total = 0
        for gen in range(12):
            pol.start(10)
            for _ in range(200):
                step = pol.next_round(100)
                pol.observe(step, _plain_or_draft_round(step))
                if gen >= 4:
                    drafting += step.n_draft != 0
                    total += 1
        share[name] = drafting / total
    assert share["fixed"] >= 0.09  # a burst of 4 in every 40 rounds
    assert share["backoff"] <= 3 / 320 + 0.001  # one probe round in 8 turns for each candidate
    assert [a.backoff for a in backing.arms[1:]] == [8, 8, 8]


def test_adaptive_policy_starts_a_generation_with_the_best_so_far_and_finds_a_new_winner():
    """The prior of earlier generations picks the first arm of a new one; when drafting turns
    faster (a text that drafts well), the backed-off candidates are still explored and win."""
    pol = AdaptivePolicy([Plan.skipping([1])], explore_every=10, burst=2, margin=0.05, with_plain=True, max_backoff=4)
    for _ in range(3):  # drafting loses: two tokens in 4 ms
        pol.start(10)
        for _ in range(100):
            step = pol.next_round(100)
            pol.observe(step, _plain_or_draft_round(step))
    pol.start(10)
    assert pol.next_round(100).n_draft == 0 and pol.arms[1].backoff == 4
    for _ in range(200):  # now drafting wins: four tokens in 1.5 ms
        step = pol.next_round(100)
        pol.observe(step, _plain_or_draft_round(step, draft_tokens=4, draft_s=0.0005))
    steps = [pol.next_round(100) for _ in range(20)]
    assert sum(s.n_draft != 0 for s in steps) >= 16 and pol.arms[1].backoff == 1
    pol.start(10)  # a generation where drafting turns slow again: plain takes over by its end,
    for _ in range(200):
        step = pol.next_round(100)
        pol.observe(step, _plain_or_draft_round(step))
    assert pol.current == 0
    pol.start(10)  # but the next starts with the best speed so far (drafting), not the last winner
    assert pol.next_round(100).n_draft != 0


def test_adaptive_policy_never_backs_off_a_close_second():
    """Plain decoding 10% behind a draft that runs: it keeps being explored at every turn (only a
    candidate clearly slower than the running one backs off), so it can take over again."""
    pol = AdaptivePolicy([Plan.skipping([1])], explore_every=10, burst=2, margin=0.05, with_plain=True, max_backoff=8)
    pol.start(10)
    plain_rounds = 0
    for i in range(300):  # drafting: two tokens per 1.8 ms; plain: one token per 1 ms
        step = pol.next_round(100)
        pol.observe(step, _plain_or_draft_round(step, draft_tokens=2, draft_s=0.0008))
        plain_rounds += i >= 100 and step.n_draft == 0
    assert pol.current == 1  # the draft runs,
    assert pol.arms[0].backoff == 1 and pol.arms[0].skip == 0  # plain is not backed off
    assert plain_rounds == 2 * 200 // 10  # and is explored at every turn


def test_adaptive_policy_runs_plain_stretches_up_to_the_next_burst():
    """With plain_chain, a plain round takes the steps up to the next exploration burst (at most
    plain_chain), each counted as a round: the same arms run at the same steps as with one step
    per round, in far fewer rounds."""

    def run(chain):
        pol = AdaptivePolicy(
            [Plan.skipping([1])],
            explore_every=40,
            burst=4,
            margin=0.05,
            with_plain=True,
            max_backoff=8,
            plain_chain=chain,
        )
        arms, rounds = [], 0
        for _ in range(3):
            pol.start(10)
            n = 0
            while n < 400:
                step = pol.next_round(100)
                k = min(step.n_plain, 400 - n) if step.n_draft == 0 else 1
                assert 1 <= step.n_plain <= chain
                r = RoundResult([7] * k, 0, 0, [], 0.0, 0.001 * k) if step.n_draft == 0 else _plain_or_draft_round(step)
                pol.observe(step, r)
                arms += [step.arm] * len(r.tokens)
                n += len(r.tokens)
                rounds += 1
        return arms, rounds

    one, one_rounds = run(1)
    chained, chained_rounds = run(16)
    assert chained == one
    assert 0 < one.count(1) < len(one) // 10  # drafts are explored, and lose
    assert chained_rounds < one_rounds // 4
