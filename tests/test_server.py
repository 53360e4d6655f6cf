"""`apls serve` through the official OpenAI client: outputs equal to Model.generate / Model.chat,
continuous batching equal to running alone, speculation exact, prefix sharing, disconnects,
back-pressure, errors with OpenAI's body, metrics. The KV cache is audited after every test."""

import threading
import time

import httpx
import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed (pip install '.[server]')")
pytest.importorskip("openai", reason="the openai client is not installed")

from server_harness import running_server  # noqa: E402

import apls  # noqa: E402

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):",
    "The three primary colors are",
    "Water boils at",
    "The capital of France is a city that",  # shares a prefix with the first
    "List the planets of the solar system:",
    "In 1969, the first person to walk on the Moon",
]
N = 24  # tokens per request: the server's tests stay small


@pytest.fixture(scope="module")
def model(smollm2_path):
    return apls.Model(smollm2_path)


@pytest.fixture(scope="module")
def server(model):
    with running_server(model, n_slots=8, n_ctx=512) as s:
        yield s


@pytest.fixture(autouse=True)
def clean_kv(request):
    """After every test: no request left running, the KV cache's invariants hold, and no entry
    or block is held that the slots do not account for."""
    yield
    for name in ("server", "spec_server"):
        if name in request.fixturenames:
            audit = request.getfixturevalue(name).wait_idle()
            assert audit["kv_check"] == "ok", audit
            assert audit["untracked_entries"] == 0 and audit["leaked_blocks"] == 0, audit


def greedy(model, prompt, n=N):
    return model.generate(prompt, n, temperature=0)


def complete(server, prompt, n=N, **kw):
    r = server.client().completions.create(model=server.model_id, prompt=prompt, max_tokens=n, temperature=0, **kw)
    return r


def test_models_and_health(server):
    models = server.client().models.list()
    assert [m.id for m in models.data] == [server.model_id]
    h = httpx.get(server.url + "/health").json()
    assert h["status"] == "ok" and h["slots_total"] == 8


def test_completion_equals_generate(server, model):
    r = complete(server, PROMPTS[0])
    assert r.choices[0].text == greedy(model, PROMPTS[0])
    assert r.choices[0].finish_reason in ("length", "stop")
    assert r.usage.prompt_tokens == len(model.tokenize(PROMPTS[0]))
    assert r.usage.completion_tokens <= N


