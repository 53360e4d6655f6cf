"""Prometheus metrics of the server (prometheus-client, one registry per app).

Counters and histograms are fed by the HTTP layer (requests by endpoint and status) and by the
scheduler (`on_step`, `on_finish`, called on its thread); gauges read the scheduler's totals and
its last snapshot when scraped, so a scrape never touches the engine.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .job import Stats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _SchedulerCollector:
    """Gauges and counters read from the scheduler at scrape time."""

    def __init__(self, scheduler):
        self.s = scheduler

    def collect(self):
        snap, t = self.s.snapshot, self.s.totals
        kv = snap.kv

        def gauge(name, doc, value):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], value)
            return g

        def counter(name, doc, value):
            c = CounterMetricFamily(name, doc)
            c.add_metric([], value)
            return c

        yield gauge("apls_queue_length", "Requests waiting for a slot.", snap.waiting)
        yield gauge("apls_slots_busy", "Slots running a request.", snap.slots_busy)
        yield gauge("apls_slots_total", "Slots (requests decoded at once).", len(self.s.slots.all))
        yield gauge(
            "apls_kv_blocks_used",
            "KV cache blocks in use (idle slots' cached prefixes included).",
            kv.get("blocks_used", 0),
        )
        yield gauge("apls_kv_blocks_total", "KV cache blocks.", kv.get("n_blocks", 0))
        yield gauge("apls_kv_blocks_shared", "KV cache blocks shared by several sequences.", kv.get("blocks_shared", 0))
        yield gauge(
            "apls_generation_tokens_per_second",
            "Tokens generated per second over the last 10 s.",
            snap.tokens_per_second,
        )
        yield counter("apls_prompt_tokens", "Prompt tokens of placed requests.", t.prompt_tokens)
        yield counter(
            "apls_prompt_tokens_cached",
            "Prompt tokens shared from cached KV entries instead of computed.",
            t.prompt_tokens_cached,
        )
        yield counter("apls_generation_tokens", "Tokens generated (finished requests).", t.generated_tokens)
        yield counter("apls_spec_drafted_tokens", "Draft tokens verified (APLS).", t.drafted_tokens)
        yield counter("apls_spec_accepted_tokens", "Draft tokens accepted (APLS).", t.accepted_tokens)
        yield counter("apls_spec_verify_steps", "Request steps that verified a draft (APLS).", t.verify_steps)
        vs = t.verify_steps
        yield gauge(
            "apls_spec_tau",
            "Tokens per verify step with a draft, since the start (APLS).",
            (t.accepted_tokens + vs) / vs if vs else 0.0,
        )
        yield gauge(
            "apls_spec_acceptance",
            "Accepted over drafted tokens, since the start (APLS).",
            t.accepted_tokens / t.drafted_tokens if t.drafted_tokens else 0.0,
        )


class Metrics:
    """The registry and the instruments the HTTP layer and the scheduler feed."""

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "apls_requests", "HTTP requests by endpoint and status.", ["endpoint", "status"], registry=r
        )
        self.ttft = Histogram(
            "apls_time_to_first_token_seconds",
            "From a request's arrival to its first token.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.duration = Histogram(
            "apls_request_duration_seconds",
            "From arrival to the last token.",
            buckets=(0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.step = Histogram(
            "apls_step_seconds",
            "Time of one batched decode step.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.step_tokens = Histogram(
            "apls_step_tokens",
            "Tokens in one batched decode step.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=r,
        )

    def watch(self, scheduler) -> None:
        """Read the scheduler's gauges and totals at scrape time; take its step and finish events."""
        self.registry.register(_SchedulerCollector(scheduler))
        scheduler.observer = self

    # ---- called by the scheduler's thread -------------------------------------------------
    def on_step(self, n_tokens: int, seconds: float) -> None:
        self.step.observe(seconds)
        self.step_tokens.observe(n_tokens)

    def on_finish(self, stats: Stats) -> None:
        if stats.n_generated:
            self.ttft.observe(stats.t_first_token_s)
        self.duration.observe(stats.t_total_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
