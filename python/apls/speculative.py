"""Self-speculative decoding: the controller. Each round runs in C++ (draft under the policy's
plan, verify with the full model in one batch, accept, roll back); Python only chooses the plan,
the draft length and the KV view between rounds, and streams."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import _core
from .generate import GenerationStats, SamplingParams, stream_text
from .policy import Policy, RoundResult, make_policy


@dataclass
class SpecStats(GenerationStats):
    """GenerationStats plus what speculation did."""

    n_rounds: int = 0
    n_drafted: int = 0
    n_accepted: int = 0
    t_draft_s: float = 0.0
    t_verify_s: float = 0.0
    n_draft_waits: int = 0  # times the host waited for a drafted token
    accepted_at: list[int] = field(default_factory=list)  # accepted_at[i]: rounds whose draft i+1 was accepted
    drafted_at: list[int] = field(default_factory=list)  # drafted_at[i]: rounds that drafted an (i+1)-th token

    @property
    def tau(self) -> float:
        """Mean tokens per verify step, the verifier's own token included."""
        return (self.n_accepted + self.n_rounds) / self.n_rounds if self.n_rounds else 0.0

    @property
    def acceptance(self) -> float:
        """Accepted drafts over drafted tokens."""
        return self.n_accepted / self.n_drafted if self.n_drafted else 0.0

    def record(self, r: RoundResult) -> None:
        self.n_rounds += max(1, len(r.tokens) - r.n_accepted)  # full-model steps (a plain chain: one per token)
        self.n_drafted += r.n_drafted
        self.n_accepted += r.n_accepted
        self.t_draft_s += r.t_draft_s
        self.t_verify_s += r.t_verify_s
        self.n_draft_waits += r.n_draft_waits
        for i in range(r.n_drafted):
            if i >= len(self.drafted_at):
                self.drafted_at.append(0)
                self.accepted_at.append(0)
            self.drafted_at[i] += 1
            self.accepted_at[i] += 1 if i < r.n_accepted else 0