def test_streamed_completion_and_usage(server, model):
    stream = server.client().completions.create(
        model=server.model_id,
        prompt=PROMPTS[1],
        max_tokens=N,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == model.generate(PROMPTS[1], N, temperature=0, ignore_eos=True)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == N and chunks[-1].choices == []


def test_chat_equals_model_chat(server, model):
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a fruit."}]
    ref = model.chat(messages, N, temperature=0)
    r = server.client().chat.completions.create(model=server.model_id, messages=messages, max_tokens=N, temperature=0)
    assert r.choices[0].message.content == ref
    assert r.choices[0].message.role == "assistant"
    stream = server.client().chat.completions.create(
        model=server.model_id, messages=messages, max_tokens=N, temperature=0, stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ref


def test_stop_strings(server, model):
    ref = model.generate(PROMPTS[6], 48, temperature=0, ignore_eos=True)
    stop = ref[len(ref) // 2 : len(ref) // 2 + 3]  # a string from the middle of the output
    assert stop.strip(), ref
    want = ref[: ref.index(stop)]
    r = complete(server, PROMPTS[6], 48, stop=[stop, "never appears"], extra_body={"ignore_eos": True})
    assert r.choices[0].text == want and r.choices[0].finish_reason == "stop"
    chunks = list(complete(server, PROMPTS[6], 48, stop=stop, stream=True, extra_body={"ignore_eos": True}))
    assert "".join(c.choices[0].text for c in chunks) == want
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_seed_reproducible_and_equal_to_generate(server, model):
    kw = dict(temperature=0.9, top_p=0.95, seed=1234, max_tokens=N)
    c = server.client()
    a = c.completions.create(model=server.model_id, prompt=PROMPTS[3], extra_body={"top_k": 40, "min_p": 0.05}, **kw)
    b = c.completions.create(model=server.model_id, prompt=PROMPTS[3], extra_body={"top_k": 40, "min_p": 0.05}, **kw)
    assert a.choices[0].text == b.choices[0].text
    ref = model.generate(PROMPTS[3], N, temperature=0.9, top_p=0.95, top_k=40, min_p=0.05, seed=1234)
    assert a.choices[0].text == ref


def _concurrently(fn, args):
    out = [None] * len(args)
    errors = []

    def run(i):
        try:
            out[i] = fn(args[i])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(args))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    return out


def test_eight_concurrent_greedy_requests_equal_alone(server, model):
    alone = [model.generate(p, N, temperature=0, ignore_eos=True) for p in PROMPTS]
    totals = server.scheduler.totals
    steps0, tokens0 = totals.steps, totals.step_tokens
    texts = _concurrently(
        lambda p: "".join(
            c.choices[0].text for c in complete(server, p, stream=True, extra_body={"ignore_eos": True}) if c.choices
        ),
        PROMPTS,
    )
    assert texts == alone
    # They ran together: on average the steps carried several requests' tokens.
    assert (totals.step_tokens - tokens0) / (totals.steps - steps0) > 2.0


def test_prefix_of_an_earlier_request_is_shared(server, model):
    first = "A long shared system prompt: you are a helpful assistant who answers briefly. Question:"
    complete(server, first + " what is the sun?")
    r = complete(server, first + " what is the moon?")
    n_shared = len(model.tokenize(first)) - 1
    assert r.usage.prompt_tokens_details.cached_tokens >= n_shared
    assert r.choices[0].text == greedy(model, first + " what is the moon?")


def test_disconnect_mid_stream_frees_the_slot(server, model):
    server.scheduler.drop_cached()  # no cached prefixes: every block in use is the request's
    assert server.scheduler.snapshot.kv["blocks_used"] == 0
    generated0 = server.scheduler.totals.generated_tokens
    stream = server.client().completions.create(
        model=server.model_id, prompt=PROMPTS[2], max_tokens=400, stream=True, extra_body={"ignore_eos": True}
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    assert server.scheduler.snapshot.slots_busy == 1
    assert server.scheduler.snapshot.kv["blocks_used"] > 0
    stream.close()
    audit = server.wait_idle(timeout=5)
    assert audit["running"] == 0
    assert server.scheduler.snapshot.kv["blocks_used"] == 0  # its blocks were freed, not cached
    assert server.scheduler.totals.generated_tokens - generated0 < 400  # it ended early


def test_errors_have_openai_bodies(server, model):
    url = server.url
    long_prompt = "hello " * 600  # over the 512-token context
    cases = [
        (b"{not json", 400, None),
        (b'{"prompt": "x", "temperature": "hot"}', 400, "temperature"),
        (b'{"prompt": "x", "max_tokens": 0}', 400, "max_tokens"),
        (b'{"prompt": "x", "n": 2}', 400, "n"),
        (b'{"prompt": [99999999]}', 400, None),
        (b'{"prompt": "x", "model": "gpt-4"}', 404, "model"),
        (('{"prompt": "' + long_prompt + '"}').encode(), 413, "prompt"),
        (b"[1, 2, 3]", 400, None),
        (b'{"prompt": "x", "stop": ["a", 3]}', 400, "stop"),
    ]
    for body, status, param in cases:
        r = httpx.post(url + "/v1/completions", content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, (body[:60], r.text)
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"], r.text
        if param:
            assert err["param"] is not None and err["param"].startswith(param), r.text
    chat_cases = [
        ({"messages": []}, 400),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, 400),
        ({"messages": [{"role": "user", "content": "hi"}], "logprobs": True}, 400),
        ({"messages": "hi"}, 400),
    ]
    for body, status in chat_cases:
        r = httpx.post(url + "/v1/chat/completions", json=body)
        assert r.status_code == status and "error" in r.json(), (body, r.text)
    big = httpx.post(url + "/v1/completions", content=b"{" + b" " * (9 << 20) + b"}")
    assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"
    missing = httpx.get(url + "/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    assert complete(server, PROMPTS[0]).choices[0].text == greedy(model, PROMPTS[0])  # still serving


def test_cors_preflight(server):
    r = httpx.options(
        server.url + "/v1/chat/completions",
        headers={"Origin": "http://example.test", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] in ("*", "http://example.test")


def test_metrics(server):
    from prometheus_client.parser import text_string_to_metric_families

    complete(server, PROMPTS[4])
    text = httpx.get(server.url + "/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }

    def value(name, **labels):
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("apls_requests_total", endpoint="/v1/completions", status="200") >= 1
    t = server.scheduler.totals
    assert value("apls_generation_tokens_total") == t.generated_tokens > 0
    assert value("apls_prompt_tokens_total") == t.prompt_tokens > 0
    assert value("apls_slots_total") == 8
    assert value("apls_kv_blocks_total") > 0
    for name in (
        "apls_queue_length",
        "apls_slots_busy",
        "apls_kv_blocks_used",
        "apls_generation_tokens_per_second",
        "apls_spec_tau",
        "apls_spec_acceptance",
        "apls_time_to_first_token_seconds_count",
    ):
        assert any(k[0] == name for k in samples), name


def test_api_key(model):
    with running_server(model, api_key="sekret", n_slots=1, n_ctx=128) as s:
        r = httpx.post(s.url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(s.url + "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(s.url + "/health").status_code == 200  # open: load balancers probe it
        out = s.client(api_key="sekret").completions.create(model=s.model_id, prompt="Hi", max_tokens=2, temperature=0)
        assert out.choices[0].text == model.generate("Hi", 2, temperature=0)


def test_queue_limit_returns_503(model):
    with running_server(model, n_slots=1, max_queue=1, n_ctx=512) as s:
        c = s.client()
        first = c.completions.create(
            model=s.model_id, prompt="Count:", max_tokens=400, stream=True, extra_body={"ignore_eos": True}
        )
        next(iter(first))  # running in the only slot
        waiting = threading.Thread(
            target=lambda: c.completions.create(model=s.model_id, prompt="Hi", max_tokens=2), daemon=True
        )
        waiting.start()
        deadline = time.monotonic() + 10
        while s.scheduler.snapshot.waiting < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        r = httpx.post(s.url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
        assert r.status_code == 503, r.text
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["code"] == "overloaded"
        first.close()  # the waiting request gets the slot and finishes
        waiting.join(30)
        assert not waiting.is_alive()
        audit = s.wait_idle()
        assert audit["kv_check"] == "ok" and audit["leaked_blocks"] == 0


# ---- speculation ----------------------------------------------------------------------------
REPETITIVE = "Repeat after me: the cat sat on the mat, the cat sat on the mat, the cat sat on the mat,"


@pytest.fixture(scope="module")
def spec_server(model):
    # Drafts on every step (draft_threshold 0), not where this machine's measured step costs say
    # they pay: the tests below must verify drafts under any build (a sanitized one's costs made
    # the cost model refuse them); the cost model has its own tests (test_server_speculation.py).
    with running_server(model, n_slots=4, n_ctx=512, speculative=True, draft_threshold=0.0) as s:
        yield s


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.5])
def test_a_bad_draft_threshold_is_refused(model, bad):
    from apls.server.scheduler import Scheduler

    with pytest.raises(ValueError, match="draft_threshold must be in"):
        Scheduler(model, speculative=True, draft_threshold=bad)


def test_speculative_greedy_equals_plain(spec_server, model):
    prompts = [REPETITIVE, PROMPTS[2], "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,", PROMPTS[0]]
    t = spec_server.scheduler.totals
    drafted0, accepted0 = t.drafted_tokens, t.accepted_tokens
    texts = _concurrently(
        lambda p: complete(spec_server, p, 40, extra_body={"ignore_eos": True}).choices[0].text, prompts
    )
    assert texts == [model.generate(p, 40, temperature=0, ignore_eos=True) for p in prompts]
    assert t.drafted_tokens > drafted0 and t.accepted_tokens > accepted0  # drafts were verified and kept


def test_speculative_sampling_equals_plain_sampling(spec_server, model):
    # Drafts are accepted by sampling each row with the request's sampler and comparing, so the
    # output is what plain sampling gives with the same seed, token for token.
    t = spec_server.scheduler.totals
    accepted0 = t.accepted_tokens
    kw = dict(temperature=0.7, top_p=0.9, seed=99)
    r = spec_server.client().completions.create(
        model=spec_server.model_id, prompt=REPETITIVE, max_tokens=40, extra_body={"top_k": 20, "ignore_eos": True}, **kw
    )
    ref = model.generate(REPETITIVE, 40, top_k=20, ignore_eos=True, **kw)
    assert r.choices[0].text == ref
    assert t.accepted_tokens > accepted0
    assert r.model_extra["apls"]["tau"] > 1.0
