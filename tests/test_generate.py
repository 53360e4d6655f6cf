"""Text in, text out: generation, streaming, stop strings, chat templates and the `apls` CLI."""

import os
import subprocess
import sys

import jinja2
import numpy as np
import pytest

import apls
from apls.chat import ChatTemplateError, render_chat


@pytest.fixture(scope="module")
def model(smollm2_path):
    return apls.Model(smollm2_path, n_ctx=512)


def test_greedy_generate_equals_argmax_decoding(model):
    prompt = "The three primary colors are"
    text = model.generate(prompt, 24, temperature=0, ignore_eos=True)
    ids = model.tokenize(prompt)
    ctx = model.context(n_ctx=128)
    logits = ctx.decode(ids, logits="last")[-1]
    out = []
    for _ in range(24):
        out.append(int(np.argmax(logits)))
        logits = ctx.decode([out[-1]], logits="last")[-1]
    assert text == model.detokenize(out)
    assert model.last_stats.n_generated == 24 and model.last_stats.stop_reason == "length"


def test_decode_greedy_is_the_argmax_of_the_logits(model):
    """Context.decode_greedy: the same cache effect as decode, and the largest logit's id."""
    ids = model.tokenize("The three primary colors are")
    a, b = model.context(n_ctx=128), model.context(n_ctx=128)
    tok = b.decode_greedy(ids)
    logits = a.decode(ids, logits="last")[-1]
    for _ in range(12):
        assert tok == int(np.argmax(logits))
        logits = a.decode([tok], logits="last")[-1]
        tok = b.decode_greedy([tok])
    assert a.kv_seq_len(0) == b.kv_seq_len(0) == len(ids) + 12
    with pytest.raises(apls.InvalidArgumentError, match="out of range"):
        b.decode_greedy([model.n_vocab])


def test_decode_choose_gives_argmaxes_and_the_fetched_rows(model):
    """Context.decode_choose: every output row's argmax (ties to the lowest id) and the logits of
    the marked rows only, equal to decode's; the cache as decode leaves it."""
    ids = model.tokenize("One, two, three, four, five, six")
    a, b = model.context(n_ctx=128), model.context(n_ctx=128)
    rows = np.zeros(len(ids), np.uint8)
    rows[[2, 5, len(ids) - 1]] = 1
    want = a.decode(ids, logits=rows)
    got_ids, got = b.decode_choose(ids, logits=rows, fetch=[True, False, True])
    assert got_ids == [int(np.argmax(r)) for r in want]
    np.testing.assert_array_equal(got, want[[0, 2]])
    assert a.kv_seq_len(0) == b.kv_seq_len(0) == len(ids)
    ids2, none = b.decode_choose([7], fetch=[False])
    assert ids2 == [int(np.argmax(a.decode([7], logits="last")[-1]))] and none.shape == (0, model.n_vocab)
    with pytest.raises(apls.InvalidArgumentError, match="fetch has 2 entries for 1 output rows"):
        b.decode_choose([8], fetch=[True, True])
    assert b.kv_seq_len(0) == len(ids) + 1  # refused before anything was decoded


def top_k_reference(rows: np.ndarray, k: int) -> np.ndarray:
    """NumPy: each row's k largest, largest first, ties to the lowest id (a stable sort)."""
    return np.argsort(-rows, axis=1, kind="stable")[:, :k].astype(np.int32)


def test_top_k_is_each_rows_best_ids(model):
    """Context.top_k: the k best ids of every output row of the last decode, as a stable sort of
    its logits gives them; bad k and a decode without output rows are clear errors."""
    ids = model.tokenize("One, two, three, four, five, six")
    ctx = model.context(n_ctx=128)
    want = ctx.decode(ids, logits="all")
    for k in (1, 8, 64):
        np.testing.assert_array_equal(ctx.top_k(k), top_k_reference(want, k))
    for k in (0, 65):
        with pytest.raises(apls.InvalidArgumentError, match=f"k {k} must be in"):
            ctx.top_k(k)
    ctx.decode([5], logits=np.zeros(1, np.uint8))
    with pytest.raises(apls.InvalidArgumentError, match="no output rows"):
        ctx.top_k(8)


