"""Token-tree speculative decoding: every draft source (layer skip, prompt lookup, suffix index,
token recycling), alone and combined, keeps greedy output identical to plain decoding and sampled
output distributed as the full model's; rounds leave nothing of rejected nodes in the cache; the
verify cost model and the policies' use of the sources."""

import os

import numpy as np
import pytest
from smollm2_cases import PLANS, chat_ids, plain_greedy
from test_speculative import assert_counts_follow
from tiny_model import write_tiny_llama

import apls
from apls import _core
from apls.plan import Plan
from apls.policy import (
    DRAFT_SOURCES,
    AdaptivePolicy,
    DraftLength,
    RoundPlan,
    RoundResult,
    StaticPolicy,
    TreeShape,
    VerifyCost,
    make_policy,
    parse_draft,
)

GREEDY = apls.SamplingParams(temperature=0.0)

# Twenty short prompts, several of them asking to repeat or rework text they contain, where the
# model-free sources find what to propose.
PROMPTS = [
    "Repeat this sentence twice: the quick brown fox jumps over the lazy dog.",
    "Copy the list exactly: apples, pears, plums, cherries, apples, pears, plums.",
    "Explain how a rainbow forms.",
    "Write the numbers from one to twenty in words.",
    "Summarize: The cat sat on the mat. The cat was happy on the mat because the mat was warm.",
    "def fibonacci(n):",
    "Translate 'good morning, good evening, good night' into French.",
    "Why is the sky blue?",
    "Spell the word banana letter by letter, then spell it again.",
    "List the days of the week, then list them again backwards.",
    "Describe the water cycle.",
    "Who wrote Pride and Prejudice?",
    "Rewrite with capital letters: hello world, hello moon, hello sun.",
    "Name the planets of the solar system.",
    "What is a prime number? Give the first ten primes.",
    "Write a short poem about the sea where every line starts with 'The sea'.",
    "How does a bicycle stay upright?",
    "Echo back: A B C D E F G, A B C D E F G.",
    "Tell me a fun fact about octopuses.",
    "What is the capital of Australia?",
]
N_GEN = 16


@pytest.fixture(scope="module")
def model(smollm2_path):
    return apls.Model(smollm2_path, n_ctx=512)


# Under ASan+UBSan (tools/test_sanitized.sh) the identity runs take a third of the prompts and the
# default policy's runs fewer prompts or tokens: the same code paths in less time (the plain build
# runs them all).
SANITIZED = bool(os.environ.get("APLS_SANITIZED"))
IDENTITY_PROMPTS = PROMPTS[::3] if SANITIZED else PROMPTS


@pytest.fixture(scope="module")
def plain(model):
    """Plain greedy outputs of IDENTITY_PROMPTS (computed once for every configuration)."""
    return {t: plain_greedy(model, chat_ids(model, t), N_GEN) for t in IDENTITY_PROMPTS}


def forced(sources, plan=None, n_nodes=6):
    """A policy whose every round drafts from `sources` and verifies up to n_nodes nodes,
    whatever they cost (so that each source is exercised on the CPU too)."""
    text = tuple(s for s in sources if s != "skip")
    tree = TreeShape(text, n_nodes=n_nodes, use_cost=False) if text else None
    skip = "skip" in sources
    return StaticPolicy(
        plan or PLANS["skip"], DraftLength(n_max=4, p_min=0.0), adapt_length=False, tree=tree, skip=skip
    )


@pytest.mark.parametrize(
    "sources",
    [("skip",), ("lookup",), ("suffix",), ("recycle",), DRAFT_SOURCES],
    ids=["skip", "lookup", "suffix", "recycle", "all"],
)
def test_greedy_identical_for_every_source_alone_and_combined(model, plain, sources):
    """Over 20 prompts, one policy (one session: the suffix index and the successor table keep
    what earlier prompts left): the output equals plain greedy decoding, and each source had
    nodes verified and accepted, so the comparison is not vacuous."""
    policy = forced(sources)
    drafted, accepted = np.zeros(len(DRAFT_SOURCES), int), np.zeros(len(DRAFT_SOURCES), int)
    for text in IDENTITY_PROMPTS:
        ids = chat_ids(model, text)
        got = list(model.generate_tokens(ids, N_GEN, GREEDY, ignore_eos=True, speculative=True, policy=policy))
        assert got == plain[text], (sources, text)
        drafted += model.last_stats.drafted_by
        accepted += model.last_stats.accepted_by
    for s in sources:
        i = DRAFT_SOURCES.index(s)
        assert drafted[i] > 0 and accepted[i] > 0, (s, drafted, accepted)
    for i, s in enumerate(DRAFT_SOURCES):
        if s not in sources:
            assert drafted[i] == 0


