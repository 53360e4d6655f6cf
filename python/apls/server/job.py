"""What the HTTP layer hands the scheduler (`GenRequest`), what comes back (`Event`), and the
scheduler's state of one request (`Job`): its sampler, text decoding, stop strings, statistics."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import _core
from ..generate import SamplingParams, StopMatcher
from .drafter import Drafter
from .speculation import DraftStats


@dataclass
class GenRequest:
    """One generation, as plain data: prompt token ids and settings."""

    prompt: list[int]
    max_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False


@dataclass
class Stats:
    """A request's figures, sent with its last event."""

    n_prompt: int = 0
    n_prompt_cached: int = 0  # prompt tokens whose KV entries were shared, not computed
    n_generated: int = 0
    t_queued_s: float = 0.0  # from submission to a slot
    t_first_token_s: float = 0.0  # from submission to the first token
    t_total_s: float = 0.0
    tau: float = 0.0  # tokens per verify step with a draft (0: never drafted)
    acceptance: float = 0.0
    n_drafted: int = 0
    n_accepted: int = 0

    @property
    def tokens_per_second(self) -> float:
        """Generation speed after the first token."""
        dt = self.t_total_s - self.t_first_token_s
        return (self.n_generated - 1) / dt if self.n_generated > 1 and dt > 0 else 0.0


@dataclass
class Event:
    """Text the request produced since its last event; on the last one, why it ended and its
    figures. finish_reason: "stop" (end token or stop string), "length" (max_tokens or the
    context), "cancelled", "error" (then `error` says what)."""

    text: str = ""
    n_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None
    stats: Stats | None = None


_ids = itertools.count(1)


class Job:
    """A request inside the scheduler. Tokens enter through `take`, which applies the request's
    end conditions; text leaves through `sink` as Events, at most one per step (`flush`)."""

    def __init__(self, req: GenRequest, sink: Callable[[Event], None], vocab, drafter: Drafter | None):
        self.id = next(_ids)
        self.req = req
        self.sink = sink
        self.vocab = vocab
        self.drafter = drafter
        self.sampler = req.sampling.sampler()
        self.utf8 = _core.Utf8Stream()
        self.stop = StopMatcher(list(req.stop))
        self.out: list[int] = []
        self.pending: int | None = None  # chosen and sent, not yet in the KV cache
        self.n_prompt_done = 0  # prompt tokens in the KV cache
        self.cancelled = threading.Event()
        self.finish_reason: str | None = None
        self.error: str | None = None
        self.spec = DraftStats()
        self.stats = Stats(n_prompt=len(req.prompt))
        self.t_submit = time.perf_counter()
        self._text: list[str] = []
        self._n_new = 0

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def prefilling(self) -> bool:
        return self.pending is None and not self.done

    def text_tokens(self) -> list[int]:
        """The request's tokens so far: prompt, output (what a drafter reads)."""
        return self.req.prompt + self.out

    def take(self, tok: int) -> bool:
        """Record the next chosen token; False once the request has ended (then `tok` is not part
        of the output if it was an end token or completed a stop string)."""
        self.sampler.accept(tok)
        if not self.out:
            self.stats.t_first_token_s = time.perf_counter() - self.t_submit
        if not self.req.ignore_eos and self.vocab.is_eog(tok):
            self.finish_reason = "stop"
            return False
        self.out.append(tok)
        self._n_new += 1
        piece = self.stop.push(self.utf8.push(self.vocab.token_to_piece(tok, False)))
        if piece:
            self._text.append(piece)
        if self.stop.hit:
            self.finish_reason = "stop"
            return False
        if len(self.out) >= self.req.max_tokens:
            self.finish_reason = "length"
            return False
        self.pending = tok
        return True

    def end(self, reason: str, error: str | None = None) -> None:
        """End the request now (context full, cancelled, an engine error) unless it has ended."""
        if self.finish_reason is None:
            self.finish_reason = reason
            self.error = error

    def flush(self) -> None:
        """Send the text of this step; after the request ended, the rest of it and its figures."""
        ev = Event(text="".join(self._text), n_tokens=self._n_new)
        self._text.clear()
        self._n_new = 0
        if self.finish_reason is not None:
            if self.finish_reason in ("stop", "length") and not self.stop.hit:
                ev.text += self._tail()
            ev.finish_reason = self.finish_reason
            ev.error = self.error
            ev.stats = self._final_stats()
        if ev.text or ev.n_tokens or ev.finish_reason:
            self.sink(ev)

    def _tail(self) -> str:
        """What the text decoder and the stop matcher still hold (a stop string may end in it)."""
        tail = self.stop.push(self.utf8.flush())
        if self.stop.hit:
            self.finish_reason = "stop"
            return tail
        return tail + self.stop.flush()

    def _final_stats(self) -> Stats:
        s = self.stats
        s.n_generated = len(self.out)
        s.t_total_s = time.perf_counter() - self.t_submit
        s.tau, s.acceptance = self.spec.tau, self.spec.acceptance
        s.n_drafted, s.n_accepted = self.spec.n_drafted, self.spec.n_accepted
        return s
