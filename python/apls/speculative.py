"""Speculative decoding: the controller. Each round runs in C++ (`Context.spec_tree_round`: draft
from the chosen sources — the model under the policy's layer plan, and the model-free prompt
lookup, suffix index and token recycling — as one token tree, verify it with the full model in
one batch, accept the longest path the verifier agrees with, roll back the rest); Python only
chooses the sources, the plan, the draft length, the tree's size and the KV view between rounds
(`apls.policy`), and streams. The entry point is `Model.generate(..., speculative=True)` /
`Model.generate_tokens`."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import _core
from .generate import GenerationStats
from .policy import DRAFT_SOURCES, Policy, RoundPlan, RoundResult

if TYPE_CHECKING:
    from .model import Context


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
    t_host_s: float = 0.0  # tree rounds' host work: sources, the cut, acceptance, learning
    n_verify_rounds: int = 0  # tree rounds' last steps: verify batches (not plain chains or plain steps)
    t_tree_verify_s: float = 0.0  # their verify time
    n_candidates: int = 0  # tree nodes the sources proposed
    n_skip_drafted: int = 0  # tokens the layer-skip draft decoded
    drafted_by: list[int] = field(default_factory=lambda: [0] * len(DRAFT_SOURCES))  # verified nodes per source
    accepted_by: list[int] = field(default_factory=lambda: [0] * len(DRAFT_SOURCES))  # accepted nodes per source

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
        self.t_verify_s += r.t_verify_s + r.t_plain_s
        self.t_host_s += r.t_host_s
        self.n_draft_waits += r.n_draft_waits
        self.n_candidates += r.n_candidates
        self.n_skip_drafted += r.n_skip_drafted
        for i in range(len(DRAFT_SOURCES)):
            self.drafted_by[i] += r.drafted_by[i]
            self.accepted_by[i] += r.accepted_by[i]
        for _, n_drafted, n_accepted, t_verify, _ in r.verify_steps():  # not a plain chain's
            self.n_verify_rounds += 1
            self.t_tree_verify_s += t_verify
            if len(self.drafted_at) < n_drafted:
                self.drafted_at += [0] * (n_drafted - len(self.drafted_at))
                self.accepted_at += [0] * (n_drafted - len(self.accepted_at))
            for i in range(n_drafted):
                self.drafted_at[i] += 1
            for i in range(min(n_accepted, n_drafted)):
                self.accepted_at[i] += 1


def speculative_tokens(
    ctx: Context,
    prompt_ids: Sequence[int],
    max_tokens: int,
    sampler: _core.Sampler | None,
    policy: Policy,
    ignore_eos: bool = False,
    stats: SpecStats | None = None,
) -> Iterator[int]:
    """Yield up to max_tokens token ids after prefilling `prompt_ids` into `ctx`, by rounds of
    self-speculative decoding whose plan, draft length and KV view `policy` chooses
    (`Model.generate_tokens(speculative=True)` is the entry point).

    sampler None, or greedy without penalties: greedy, token-for-token identical to plain greedy
    decoding; otherwise the sampler's distribution, its penalty history receiving every
    generated token (the first one here, the rest from the rounds), as plain generation's does."""
    stats = stats if stats is not None else SpecStats()
    if sampler is not None and sampler.picks_argmax:  # plain greedy: the engine's argmax path
        sampler = None
    model = ctx.model
    stats.n_prompt = len(prompt_ids)
    t0 = time.perf_counter()
    # The prompt is prefilled exactly as plain decoding does (same chunks: on the GPU a batch
    # of more than 64 tokens takes another kernel path), and the first token comes from its
    # last logits; rounds then start from that token, which is not yet in the cache.
    logits = ctx.prefill(prompt_ids)
    stats.prefill_s = time.perf_counter() - t0
    policy.start(len(prompt_ids))
    policy.prepare(ctx)
    drafter = policy.drafter(model)
    drafter.start(np.asarray(prompt_ids, np.int32))
    stats.stop_reason = "length"
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        if max_tokens <= 0:
            return
        last = int(np.argmax(logits)) if sampler is None else int(sampler.sample(logits))
        if sampler is not None:
            sampler.accept(last)  # rounds record their own output in the penalties' history
        drafter.append(np.array([last], np.int32))  # rounds append their own output
        if not ignore_eos and model.is_eog(last):
            stats.stop_reason = "eog"
            return
        stats.n_generated += 1
        yield last
        while stats.n_generated < max_tokens:
            n_context = ctx.kv_seq_len(0) + 1
            if n_context >= ctx.n_ctx:
                stats.stop_reason = "context"
                return
            step = policy.next_round(n_context)
            if step.is_plain and step.n_plain > 1 and sampler is None:
                n = min(step.n_plain, max_tokens - stats.n_generated, ctx.n_ctx - n_context + 1)
                r = _plain_chain(ctx, last, n, ignore_eos)
                drafter.append(np.asarray(r.tokens, np.int32))
            else:
                params = tree_params(step)
                if sampler is None and step.n_draft == 0:  # plain steps while nothing is worth drafting
                    params.max_plain_steps = max(0, min(step.n_plain, max_tokens - stats.n_generated) - 1)
                r = ctx.spec_tree_round(
                    last,
                    drafter,
                    params,
                    step.plan,
                    view=step.view,
                    sampler=sampler,
                    max_rounds=step.n_rounds,
                    max_tokens=max_tokens - stats.n_generated,
                    stop_at_eog=not ignore_eos,
                )
            policy.observe(step, r)
            stats.record(r)
            for tok in r.tokens:
                if not ignore_eos and model.is_eog(tok):
                    stats.stop_reason = "eog"
                    return
                stats.n_generated += 1
                yield tok
                if stats.n_generated >= max_tokens:
                    return
            last = r.tokens[-1]
    finally:
        stats.decode_s = time.perf_counter() - t0
        stats.decode_cpu_s = time.process_time() - c0


def tree_params(step: RoundPlan) -> _core.TreeParams:
    """The engine's parameters of a round (apls._core.TreeParams) from the policy's plan of it."""
    p = _core.TreeParams()
    p.sources = sum(1 << DRAFT_SOURCES.index(s) for s in step.sources)
    p.n_nodes_max = step.n_nodes or step.n_draft
    p.verify_cost = step.verify_cost or []
    p.skip_n_max = step.n_draft
    p.skip_p_min = step.p_min
    return p


def _plain_chain(ctx: Context, last: int, n: int, ignore_eos: bool) -> RoundResult:
    """Plain greedy steps after `last` as one round (Context.generate_greedy: one chain)."""
    t0 = time.perf_counter()
    tokens = ctx.generate_greedy(last, n, stop_at_eog=not ignore_eos)
    return RoundResult(tokens, 0, 0, [], 0.0, time.perf_counter() - t0)
