"""Plain generation: prefill → decode one token → decode n tokens, with sampling, stop strings
and streaming that never splits a UTF-8 character."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import _core

if TYPE_CHECKING:
    from .model import Context


@dataclass
class SamplingParams:
    """Sampling settings (llama.cpp defaults). temperature <= 0 means greedy."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_last_n: int = 64
    seed: int = 0

    def sampler(self) -> _core.Sampler:
        return _core.Sampler(
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            min_p=self.min_p,
            repeat_penalty=self.repeat_penalty,
            frequency_penalty=self.frequency_penalty,
            presence_penalty=self.presence_penalty,
            penalty_last_n=self.penalty_last_n,
            seed=self.seed,
        )


@dataclass
class GenerationStats:
    n_prompt: int = 0
    n_generated: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    # The process's CPU time over decoding: with one thread, the work itself, whatever else
    # loads the machine (benchmarks on a shared machine compare these).
    decode_cpu_s: float = 0.0
    stop_reason: str = ""  # "eog", "stop", "length"

    @property
    def prefill_tok_s(self) -> float:
        return self.n_prompt / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tok_s(self) -> float:
        return self.n_generated / self.decode_s if self.decode_s > 0 else 0.0


@dataclass
class StopMatcher:
    """Holds back text that may be the start of a stop string; reports the cut when one appears."""

    stops: Sequence[str]
    pending: str = ""
    hit: bool = field(default=False)

    def push(self, text: str) -> str:
        self.pending += text
        for s in self.stops:
            i = self.pending.find(s)
            if i >= 0:
                self.hit = True
                out, self.pending = self.pending[:i], ""
                return out
        keep = 0
        for s in self.stops:  # longest suffix of pending that is a proper prefix of a stop string
            for k in range(min(len(s) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(s[:k]):
                    keep = max(keep, k)
                    break
        out = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep :]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def generate_tokens(
    ctx: Context,
    prompt_ids: list[int],
    max_tokens: int,
    sampler: _core.Sampler,
    ignore_eos: bool = False,
    stats: GenerationStats | None = None,
    stream_past_window: bool = False,
    n_sink: int = 4,
    chain: int = 8,
) -> Iterator[int]:
    """Yield up to max_tokens sampled token ids after prefilling `prompt_ids` into `ctx`.

    stream_past_window: when the context is full, delete the oldest entries after the first
    `n_sink` (attention sinks), shifting later positions down, and go on (apls.kv.make_room).
    chain: greedy decoding without penalties runs up to this many steps per call into the
    engine (`Context.generate_greedy`: on a GPU one chain, one wait), then yields them one by
    one; 1 = one call per token. Whenever a token is yielded the cache holds what token-by-token
    decoding would hold (a chain's later entries are dropped if the caller stops early)."""
    from .kv import make_room

    model = ctx.model
    stats = stats if stats is not None else GenerationStats()
    stats.n_prompt = len(prompt_ids)
    t0 = time.perf_counter()
    logits = ctx.prefill(prompt_ids)
    stats.prefill_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    stats.stop_reason = "length"
    # Greedy without penalties: the context picks the token (on a GPU there, without copying
    # the logits back); the same token the sampler would pick.
    argmax = sampler.picks_argmax
    chained = argmax and chain > 1 and not stream_past_window
    ahead: list[int] = []  # chosen by a chain, not yet yielded; their entries are in the cache
    try:
        tok = sampler.sample(logits) if max_tokens > 0 else -1
        for _ in range(max_tokens):
            sampler.accept(tok)
            if not ignore_eos and model.is_eog(tok):
                stats.stop_reason = "eog"
                return
            stats.n_generated += 1
            yield tok
            if stats.n_generated == max_tokens:
                return
            if ahead:
                tok = ahead.pop(0)
                continue
            if stream_past_window:
                make_room(ctx, 0, 1, n_sink=n_sink)
            elif ctx.kv_seq_len(0) >= ctx.n_ctx:
                stats.stop_reason = "context"
                return
            if chained:
                ahead = ctx.generate_greedy(tok, min(chain, max_tokens - stats.n_generated), stop_at_eog=not ignore_eos)
                tok = ahead.pop(0)
            elif argmax:
                tok = ctx.decode_greedy([tok])
            else:
                tok = sampler.sample(ctx.decode([tok], logits="last")[-1])
    finally:
        if ahead:  # stopped inside a chain: drop the entries of tokens not yielded
            ctx.kv_truncate(0, ctx.kv_seq_len(0) - len(ahead))
        stats.decode_s = time.perf_counter() - t0
        stats.decode_cpu_s = time.process_time() - c0


def stream_text(
    vocab: _core.Vocab, tokens: Iterator[int], stop: Sequence[str], stats: GenerationStats
) -> Iterator[str]:
    """Turn token ids into text pieces: whole UTF-8 characters only, cut at the first stop string."""
    utf8 = _core.Utf8Stream()
    matcher = StopMatcher(list(stop))
    for tok in tokens:
        piece = matcher.push(utf8.push(vocab.token_to_piece(tok, False)))
        if piece:
            yield piece
        if matcher.hit:
            stats.stop_reason = "stop"
            tokens.close() if hasattr(tokens, "close") else None
            return
    tail = matcher.push(utf8.flush())
    if matcher.hit:
        stats.stop_reason = "stop"
    tail += "" if matcher.hit else matcher.flush()
    if tail:
        yield tail