class SpeculativeGenerator:
    """Generate with self-speculative decoding.

    Args:
        model: an `apls.Model`.
        policy: chooses the draft plan, draft length and KV view (default:
            `make_policy("adaptive", model)`: the default draft plan, two neighbours and plain
            decoding, chosen round by round by measured speed, with a draft KV view on long contexts).
        n_ctx: context size (default: the model's, at most 4096).

    Greedy output is token-for-token identical to `model.generate(..., temperature=0)`; sampled
    output keeps the full model's distribution.
    """

    def __init__(self, model, policy: Policy | None = None, n_ctx: int | None = None):
        self.model = model
        self.policy = policy or make_policy("adaptive", model)
        self.n_ctx = n_ctx
        self.last_stats: SpecStats | None = None

    def generate_tokens(
        self,
        prompt_ids: Sequence[int],
        max_tokens: int,
        sampler=None,
        ignore_eos: bool = False,
        stats: SpecStats | None = None,
        ctx=None,
    ) -> Iterator[int]:
        """Yield up to max_tokens token ids after the prompt. sampler None = greedy; a sampler's
        penalty history receives every generated token (the first one here, the rest from the
        rounds), as plain generation's does."""
        stats = stats if stats is not None else SpecStats()
        self.last_stats = stats
        ids = [int(t) for t in prompt_ids]
        if not ids:
            raise ValueError("the prompt is empty")
        n_ctx = self.n_ctx or self.model.n_ctx or min(self.model.n_ctx_train, 4096)
        ctx = ctx or self.model.context(n_ctx=n_ctx)
        vocab = self.model._model.vocab
        stats.n_prompt = len(ids)
        t0 = time.perf_counter()
        n_batch = ctx._ctx.n_batch
        # The prompt is prefilled exactly as plain decoding does (same chunks: on the GPU a batch
        # of more than 16 tokens takes another kernel path), and the first token comes from its
        # last logits; rounds then start from that token, which is not yet in the cache.
        logits = None
        for i in range(0, len(ids), n_batch):
            logits = ctx.decode(ids[i : i + n_batch], logits="last")[-1]
        stats.prefill_s = time.perf_counter() - t0
        self.policy.start(len(ids))
        stats.stop_reason = "length"
        t0 = time.perf_counter()
        try:
            if max_tokens <= 0:
                return
            last = int(np.argmax(logits)) if sampler is None else int(sampler.sample(logits))
            if sampler is not None:
                sampler.accept(last)  # rounds record their own output in the penalties' history
            if not ignore_eos and vocab is not None and vocab.is_eog(last):
                stats.stop_reason = "eog"
                return
            stats.n_generated += 1
            yield last
            ctx_size = ctx.n_ctx
            while stats.n_generated < max_tokens:
                n_context = ctx.kv_seq_len(0) + 1
                if n_context >= ctx_size:
                    stats.stop_reason = "context"
                    return
                step = self.policy.next_round(n_context)
                if step.n_draft == 0 and step.n_plain > 1 and sampler is None:
                    r = self._plain_chain(
                        ctx,
                        last,
                        min(step.n_plain, max_tokens - stats.n_generated, ctx_size - n_context + 1),
                        ignore_eos,
                    )
                else:
                    kw = step.plan.arrays(self.model.n_layer)
                    view = {} if step.view is None else {"view_sink": step.view[0], "view_window": step.view[1]}
                    raw = _core.spec_round(
                        ctx._ctx,
                        last,
                        kw["attn"],
                        kw["mlp"],
                        kw["group"],
                        kw["head_rows"],
                        n_draft_max=step.n_draft,
                        draft_p_min=step.p_min,
                        sampler=sampler,
                        **view,
                    )
                    r = RoundResult(**raw)
                self.policy.observe(step, r)
                stats.record(r)
                for tok in r.tokens:
                    if not ignore_eos and vocab is not None and vocab.is_eog(tok):
                        stats.stop_reason = "eog"
                        return
                    stats.n_generated += 1
                    yield tok
                    if stats.n_generated >= max_tokens:
                        return
                last = r.tokens[-1]
        finally:
            stats.decode_s = time.perf_counter() - t0

    @staticmethod
    def _plain_chain(ctx, last: int, n: int, ignore_eos: bool) -> RoundResult:
        """Plain greedy steps after `last` as one round (Context.generate_greedy: one chain)."""
        t0 = time.perf_counter()
        tokens = ctx.generate_greedy(last, n, stop_at_eog=not ignore_eos)
        return RoundResult(tokens, 0, 0, [], 0.0, time.perf_counter() - t0)

    def generate(
        self,
        prompt: str | Sequence[int],
        max_tokens: int = 128,
        *,
        temperature: float = 0.0,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        seed: int = 0,
        repeat_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        penalty_last_n: int = 64,
        stop: Sequence[str] | None = None,
        stream: bool = False,
        ignore_eos: bool = False,
        add_special: bool = True,
        parse_special: bool = False,
    ) -> str | Iterator[str]:
        """Like `Model.generate` (greedy by default). Returns text, or an iterator with stream=True."""
        ids = (
            self.model.tokenize(prompt, add_special, parse_special)
            if isinstance(prompt, (str, bytes))
            else list(prompt)
        )
        params = SamplingParams(
            temperature, top_k, top_p, min_p, repeat_penalty, frequency_penalty, presence_penalty, penalty_last_n, seed
        )
        sampler = params.sampler()  # validates the settings
        if sampler.picks_argmax:  # plain greedy: the engine's argmax path
            sampler = None
        stats = SpecStats()
        self.model.last_stats = stats
        pieces = stream_text(
            self.model.vocab, self.generate_tokens(ids, max_tokens, sampler, ignore_eos, stats), stop or [], stats
        )
        return pieces if stream else "".join(pieces)