def test_decode_choose_verifies_a_token_tree(model):
    """decode_choose with parent: a tree verify batch's choices, equal to the argmax of decode's
    logits for the same tree (every row), with the logits of the fetched rows."""
    ids = model.tokenize("Paris is the capital of")
    a, b = model.context(n_ctx=128), model.context(n_ctx=128)
    a.decode(ids)
    b.decode(ids)
    tree = model.tokenize(" France, and the city of lights")[:6]
    parent = [-1, 0, 1, 0, 3, 1]  # two branches from the root, a fork below node 1
    want = a.decode(tree, logits="all", parent=parent)
    got_ids, got = b.decode_choose(tree, logits="all", fetch=[False, True, False, False, False, True], parent=parent)
    assert got_ids == [int(np.argmax(r)) for r in want]
    np.testing.assert_array_equal(got, want[[1, 5]])
    assert a.kv_seq_len(0) == b.kv_seq_len(0) == len(ids) + len(tree)


def _argmax_tokens(model, ids, n):
    """n greedy tokens after ids by hand: one decode per token in a fresh context."""
    ctx = model.context(n_ctx=128)
    logits, out = ctx.decode(ids, logits="last")[-1], []
    for _ in range(n):
        out.append(int(np.argmax(logits)))
        logits = ctx.decode([out[-1]], logits="last")[-1]
    return out


def test_generations_reuse_their_context(smollm2_path):
    """A generation's context goes back to the model when it ends (exhausted, abandoned or
    failed) and the next generation of that size takes it, cache emptied: the same tokens as
    by hand, whatever ran before; generations that overlap each get their own context."""
    model = apls.Model(smollm2_path, n_ctx=256)
    greedy = apls.SamplingParams(temperature=0)
    a, b = model.tokenize("The three primary colors are"), model.tokenize("def fibonacci(n):")
    want_a, want_b = _argmax_tokens(model, a, 12), _argmax_tokens(model, b, 12)
    assert list(model.generate_tokens(a, 12, greedy, ignore_eos=True)) == want_a
    kept = model._idle[("context", None)]
    assert kept.kv.stats()["entries"] == 0  # emptied for the next one
    assert list(model.generate_tokens(b, 12, greedy, ignore_eos=True, speculative=True)) == want_b
    assert model._idle[("context", None)] is kept  # the same context served both
    policy = model._idle[("policy", None)]  # the default policy, measured once
    assert policy.tree.cost.calibrated
    assert list(model.generate_tokens(a, 12, greedy, ignore_eos=True, speculative=True)) == want_a
    assert model._idle[("policy", None)] is policy
    # Overlapping: the second takes a new context while the first holds its own.
    first = model.generate_tokens(a, 12, greedy, ignore_eos=True)
    got_a = [next(first)]
    assert list(model.generate_tokens(b, 12, greedy, ignore_eos=True)) == want_b
    got_a += list(first)
    assert got_a == want_a
    assert len(model._idle) == 2
    # Abandoned after 3 tokens, then a prompt that does not fit and a bad draft source: what
    # they took is idle again.
    partial = model.generate_tokens(b, 12, greedy, ignore_eos=True, speculative=True)
    assert [next(partial) for _ in range(3)] == want_b[:3]
    partial.close()
    with pytest.raises(ValueError, match="the context holds"):
        model.generate_tokens([1] * 300, 4)
    with pytest.raises(ValueError, match="draft"):
        model.generate_tokens(a, 4, speculative=True, draft="nonsense")
    assert list(model.generate_tokens(a, 12, greedy, ignore_eos=True, speculative=True)) == want_a
    assert set(model._idle) == {("context", None), ("policy", None)}
    # Never started: closed, or dropped, it gives back what it took all the same.
    ctx = model._idle[("context", None)]
    never = model.generate_tokens(a, 12, greedy, ignore_eos=True)
    assert ("context", None) not in model._idle
    never.close()
    assert model._idle[("context", None)] is ctx and list(never) == []
    dropped = model.generate_tokens(b, 12, greedy, ignore_eos=True, speculative=True)
    assert not model._idle
    del dropped
    assert model._idle[("context", None)] is ctx and ("policy", None) in model._idle