@pytest.mark.parametrize("draft", [None, "all"])
def test_default_generate_equals_plain_generate(model, draft):
    """The user's path: Model.generate_tokens(speculative=True) with the default adaptive policy
    (which starts with plain decoding and explores the drafting arms every 40 rounds), and with
    every source (the layer-skip plans too), returns the tokens plain Model.generate_tokens returns, greedy, on prompts
    that repeat text (the model-free sources have something to propose) and one that does not."""
    policy = make_policy("adaptive", model, draft=draft)  # one session over the prompts
    rounds = 0
    for text in [PROMPTS[i] for i in ((0, 17) if SANITIZED else (0, 2, 17))]:
        ids = chat_ids(model, text)
        want = list(model.generate_tokens(ids, 80, GREEDY, ignore_eos=True))
        got = list(model.generate_tokens(ids, 80, GREEDY, ignore_eos=True, speculative=True, policy=policy))
        assert got == want, (draft, text)
        rounds += model.last_stats.n_verify_rounds
    assert rounds > 0  # some rounds verified drafts: not plain decoding throughout


def test_adaptive_policy_runs_text_rounds_back_to_back(model, monkeypatch):
    """With round_chain (a GPU's default: 16), the model-free arm's rounds run several to a call
    of Context.spec_tree_round; the output stays plain greedy decoding's and the statistics
    count every round (verify rounds = the steps the calls returned)."""
    from apls.model import Context

    calls = []
    real = Context.spec_tree_round

    def spy(self, *a, **k):
        r = real(self, *a, **k)
        calls.append((k.get("max_rounds", 1), len(r.steps)))
        return r

    monkeypatch.setattr(Context, "spec_tree_round", spy)
    policy = make_policy("adaptive", model)
    policy.round_chain = 8
    steps = 0
    n_gen = 48 if SANITIZED else 80
    for text in [PROMPTS[i] for i in (0, 1, 17)]:
        ids = chat_ids(model, text)
        want = list(model.generate_tokens(ids, n_gen, GREEDY, ignore_eos=True))
        n0 = len(calls)
        got = list(model.generate_tokens(ids, n_gen, GREEDY, ignore_eos=True, speculative=True, policy=policy))
        assert got == want, text
        steps_here = sum(n for _, n in calls[n0:])
        assert model.last_stats.n_verify_rounds == steps_here
        steps += steps_here
    assert any(n > 1 for _, n in calls) and all(n <= m for m, n in calls)
    assert steps > len(calls)  # fewer calls than rounds


