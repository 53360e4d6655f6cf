"""Continuous batching: one thread runs the engine, and every step packs the next tokens of all
running requests (with their drafts) and chunks of waiting prompts into one decode batch over one
context, one KV cache sequence per slot.

A step:
  1. drops cancelled requests (their entries freed at once) and places waiting ones in free
     slots, sharing the longest cached prefix of their prompt (fork, copy-on-write);
  2. plans the batch: each decoding request's pending token, then its draft where speculation
     pays (`speculation.py`), then prompt chunks in arrival order up to n_batch tokens; a prompt
     whose next tokens another slot computes in this step waits a step and shares them;
  3. decodes it, then per request samples its rows and accepts the longest draft prefix the
     samples match (the first mismatching sample is the request's next token).

Accepting a deterministic draft by sampling each row with the request's own sampler and
comparing keeps the output exactly what plain decoding gives with the same seed (the sampler
sees the same rows, history and random draws): greedy output is identical, sampled output is
the full model's. Batch invariance (a token's logits do not depend on what shares its batch)
makes every request's output identical to running it alone.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from .drafter import Drafter, TextDrafter
from .job import Event, GenRequest, Job, Stats
from .slots import Slot, Slots, common_prefix
from .speculation import StepCost

log = logging.getLogger("apls.server")


class QueueFull(Exception):
    """The waiting queue is at its bound; retry after `retry_after` seconds."""

    def __init__(self, n_waiting: int, retry_after: int):
        super().__init__(f"the server is busy: {n_waiting} requests are waiting")
        self.retry_after = retry_after


class PromptTooLong(ValueError):
    """The prompt does not fit the context."""


@dataclass
class Totals:
    """Counters since the start (read by the metrics)."""

    requests: int = 0
    prompt_tokens: int = 0
    prompt_tokens_cached: int = 0
    generated_tokens: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    verify_steps: int = 0  # request-steps that verified a draft
    steps: int = 0
    step_tokens: int = 0
    step_seconds: float = 0.0
    finished: int = 0
    request_seconds: float = 0.0  # summed over finished requests


@dataclass
class Snapshot:
    """The scheduler's state after its last step (written by its thread, read by others)."""

    waiting: int = 0
    slots_busy: int = 0
    kv: dict = field(default_factory=dict)
    tokens_per_second: float = 0.0  # generated over the last `window` seconds


class Handle:
    """A submitted request: cancel() ends it (its entries are freed at the next step)."""

    def __init__(self, scheduler: Scheduler, job: Job):
        self._scheduler = scheduler
        self.job = job

    def cancel(self) -> None:
        self._scheduler.cancel(self.job)


@dataclass
class _Part:
    """A slot's tokens in a step's batch: which want logits, and where its rows start."""

    slot: Slot
    tokens: list[int]
    rows: list[int]  # 1: this token's logits are wanted
    prefill: bool
    drafts: list[int] = field(default_factory=list)
    first_row: int = 0


class _Choices:
    """A step's output rows: the engine's greedy choice of each, and the logits of the rows
    fetched for samplers that need them (in row order)."""

    def __init__(self, ids: list[int], logits: np.ndarray, fetch: list[bool]):
        self.ids = ids
        self.logits = logits
        self.index = list(itertools.accumulate(fetch, initial=0))  # [row]: its place in logits

    def choose(self, sampler, row: int) -> int:
        if sampler.picks_argmax:
            return self.ids[row]
        return sampler.sample(self.logits[self.index[row]])