def test_generate_greedy_chains_equal_token_by_token(model):
    """Context.generate_greedy: the tokens decode_greedy picks one at a time (chains longer than
    n_batch too), the same cache, and the end-of-turn token ends it when asked."""
    ids = model.tokenize(
        model.chat_prompt([{"role": "user", "content": "Say hello."}]), add_special=False, parse_special=True
    )
    ref = model.context(n_ctx=256)
    want = [ref.decode_greedy(ids)]
    while len(want) < 60:
        want.append(ref.decode_greedy([want[-1]]))
    eog = next((i for i, t in enumerate(want) if model.vocab.is_eog(t)), None)
    assert eog is not None and eog > 2  # the reply ends within 60 tokens

    ctx = model.context(n_ctx=256, n_batch=8)
    for i in range(0, len(ids) - 8, 8):
        ctx.decode(ids[i : i + 8])
    got = [ctx.decode_greedy(ids[i + 8 :])]
    for n in (1, 3, 11):  # 11: two chains of at most n_batch steps
        got += ctx.generate_greedy(got[-1], n, stop_at_eog=False)
        assert ctx.kv_seq_len(0) == len(ids) + len(got) - 1
    assert got == want[: len(got)]
    rest = ctx.generate_greedy(got[-1], 100)  # ends after the end token
    assert got + rest == want[: eog + 1]
    assert ctx.kv_seq_len(0) == len(ids) + eog
    assert ctx.generate_greedy(rest[-1], 0) == [] and ctx.kv_seq_len(0) == len(ids) + eog


def test_generate_greedy_misuse_leaves_the_cache(model):
    ctx = model.context(n_ctx=32, n_batch=8)
    tok = ctx.decode_greedy([1, 2, 3])
    for args, err, msg in [
        ((model.n_vocab, 4), apls.InvalidArgumentError, "out of range"),
        ((-1, 4), apls.InvalidArgumentError, "out of range"),
        ((tok, -1), apls.InvalidArgumentError, "negative"),
    ]:
        with pytest.raises(err, match=msg):
            ctx.generate_greedy(*args)
        assert ctx.kv_seq_len(0) == 3
    with pytest.raises(apls.InvalidArgumentError, match="unknown sequence"):
        ctx.generate_greedy(tok, 4, seq=3)
    out = ctx.generate_greedy(tok, 100, stop_at_eog=False)  # capped by the free room
    assert len(out) == 29 and ctx.kv_seq_len(0) == 32
    with pytest.raises(apls.KVCacheFullError, match="KV cache full"):
        ctx.generate_greedy(out[-1], 1)
    assert ctx.kv_seq_len(0) == 32


def test_generation_stopped_inside_a_chain_leaves_the_token_by_token_cache(model):
    """Plain greedy generation chains its steps; a caller that stops early finds the cache as
    token-by-token decoding leaves it: everything before the last token it took."""
    import itertools

    from apls.generate import generate_tokens

    ids = model.tokenize("The three primary colors are")
    tokens = {}
    for chain in (1, 8):
        ctx = model.context(n_ctx=128)
        gen = generate_tokens(ctx, ids, 30, apls.Sampler(temperature=0.0), ignore_eos=True, chain=chain)
        tokens[chain] = list(itertools.islice(gen, 11))
        gen.close()
        assert ctx.kv_seq_len(0) == len(ids) + 10
        tokens[chain].append(ctx.decode_greedy([tokens[chain][-1]]))  # the cache goes on correctly
    assert tokens[1] == tokens[8]


@pytest.mark.parametrize(
    "sampler,argmax",
    [
        (apls.Sampler(temperature=0.0), True),
        (apls.Sampler.chain([("top_k", 5), ("temperature", 0.5), ("greedy",)]), True),
        (apls.Sampler(temperature=0.0, repeat_penalty=1.3), False),
        (apls.Sampler(temperature=0.8, seed=1), False),
    ],
)
def test_generation_picks_what_the_sampler_picks(model, sampler, argmax):
    """Greedy without penalties takes the device's choice (Sampler.picks_argmax); any other
    chain samples the logits row. Either way the tokens are the sampler's on the logits."""
    from apls.generate import generate_tokens

    assert sampler.picks_argmax == argmax
    ids = model.tokenize("List three uses of copper:")
    got = list(generate_tokens(model.context(n_ctx=128), ids, 20, sampler, ignore_eos=True))
    sampler.reset()
    ctx = model.context(n_ctx=128)
    logits, want = ctx.decode(ids, logits="last")[-1], []
    for _ in range(20):
        want.append(int(sampler.sample(logits)))
        sampler.accept(want[-1])
        logits = ctx.decode([want[-1]], logits="last")[-1]
    assert got == want


def test_stream_pieces_join_to_the_same_text_and_are_whole_characters(model):
    prompt = "Write the word 'café' and a smiley emoji:"
    full = model.generate(prompt, 32, temperature=0, ignore_eos=True)
    pieces = list(model.generate(prompt, 32, temperature=0, ignore_eos=True, stream=True))
    assert "".join(pieces) == full
    assert all("\ufffd" not in p for p in pieces)