def test_rejected_nodes_leave_no_trace(model):
    """After tree rounds the cache holds exactly the prompt and the output (blocks, entries,
    invariants), and its K/V are those of a fresh decode: the next token's logits are
    bit-identical."""
    ids = chat_ids(model, PROMPTS[1])
    ctx, drafter, params, last = _round_state(model, ids, n_ctx=512, n_nodes=6)
    out, rejected = [last], 0
    while len(out) < 40:
        r = ctx.spec_tree_round(out[-1], drafter, params)
        rejected += r.n_drafted - r.n_accepted
        out += r.tokens
    assert rejected > 0  # something was rolled back
    assert drafter.text == ids + out
    ctx.kv.check()
    st = ctx.kv.stats()
    n = len(ids) + len(out) - 1
    assert ctx.kv_seq_len() == n and st["entries"] == n and st["tokens"] == n
    assert st["blocks_used"] == -(-n // st["block_size"])
    got = ctx.decode([out[-1]], logits="last")[-1]
    fresh = model.context(n_ctx=512)
    fresh.prefill(ids + out[:-1])
    assert np.array_equal(got, fresh.decode([out[-1]], logits="last")[-1])


def test_rounds_accept_the_longest_path_plain_decoding_follows(model):
    """Before each round, the tree it will verify (draft_tree: the same sources, state and cut);
    the round must accept exactly the longest root-to-node path that plain greedy decoding
    follows, then the token plain decoding has next. Many of the trees branch."""
    ids = chat_ids(model, PROMPTS[4])
    want = plain_greedy(model, ids, 64)
    ctx = model.context(n_ctx=512)
    ctx.prefill(ids)
    drafter = _core.Drafter(model._model)
    drafter.start(np.array(ids, np.int32))
    drafter.append(np.array(want[:1], np.int32))
    params = _core.TreeParams()
    params.sources = (1 << len(DRAFT_SOURCES)) - 2  # every model-free source
    params.n_nodes_max = 8
    out, branched, accepted = want[:1], 0, 0
    while len(out) < 56:
        tree = _core.draft_tree(drafter, params, 8)
        toks, parents = tree.tokens, tree.parents
        branched += len(set(parents)) < len(parents)
        path, at = [], -1
        while True:
            nxt = [i for i, (t, p) in enumerate(zip(toks, parents)) if p == at and t == want[len(out) + len(path)]]
            if not nxt:
                break
            at = nxt[0]
            path.append(at)
        r = ctx.spec_tree_round(out[-1], drafter, params)
        assert r.n_drafted == len(toks) and r.n_accepted == len(path)
        assert r.tokens == want[len(out) : len(out) + len(path) + 1]
        out += r.tokens
        accepted += r.n_accepted
    assert branched > 0 and accepted > 0


def _round_state(model, ids, n_ctx=256, n_nodes=8):
    """A context holding the prompt `ids`, a drafter whose text ends with the first token (the
    prompt's greedy choice) and round parameters drafting from every model-free source."""
    ctx = model.context(n_ctx=n_ctx)
    first = int(np.argmax(ctx.prefill(ids)))
    drafter = _core.Drafter(model._model)
    drafter.start(np.array(ids, np.int32))
    drafter.append(np.array([first], np.int32))
    params = _core.TreeParams()
    params.sources = (1 << len(DRAFT_SOURCES)) - 2  # every model-free source
    params.n_nodes_max = n_nodes
    return ctx, drafter, params, first


def test_rounds_back_to_back_equal_rounds_one_by_one(model):
    """spec_tree_round(max_rounds=k): the tokens, per-round steps and the cache of k rounds run
    one call at a time (the same sources, state and cut), and plain greedy decoding's tokens;
    max_tokens ends the call at the first round reaching it."""
    ids = chat_ids(model, PROMPTS[4])
    want = plain_greedy(model, ids, 64)
    ctx1, d1, params, _ = _round_state(model, ids)
    singles, out = [], want[:1]
    for _ in range(6):
        r = ctx1.spec_tree_round(out[-1], d1, params)
        assert len(r.steps) == 1 and r.steps[0][1:3] == (r.n_drafted, r.n_accepted)
        singles.append(r)
        out += r.tokens
    ctx2, d2, _, _ = _round_state(model, ids)
    r = ctx2.spec_tree_round(want[0], d2, params, max_rounds=6, stop_at_eog=False)
    assert r.tokens == out[1:] == want[1 : len(out)]
    assert [s[1:3] for s in r.steps] == [(x.n_drafted, x.n_accepted) for x in singles]
    assert r.n_drafted == sum(x.n_drafted for x in singles) and r.n_accepted == sum(x.n_accepted for x in singles)
    assert r.t_verify_s == pytest.approx(sum(s[3] for s in r.steps))
    assert ctx2.kv_seq_len() == ctx1.kv_seq_len() == len(ids) + len(out) - 1
    assert d2.text == d1.text
    assert sum(x.n_accepted for x in singles) > 0  # rounds accepted drafts: not plain steps only
    # max_tokens: the call ends after the round that reached it
    ctx3, d3, _, _ = _round_state(model, ids)
    r3 = ctx3.spec_tree_round(want[0], d3, params, max_rounds=6, max_tokens=3, stop_at_eog=False)
    n_first = next(i + 1 for i in range(6) if sum(len(x.tokens) for x in singles[: i + 1]) >= 3)
    assert len(r3.steps) == n_first and r3.tokens == want[1 : 1 + len(r3.tokens)]


def test_rounds_back_to_back_end_at_the_end_of_generation_or_a_full_cache(model):
    """A call of many rounds ends after the round that produced an end-of-generation token
    (unless stop_at_eog is off), and before a round the cache has no room for: what it returns
    is what the rounds before made, and the next call reports the full cache."""
    ids = chat_ids(model, PROMPTS[4])
    want = plain_greedy(model, ids, 48)
    assert any(model.is_eog(t) for t in want[1:40])  # the fixture's premise: it ends early
    end = next(i for i, t in enumerate(want) if i > 0 and model.is_eog(t))
    ctx, drafter, params, _ = _round_state(model, ids)
    r = ctx.spec_tree_round(want[0], drafter, params, max_rounds=64)
    assert r.tokens[:end] == want[1 : end + 1] and model.is_eog(r.tokens[end - 1])
    before_last = sum(1 + s[0] + s[2] for s in r.steps[:-1])
    assert before_last < end <= len(r.tokens)  # the last round made the end token
    # a full cache: n_ctx leaves room for a few rounds only
    small, d, _, _ = _round_state(model, ids, n_ctx=len(ids) + 12)
    r = small.spec_tree_round(want[0], d, params, max_rounds=64, stop_at_eog=False)
    assert len(r.steps) > 1 and r.tokens == want[1 : 1 + len(r.tokens)]
    assert small.kv_seq_len() == len(ids) + len(r.tokens)  # the cache full (its blocks): the call ended there
    with pytest.raises(apls.KVCacheFullError):
        small.spec_tree_round(r.tokens[-1], d, params, max_rounds=64, stop_at_eog=False)
    assert small.kv_seq_len() == len(ids) + len(r.tokens) and d.text[-1] == r.tokens[-1]
    with pytest.raises(apls.InvalidArgumentError, match="max_rounds"):
        ctx.spec_tree_round(r.tokens[-1], drafter, params, max_rounds=0)


def _plain_step_rounds(model, ids, n_tokens, want):
    """Rounds (lookup and suffix; drafts must earn their place by the cost model; up to six plain
    steps a round) until n_tokens came out, each checked against plain decoding's tokens `want`:
    its tokens its plain steps, accepted nodes and the verifier's token, and after it the cache
    and the drafter's text. Returns the rounds."""
    ctx, drafter, params, _ = _round_state(model, ids)
    params.sources = sum(1 << DRAFT_SOURCES.index(s) for s in ("lookup", "suffix"))
    params.verify_cost = [1.0 + 0.25 * i for i in range(9)]
    params.max_plain_steps = 6
    out, rounds = want[:1], []
    while len(out) < n_tokens:
        r = ctx.spec_tree_round(out[-1], drafter, params)
        assert len(r.tokens) == r.n_plain_steps + r.n_accepted + 1 and r.n_plain_steps <= 6
        assert r.steps == [(r.n_plain_steps, r.n_drafted, r.n_accepted, r.t_verify_s, r.t_plain_s)]
        assert r.tokens == want[len(out) : len(out) + len(r.tokens)]
        out += r.tokens
        assert ctx.kv_seq_len() == len(ids) + len(out) - 1 and drafter.text == list(ids) + out
        rounds.append(r)
    return rounds


@pytest.mark.parametrize("ahead", ["0", "1"], ids=["one_by_one", "queued_ahead"])
def test_plain_steps_until_a_draft_pays_keep_the_tokens(model, monkeypatch, ahead):
    """A round whose first step drafts nothing runs plain steps (Context.greedy_while) until the
    model-free sources propose what the cost model verifies, then verifies that draft: plain
    decoding's tokens, the cache and the drafter's text after every round. APLS_PLAIN_AHEAD=1
    queues each step before the host has seen the token before it, as on a GPU: the step running
    when a draft starts to pay completes first, so those rounds verify one token later."""
    monkeypatch.setenv("APLS_PLAIN_AHEAD", ahead)
    ids = chat_ids(model, PROMPTS[1])
    want = plain_greedy(model, ids, 80)
    rounds = _plain_step_rounds(model, ids, 72, want)
    assert any(r.n_plain_steps and r.n_accepted for r in rounds)  # plain steps, then an accepted draft
    if ahead == "1":  # against the rounds one step at a time: the same tokens, other round ends
        monkeypatch.setenv("APLS_PLAIN_AHEAD", "0")
        one_by_one = _plain_step_rounds(model, ids, 72, want)
        assert [r.n_plain_steps for r in rounds] != [r.n_plain_steps for r in one_by_one]


def test_round_refuses_bad_input_and_leaves_state(model):
    ctx = model.context(n_ctx=64)
    ctx.prefill([1, 2, 3])
    drafter = _core.Drafter(model._model)
    drafter.start(np.array([1, 2, 3, 4], np.int32))
    params = _core.TreeParams()
    with pytest.raises(apls.InvalidArgumentError, match="must end with the round's last token"):
        ctx.spec_tree_round(5, drafter, params)
    params.verify_cost = [1.0, float("nan")]
    with pytest.raises(apls.InvalidArgumentError, match=r"verify_cost\[1\]"):
        ctx.spec_tree_round(4, drafter, params)
    params.verify_cost = []
    params.sources = 1 << 7
    with pytest.raises(apls.InvalidArgumentError, match="sources"):
        ctx.spec_tree_round(4, drafter, params)
    assert ctx.kv_seq_len() == 3 and drafter.text == [1, 2, 3, 4]
    with pytest.raises(apls.InvalidArgumentError, match="out of range"):
        drafter.append(np.array([model.n_vocab], np.int32))
    assert drafter.text == [1, 2, 3, 4]


# ---- sampling keeps the full model's distribution --------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_tree") / "tiny.gguf"
    return _core.Model(write_tiny_llama(path, n_layer=4, n_vocab=12, seed=3))


@pytest.mark.parametrize("with_skip", [False, True], ids=["text-sources", "text-and-skip"])
def test_sampling_with_text_candidates_keeps_the_distribution(tiny, with_skip):
    """Joint distribution of the first two tokens after a prefix in which token 5 was followed
    by 1, 3 and 6 (prompt lookup proposes all three after it, the suffix index too, recycling
    its successors; with_skip: the layer-skip draft's sampled chain joins them, so a node's
    siblings mix one-hot proposals and draws from q), against the full model's p(t1) p(t2 | t1)
    under the same sampler chain. Chi-square at significance 1e-3 over 12 x 12 cells with 20,000
    samples. (Checked to fail when the rejected one-hot candidate is left in the residual, or
    when a rejected draw's residual is left at p instead of norm(max(0, p - q)).)"""
    prefix = [5, 1, 2, 5, 3, 4, 5, 6, 7, 5]
    V = tiny.n_vocab
    chain = [("top_k", 8), ("temperature", 0.9)]
    probe = _core.Sampler.chain([*chain, ("dist", 0)])
    p1 = probe.probs(_core.Context(tiny, n_ctx=32).decode(np.array(prefix, np.int32))[-1])
    joint = np.zeros((V, V))
    for t1 in range(V):
        if p1[t1] > 0:
            c = _core.Context(tiny, n_ctx=32)
            joint[t1] = p1[t1] * probe.probs(c.decode(np.array(prefix + [t1], np.int32))[-1])
    sampler = _core.Sampler.chain([*chain, ("dist", 12345)])
    params = _core.TreeParams()
    params.sources = (1 << len(DRAFT_SOURCES)) - (1 if with_skip else 2)
    params.n_nodes_max = 4
    params.skip_n_max = 2
    plan = Plan.skipping([1, 2], [1, 2]).layers(tiny.n_layer) if with_skip else None
    ctx = _core.Context(tiny, n_ctx=32)
    ctx.decode(np.array(prefix[:-1], np.int32))
    n_keep = ctx.kv_seq_len(0)
    drafter = _core.Drafter(tiny)
    counts = np.zeros((V, V))
    drafted = skipped = 0
    for _ in range(20000):
        drafter.start(np.array(prefix, np.int32))
        toks, last = [], prefix[-1]
        while len(toks) < 2:
            r = _core.spec_tree_round(ctx, drafter, last, params, plan, sampler=sampler)
            toks += r["tokens"]
            last = r["tokens"][-1]
            drafted += r["n_drafted"]
            skipped += r["n_skip_drafted"]
        counts[toks[0], toks[1]] += 1
        ctx.kv_truncate(0, n_keep)
    assert drafted > 20000  # candidates were verified in (nearly) every run
    assert (skipped > 10000) == with_skip  # the skip draft took part in most runs, or in none
    assert_counts_follow(counts, joint)


# ---- the cost model and the policies ---------------------------------------------------------


def test_verify_cost_curve_is_measured_and_monotone(model):
    ctx = model.context(n_ctx=256)
    ctx.prefill(chat_ids(model, PROMPTS[2]))
    n0 = ctx.kv_seq_len()
    cost = VerifyCost(4)
    assert cost.curve() == []
    cost.calibrate(ctx, reps=1)
    assert ctx.kv_seq_len() == n0  # the probes were rolled back
    c = cost.curve()
    assert len(c) == 5 and c[0] == 1.0 and all(b >= a for a, b in zip(c, c[1:]))
    # What observations do, from known times (a measured curve may be flat where two sizes
    # time alike, and one timing each is noisy): a slow round moves its entry, and the ones
    # above it where it passes them, by at most (max_jump - 1) * (1 - decay) = 2.5%, however slow
    # (a graph captured in it).
    cost.seconds = [1.0, 1.2, 1.5, 1.52, 2.0]
    c = cost.curve()
    s2 = cost.seconds[2]
    cost.observe(2, s2 * 10)
    c2 = cost.curve()
    assert cost.seconds[2] == pytest.approx(s2 * 1.025, rel=1e-9)
    assert c2[2] == pytest.approx(1.5375) and c2[3] == c2[2] > c[3] and c2[1] == c[1] and c2[4] == c[4]
    # a lasting change takes over: a batch that now costs twice as much
    s1 = cost.seconds[1]
    for _ in range(60):
        cost.observe(1, 2 * s1)
    assert cost.seconds[1] == pytest.approx(2 * s1, rel=0.02)


def test_draft_sources_are_parsed_and_checked(model):
    assert parse_draft(None) == DRAFT_SOURCES == parse_draft("all")
    assert parse_draft("recycle, lookup") == ("lookup", "recycle")
    with pytest.raises(ValueError, match="unknown draft source 'bogus'"):
        parse_draft("lookup,bogus")
    with pytest.raises(ValueError, match="unknown draft source"):
        model.generate("Hi", 4, speculative=True, draft="nope")
    with pytest.raises(ValueError, match="not both"):
        model.generate("Hi", 4, speculative=True, draft="lookup", policy=make_policy("adaptive", model))


def test_adaptive_policy_arms_follow_the_draft_sources(model):
    names = lambda p: list(p.scores())  # noqa: E731
    # The model-free arm is the plain fallback (it decodes plainly where it drafts nothing):
    # plain decoding is an arm of its own only beside layer-skip drafts alone.
    pol = make_policy("adaptive", model, draft="lookup,suffix")
    assert names(pol) == ["lookup+suffix"]
    pol = make_policy("adaptive", model, draft="all")
    arms = names(pol)
    assert arms[0] == "lookup+suffix+recycle" and len(arms) == 4
    assert all(a.endswith("+ lookup+suffix+recycle") for a in arms[1:])
    # The default on the CPU leaves the layer-skip draft out (it costs most of a step there).
    assert names(make_policy("adaptive", model)) == ["lookup+suffix+recycle"]
    arms = names(make_policy("adaptive", model, draft="skip"))
    assert arms[0] == "plain decoding" and len(arms) == 4
    # The model-free arm's rounds are tree rounds, never plain chains; its plain steps are rounds.
    pol = AdaptivePolicy([], with_plain=False, tree=TreeShape(("lookup",), use_cost=False))
    pol.start(10)
    step = pol.next_round(100)
    assert step.sources == ("lookup",) and not step.is_plain and step.n_plain == 1
    pol.observe(step, RoundResult([7, 8, 9], 3, 2, [], 0.0, 0.002))
    assert pol.round == 1


def test_adaptive_policy_drops_layer_skip_candidates_whose_draft_costs_too_much():
    """max_draft_cost: at the first prepare each skip candidate's draft token is timed against a
    plain step (through the context's time_verify with its plan) and those dearer are dropped;
    plain decoding and the model-free arm stay, and it is measured once."""
    cheap, dear = Plan.skipping(range(1, 20)), Plan.skipping([3])
    calls = []

    class Ctx:  # time_verify as Context.time_verify: seconds of one token, under a plan
        def time_verify(self, n_tokens, reps=2, plan=None):
            calls.append(plan)
            return {None: 1.0, cheap: 0.4, dear: 0.8}[plan]

    pol = AdaptivePolicy(
        [dear, cheap], with_plain=True, tree=TreeShape(("lookup",), use_cost=False), max_draft_cost=0.5
    )
    assert len(pol.arms) == 4
    pol.start(10)
    pol.prepare(Ctx())
    assert list(pol.scores()) == ["plain decoding", "lookup", cheap.describe() + " + lookup"]
    assert pol.draft_costs == {dear.describe(): 0.8, cheap.describe(): 0.4}
    n = len(calls)
    pol.start(10)
    pol.prepare(Ctx())  # the next generation measures nothing again
    assert len(calls) == n and len(pol.arms) == 3
    for _ in range(50):  # every arm the rounds choose exists
        step = pol.next_round(100)
        assert 0 <= step.arm < len(pol.arms)
        pol.observe(step, RoundResult([7], 0, 0, [], 0.0, 0.001))
    # Only skip candidates, all dear: the cheapest stays.
    pol = AdaptivePolicy([dear, cheap], max_draft_cost=0.3)
    pol.prepare(Ctx())
    assert [a.plan for a in pol.arms] == [cheap]


def test_time_verify_under_a_plan_leaves_the_cache(model):
    """Context.time_verify with a plan (a draft token's cost): positive, the cache as it was; the
    plan is checked against the model."""
    ctx = model.context(n_ctx=256)
    ctx.decode(chat_ids(model, "Hello")[:20], logits="last")
    n = ctx.kv_seq_len(0)
    assert ctx.time_verify(1, 1, plan=Plan.skipping(range(2, 20), range(2, 20))) > 0
    assert ctx.time_verify(3, 1) > 0 and ctx.kv_seq_len(0) == n
    with pytest.raises(ValueError):
        ctx.time_verify(1, 1, plan=Plan.skipping([model.n_layer + 3]))
    assert ctx.kv_seq_len(0) == n


def test_adaptive_policy_explores_the_text_arm_again_in_every_generation():
    """A prompt that repeats nothing backs the model-free arm off (as a losing skip plan), but the
    next generation explores it at its first burst again, and it takes over where the text repeats
    itself; a losing skip candidate's backoff carries over."""
    pol = AdaptivePolicy(
        [Plan.skipping([1])],
        with_plain=True,
        explore_every=10,
        burst=2,
        margin=0.05,
        max_backoff=8,
        tree=TreeShape(("lookup",), use_cost=False),
    )
    text_arm, skip_arm = 1, 2

    def run(rounds, text_tokens):  # plain: 1 token in 1 ms; skip: 2 in 4 ms; text: text_tokens in 1.2 ms
        for _ in range(rounds):
            step = pol.next_round(100)
            if step.arm == text_arm:
                r = RoundResult([7] * text_tokens, 4, text_tokens - 1, [], 0.0, 0.0012)
            elif step.arm == skip_arm:
                r = RoundResult([7, 7], 4, 1, [0.5] * 4, 0.003, 0.001)
            else:
                r = RoundResult([7], 0, 0, [], 0.0, 0.001)
            pol.observe(step, r)

    pol.start(10)
    run(300, 1)  # nothing repeats: the model-free arm only adds verify cost
    assert pol.current == 0 and pol.arms[text_arm].backoff == 8 and pol.arms[skip_arm].backoff == 8
    pol.start(10)
    assert pol.arms[text_arm].backoff == 1 and pol.arms[skip_arm].backoff == 8
    run(10, 3)  # the first burst: the model-free arm, which now pays (3 tokens in 1.2 ms)
    assert pol.current == text_arm


def test_static_policy_with_text_sources_adapts_only_the_skip_draft():
    pol = StaticPolicy(PLANS["skip"], DraftLength(p_min=0.5, target=0.7), tree=TreeShape(use_cost=False))
    p0 = pol.draft.p_min
    for _ in range(10):  # the text sources' nodes are all accepted, the skip draft's never
        step = pol.next_round(100)
        assert step.sources == DRAFT_SOURCES
        r = RoundResult([1, 2, 3], 6, 2, [0.9], 0.001, 0.002, n_skip_drafted=2, accepted_by=[0, 2, 0, 0])
        pol.observe(step, r)
    assert pol.draft.p_min > p0  # the skip draft's acceptance is 0: its threshold went up
    assert RoundPlan(PLANS["skip"], 0, 0.0, sources=("skip",)).is_plain