class Scheduler:
    """Runs generation requests on one model with continuous batching.

    Args:
        model: an `apls.Model`.
        n_slots: requests decoded at once (one KV cache sequence each).
        n_ctx: context of one request, prompt and output (0: the model's, at most 4096).
        n_batch: most tokens in one step.
        n_threads: engine threads (0: the physical cores this process may use).
        max_queue: most requests waiting for a slot; more are refused (`QueueFull`).
        speculative: verify drafts (APLS per request, where the step-cost model finds it pays).
        k_max: longest draft.
        draft_threshold: a request drafts token j while alpha^j exceeds this (alpha: its
            acceptance rate); None: the step-cost model's threshold (`speculation.py`), so that
            drafts are made only where they pay on this machine; 0.0: always k_max tokens.
        drafter: makes a request's draft source (`drafter.Drafter`); default: the engine's
            model-free sources over the request's text (`drafter.TextDrafter`).
        observer: told of steps and finished requests (`metrics.Metrics`), or None.
    """

    window = 10.0  # seconds of the tokens/s figure

    def __init__(
        self,
        model,
        *,
        n_slots: int = 4,
        n_ctx: int = 0,
        n_batch: int = 256,
        n_threads: int = 0,
        max_queue: int = 64,
        speculative: bool = False,
        k_max: int = 8,
        draft_threshold: float | None = None,
        drafter: Callable[[], Drafter] | None = None,
        observer=None,
        kv_block_size: int = 16,
    ):
        if n_slots < 1 or max_queue < 0 or n_batch < 1 or k_max < 0:
            raise ValueError(
                f"bad settings: n_slots {n_slots}, max_queue {max_queue}, n_batch {n_batch}, k_max {k_max}"
            )
        if draft_threshold is not None and not 0.0 <= draft_threshold < 1.0:
            raise ValueError(f"draft_threshold must be in [0, 1), not {draft_threshold}")
        self.draft_threshold = draft_threshold
        self.model = model
        self.vocab = model.vocab
        self.n_ctx = n_ctx or min(model.n_ctx_train, 4096)
        self.k_max = k_max if speculative else 0
        self.drafter = (drafter or (lambda: TextDrafter(model))) if speculative else None
        self.max_queue = max_queue
        self.observer = observer
        capacity = self.n_ctx + self.k_max + 1  # a sequence's most entries (a draft's included)
        per_seq = -(-(capacity + 2 * kv_block_size) // kv_block_size) * kv_block_size  # + copy-on-write room
        self.ctx = model.context(
            n_ctx=n_slots * per_seq,
            n_batch=n_batch,
            n_threads=n_threads,
            n_seq_max=n_slots,
            kv_block_size=kv_block_size,
        )
        self.n_batch = self.ctx.n_batch
        # Tokens per call whose logits are each what they are alone (the backend's limit).
        self.invariant_batch = self.ctx.max_verify_batch
        self.slots = Slots(self.ctx, n_slots, capacity)
        self.cost = StepCost()
        self.totals = Totals()
        self.snapshot = Snapshot()
        self._recent: deque[tuple[float, int]] = deque()  # (time, tokens generated) per step
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._inbox: deque[Job] = deque()
        self._calls: deque[tuple[Callable, Future]] = deque()
        self._waiting: deque[Job] = deque()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._publish()

    # ---- the HTTP side --------------------------------------------------------------------
    def submit(self, req: GenRequest, sink: Callable[[Event], None]) -> Handle:
        """Queue a request; `sink` receives its Events from the scheduler's thread.

        Raises:
            PromptTooLong: the prompt leaves no room for a token in the context;
            ValueError: an empty prompt, a token id out of range, max_tokens < 1, bad sampling
                settings (apls.InvalidArgumentError);
            QueueFull: max_queue requests are waiting.
        """
        n = len(req.prompt)
        if n == 0:
            raise ValueError("the prompt is empty")
        if n >= self.n_ctx:
            raise PromptTooLong(f"the prompt has {n} tokens; the context holds {self.n_ctx} (prompt and output)")
        bad = [t for t in req.prompt if not 0 <= t < self.model.n_vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is out of range [0, {self.model.n_vocab})")
        if req.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {req.max_tokens}")
        req.max_tokens = min(req.max_tokens, self.n_ctx - n)
        job = Job(req, sink, self.vocab, self.drafter() if self.drafter else None)  # checks the sampler
        with self._lock:
            n_waiting = len(self._inbox) + len(self._waiting)
            if n_waiting >= self.max_queue:
                raise QueueFull(n_waiting, self._retry_after(n_waiting))
            self._inbox.append(job)
            self._wake.notify()
        return Handle(self, job)

    def cancel(self, job: Job) -> None:
        job.cancelled.set()
        with self._lock:
            self._wake.notify()

    def call(self, fn: Callable, timeout: float = 60.0):
        """Run fn(self) on the engine's thread between steps (the engine is not thread-safe)
        and return its result."""
        if self._thread is None or not self._thread.is_alive():
            return fn(self)
        fut: Future = Future()
        with self._lock:
            self._calls.append((fn, fut))
            self._wake.notify()
        return fut.result(timeout)

    def audit(self) -> dict:
        """Check the KV cache against the slots (on the engine's thread): the cache's invariants,
        each sequence's length equal to its slot's record, and no block used beyond what the
        slots' entries need. Returns {"kv_check": "ok" or the violation, "untracked_entries",
        "leaked_blocks", "blocks_used", "running"}."""

        def run(self: Scheduler) -> dict:
            kv = self.slots.kv
            try:
                kv.check()
                check = "ok"
            except Exception as e:  # noqa: BLE001 - reported, not raised: this is a health check
                check = str(e)
            st = kv.stats()
            untracked = sum(abs(kv.seq_len(s.seq) - s.n) for s in self.slots.all)
            needed = sum(-(-s.n // st["block_size"]) for s in self.slots.all)  # shared blocks counted per slot
            return {
                "kv_check": check,
                "untracked_entries": untracked,
                "leaked_blocks": max(0, st["blocks_used"] - needed),
                "blocks_used": st["blocks_used"],
                "running": self.slots.n_busy(),
            }

        return self.call(run)

    def drop_cached(self) -> None:
        """Free the entries idle slots keep for prefix sharing."""

        def run(self: Scheduler) -> None:
            for s in self.slots.all:
                if s.job is None and s.n:
                    self.slots.clear(s)
            self._publish()

        self.call(run)

    # ---- the thread -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="apls-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End every request ("error": shutting down) and the thread."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not (self._stopping or self._inbox or self._calls or self._waiting or self.slots.n_busy()):
                    self._wake.wait()
                if self._stopping:
                    break
                self._waiting.extend(self._inbox)
                self._inbox.clear()
                calls = list(self._calls)
                self._calls.clear()
            for fn, fut in calls:
                try:
                    fut.set_result(fn(self))
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    fut.set_exception(e)
            try:
                self._step()
            except Exception:  # noqa: BLE001 - the thread must live: every running request fails
                log.exception("scheduler step failed")
                self._fail_all("internal error in the scheduler (see the server's log)")
        self._fail_all("the server is shutting down")
        with self._lock:
            for _fn, fut in self._calls:
                fut.set_exception(RuntimeError("the scheduler stopped"))

    def _fail_all(self, message: str) -> None:
        for job in list(self._waiting) + list(self._inbox):
            job.end("error", message)
            job.flush()
        self._waiting.clear()
        self._inbox.clear()
        for s in self.slots.busy():
            s.running.end("error", message)
            s.running.flush()
            s.job = None
            self.slots.clear(s)
        self._publish()

    # ---- a step ---------------------------------------------------------------------------
    def _step(self) -> None:
        self._reap()
        self._admit()
        self._share_prefixes()
        for call in self._batches(self._plan()):
            self._decode(call)
        self._publish()

    def _decode(self, parts: list[_Part]) -> None:
        """One Context.decode over the parts' tokens, then each part's outcome."""
        tokens: list[int] = []
        pos: list[int] = []
        seqs: list[int] = []
        rows: list[int] = []
        for p in parts:
            p.first_row = sum(rows)
            tokens.extend(p.tokens)
            pos.extend(range(p.slot.n, p.slot.n + len(p.tokens)))
            seqs.extend([p.slot.seq] * len(p.tokens))
            rows.extend(p.rows)
        # A row's logits come back only for a request that samples them; a greedy one without
        # penalties takes the engine's own argmax (made on the GPU there: no logits copied).
        fetch = [not p.slot.running.sampler.picks_argmax for p in parts for r in p.rows if r]
        t0 = time.perf_counter()
        try:
            ids, logits = self.ctx.decode_choose(tokens, logits=rows, fetch=fetch, pos=pos, seq_ids=seqs)
        except Exception as e:  # noqa: BLE001 - the cache is unchanged; these requests fail
            log.exception("decode failed")
            for p in parts:
                self._end(p.slot, "error", f"the engine failed: {e}")
            return
        dt = time.perf_counter() - t0
        self.cost.observe(len(tokens), dt)
        self.totals.steps += 1
        self.totals.step_tokens += len(tokens)
        self.totals.step_seconds += dt
        if self.observer is not None:
            self.observer.on_step(len(tokens), dt)
        self._apply(parts, _Choices(ids, logits, fetch))

    def _reap(self) -> None:
        """Cancelled requests end now; a running one's entries are freed at once."""
        for job in [j for j in self._waiting if j.cancelled.is_set()]:
            self._waiting.remove(job)
            job.end("cancelled")
            job.flush()
        for s in self.slots.busy():
            if s.running.cancelled.is_set():
                self._end(s, "cancelled")

    def _end(self, slot: Slot, reason: str, error: str | None = None) -> None:
        """End a slot's request early; its entries are freed (they may be incomplete)."""
        job = slot.running
        job.end(reason, error)
        job.flush()
        slot.job = None
        self.slots.clear(slot)
        self._count_finished(job)

    def _count_finished(self, job: Job) -> None:
        t = self.totals
        t.finished += 1
        t.generated_tokens += len(job.out)
        t.prompt_tokens_cached += job.stats.n_prompt_cached
        t.request_seconds += job.stats.t_total_s
        if self.observer is not None:
            self.observer.on_finish(job.stats)

    def _admit(self) -> None:
        while self._waiting:
            job = self._waiting[0]
            placed = self.slots.place(np.asarray(job.req.prompt, dtype=np.int32))
            if placed is None:
                return
            self._waiting.popleft()
            slot, n_shared = placed
            slot.job = job
            job.n_prompt_done = n_shared
            job.stats.n_prompt_cached = n_shared
            job.stats.t_queued_s = time.perf_counter() - job.t_submit
            self.totals.requests += 1
            self.totals.prompt_tokens += len(job.req.prompt)

    def _share_prefixes(self) -> None:
        """A prompt still being computed takes the entries another slot got further with."""
        for s in self.slots.busy():
            job = s.running
            if not job.prefilling:
                continue
            prompt = np.asarray(job.req.prompt, dtype=np.int32)
            src, n = self.slots.best_prefix(prompt, exclude=s)
            if src is not None and n > job.n_prompt_done:
                self.slots.share(src, s, n)
                job.stats.n_prompt_cached += n - job.n_prompt_done
                job.n_prompt_done = n

    def _plan(self) -> list[_Part]:
        """The step's tokens: each decoding request's pending token and draft, then prompt
        chunks in arrival order, n_batch tokens at most."""
        parts: list[_Part] = []
        busy = sorted(self.slots.busy(), key=lambda s: s.running.id)
        decoding = [s for s in busy if not s.running.prefilling]
        prefilling = [s for s in busy if s.running.prefilling]
        budget = self.n_batch - len(decoding)
        n_prompt_left = sum(len(s.running.req.prompt) - s.running.n_prompt_done for s in prefilling)
        threshold = self.draft_threshold
        if threshold is None:
            threshold = self.cost.token_threshold(len(decoding) + min(budget, n_prompt_left), len(decoding))
        for s in decoding:
            job = s.running
            drafts: list[int] = []
            if job.drafter is not None:
                k = min(self.k_max, job.req.max_tokens - len(job.out) - 1, budget // 2, self.invariant_batch - 1)
                k = job.spec.draft_len(threshold, max(k, 0))
                drafts = job.drafter.propose(job.text_tokens(), k)[:k]
                budget -= len(drafts)
            assert job.pending is not None  # a decoding request has chosen its next token
            parts.append(_Part(s, [job.pending, *drafts], [1] * (1 + len(drafts)), False, drafts))
        planned: list[_Part] = []
        for s in prefilling:
            if budget <= 0:
                break
            job = s.running
            if self._computed_elsewhere(job, planned):
                continue
            chunk = job.req.prompt[job.n_prompt_done : job.n_prompt_done + budget]
            last = job.n_prompt_done + len(chunk) == len(job.req.prompt)
            planned.append(_Part(s, chunk, [0] * (len(chunk) - 1) + [1 if last else 0], True))
            budget -= len(chunk)
        return parts + planned

    def _batches(self, parts: list[_Part]) -> list[list[_Part]]:
        """The decode calls of a step: one on the CPU, where any batch up to n_batch keeps each
        token's logits what they are alone. On a GPU only batches of up to `invariant_batch`
        tokens do, and a prompt is computed by another kernel path: there each prompt chunk is a
        call of its own (as in Model.generate), and the decode tokens go in calls of at most
        invariant_batch tokens."""
        if self.invariant_batch >= self.n_batch:
            return [parts] if parts else []
        calls: list[list[_Part]] = []
        cur: list[_Part] = []
        n = 0
        for p in parts:
            if p.prefill:
                calls.append([p])
                continue
            if cur and n + len(p.tokens) > self.invariant_batch:
                calls.append(cur)
                cur, n = [], 0
            cur.append(p)
            n += len(p.tokens)
        return ([cur] if cur else []) + calls

    @staticmethod
    def _computed_elsewhere(job: Job, planned: list[_Part]) -> bool:
        """Whether a prompt chunk planned for another slot in this step computes this prompt's
        next token (then this prompt waits a step and shares it)."""
        prompt = np.asarray(job.req.prompt, dtype=np.int32)
        for p in planned:
            after = np.concatenate([p.slot.tokens, np.asarray(p.tokens, dtype=np.int32)])
            if min(common_prefix(after, prompt), len(prompt) - 1) > job.n_prompt_done:
                return True
        return False

    def _apply(self, parts: list[_Part], logits: _Choices) -> None:
        """Per slot: record the new entries, sample, accept drafts, send the text."""
        n_new = 0
        for p in parts:
            s, job = p.slot, p.slot.running
            n_before = s.n
            s.appended(p.tokens)
            if p.prefill:
                job.n_prompt_done += len(p.tokens)
                if job.n_prompt_done == len(job.req.prompt):
                    job.take(logits.choose(job.sampler, p.first_row))
                    n_new += 1
            else:
                n_acc = 0
                for m in range(len(p.drafts) + 1):
                    tok = logits.choose(job.sampler, p.first_row + m)
                    n_new += 1
                    if not job.take(tok) or m == len(p.drafts) or tok != p.drafts[m]:
                        break
                    n_acc += 1
                self.slots.truncate(s, n_before + 1 + n_acc)  # the pending token and accepted drafts
                if job.drafter is not None:
                    job.spec.record(len(p.drafts), n_acc)
                    self.totals.drafted_tokens += len(p.drafts)
                    self.totals.accepted_tokens += n_acc
                    self.totals.verify_steps += 1 if p.drafts else 0
            job.flush()
            if job.done:
                s.job = None
                s.last_used = time.monotonic()
                self._count_finished(job)
        now = time.monotonic()
        self._recent.append((now, n_new))

    def _publish(self) -> None:
        now = time.monotonic()
        while self._recent and self._recent[0][0] < now - self.window:
            self._recent.popleft()
        rate = sum(n for _, n in self._recent) / self.window
        self.snapshot = Snapshot(
            waiting=len(self._waiting) + len(self._inbox),
            slots_busy=self.slots.n_busy(),
            kv=self.slots.kv.stats(),
            tokens_per_second=rate,
        )

    def _retry_after(self, n_waiting: int) -> int:
        """Seconds until a slot is likely free: the waiting requests over the slots, times the
        mean request time so far (1 s before any request finished)."""
        t = self.totals
        mean_s = t.request_seconds / t.finished if t.finished else 1.0
        return max(1, math.ceil(mean_s * (n_waiting + 1) / len(self.slots.all)))


__all__ = ["Event", "GenRequest", "Handle", "PromptTooLong", "QueueFull", "Scheduler", "Stats"]