def test_seeded_sampling_is_reproducible(model):
    a = model.generate("Once upon a time", 24, temperature=0.9, seed=7)
    b = model.generate("Once upon a time", 24, temperature=0.9, seed=7)
    c = model.generate("Once upon a time", 24, temperature=0.9, seed=8)
    assert a == b and a != c


def test_stop_strings_cut_the_output(model):
    full = model.generate("Count: 1, 2, 3,", 24, temperature=0, ignore_eos=True)
    assert "," in full
    cut = model.generate("Count: 1, 2, 3,", 24, temperature=0, ignore_eos=True, stop=[","])
    assert cut == full[: full.index(",")]
    assert model.last_stats.stop_reason == "stop"


def test_chat_template_matches_jinja2_rendering(model):
    messages = [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2+2?"},
    ]
    template = model.meta("tokenizer.chat_template")
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    want = env.from_string(template).render(
        messages=messages, add_generation_prompt=True, bos_token="<|im_start|>", eos_token="<|im_end|>"
    )
    assert model.chat_prompt(messages) == want
    assert want.endswith("<|im_start|>assistant\n")


def test_chat_generates_and_stops_at_end_of_turn(model):
    reply = model.chat([{"role": "user", "content": "Say hello."}], max_tokens=64, temperature=0)
    assert reply and "<|im_end|>" not in reply
    assert model.last_stats.stop_reason in ("eog", "length")


def test_hostile_templates_fail_clearly():
    with pytest.raises(ChatTemplateError, match="no chat template"):
        render_chat(None, [{"role": "user", "content": "x"}])
    with pytest.raises(ChatTemplateError, match="Range too big"):
        render_chat("{% for i in range(100000000) %}x{% endfor %}", [{"role": "user", "content": "x"}])
    with pytest.raises(ChatTemplateError, match="exceeds"):  # within the range cap, over the output cap
        render_chat(
            "{% for i in range(99999) %}{% for j in range(99) %}xxxx{% endfor %}{% endfor %}",
            [{"role": "user", "content": "x"}],
        )
    with pytest.raises(ChatTemplateError, match="raised: nope"):
        render_chat("{{ raise_exception('nope') }}", [{"role": "user", "content": "x"}])
    with pytest.raises(ChatTemplateError):
        render_chat("{{ ''.__class__.__mro__ }}{{ x.__globals__ }}{% for %}", [{"role": "user", "content": "x"}])
    assert render_chat("{{ undefined_thing }}ok", [{"role": "user", "content": "x"}]) == "ok"


def run_cli(*args, timeout=300):
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "apls", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_cli_run_and_info(smollm2_path):
    r = run_cli("run", "-m", smollm2_path, "-n", "16", "--temp", "0", "The capital of France is")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip()) > 0
    assert "tok/s" in r.stderr
    assert "device: cpu (named by APLS_DEVICE=cpu)" in r.stderr  # conftest.py pins the CPU for "auto"
    r = run_cli("run", "-n", "8", "--temp", "0", "--speculative", "Hello")  # the default model
    assert r.returncode == 0, r.stderr
    assert "tau" in r.stderr
    r = run_cli(
        "run",
        "-m",
        smollm2_path,
        "-n",
        "150",
        "-c",
        "64",
        "--temp",
        "0.8",
        "--ignore-eos",
        "--stream-past-window",
        "Once upon a time",
    )
    assert r.returncode == 0, r.stderr
    assert "generation: 150 tokens" in r.stderr  # more than the 64-token window holds
    r = run_cli("info", smollm2_path)
    assert r.returncode == 0, r.stderr
    assert "architecture: llama" in r.stdout and "Q4_1" in r.stdout and "parameters: 134.5 M" in r.stdout


def test_cli_chat_keeps_history_and_leaves_on_eof(smollm2_path):
    r = subprocess.run(
        [sys.executable, "-m", "apls", "chat", "-m", smollm2_path, "-n", "12", "--temp", "0"],
        input="Hello!\nWhat did I just say?\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    replies = [line for line in r.stdout.splitlines() if line.strip()]
    assert len(replies) >= 2  # one reply per user turn, then EOF ends the session


def test_cli_fails_clearly(tmp_path):
    r = run_cli("run", "-m", str(tmp_path / "missing.gguf"), "hi")
    assert r.returncode == 1 and "missing.gguf" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.gguf"
    bad.write_text("this is not a model")
    r = run_cli("run", "-m", str(bad), "hi")
    assert r.returncode == 1 and "magic" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("run", "--no-such-flag", "hi")
    assert r.returncode == 2 and "unrecognized arguments: --no-such-flag" in r.stderr
