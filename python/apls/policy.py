"""Adaptive skip policies: which draft plan, how long a draft and which KV view, round by round.

- `StaticPolicy`: a fixed plan (from a JSON file, from GGUF metadata `apls.draft_plan`, or the
  built-in default) with an adaptive draft length.
- `DraftLength`: the confidence threshold that stops a draft, adapted to hold a target
  acceptance rate; a hard cap on the draft length.
- `ProgressiveSchedule`: plans that skip more as the context grows.
- `AdaptivePolicy`: on-line choice among candidate plans (measured tokens per second of the
  rounds each plan ran), exploring at most one burst in `explore_every` rounds, less often for
  candidates that keep losing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .kv import KVView
from .kv_policy import KVViewPolicy
from .plan import Plan


@dataclass
class RoundPlan:
    """What the next round runs."""

    plan: Plan
    n_draft: int
    p_min: float
    view: KVView | None = None  # what the draft attends to (None: the whole cache)
    arm: int = 0  # index of the candidate plan (AdaptivePolicy)
    n_plain: int = 1  # with n_draft 0: plain steps the round may run (greedy: one chain, one wait)


def tokens_per_second(tokens: float, seconds: float) -> float:
    """The speed a round or a plan is judged by: inf for what took no measurable time."""
    return tokens / seconds if seconds > 0 else math.inf


@dataclass
class RoundResult:
    """What a round did (from the engine)."""

    tokens: list[int]
    n_drafted: int
    n_accepted: int
    draft_conf: list[float]
    t_draft_s: float
    t_verify_s: float
    n_draft_waits: int = 0  # times the host waited for a drafted token (1 for a GPU draft chain)

    def speed(self) -> float:
        """Tokens per second of this round (inf for a round that took no measurable time)."""
        return tokens_per_second(len(self.tokens), self.t_draft_s + self.t_verify_s)


@dataclass
class DraftLength:
    """Draft length control: draft at most `n_max` tokens, stop once the draft's top probability
    falls below `p_min`; p_min moves to hold `target` acceptance (accepted / drafted).

    A low acceptance raises the threshold (shorter, more confident drafts); a high acceptance
    lowers it (longer drafts)."""

    n_max: int = 8
    p_min: float = 0.3
    target: float = 0.7
    rate: float = 0.05  # step of p_min per round, scaled by the error
    lo: float = 0.0
    hi: float = 0.95
    ema: float = field(default=0.7)

    def update(self, n_drafted: int, n_accepted: int) -> None:
        if n_drafted == 0:
            return
        a = n_accepted / n_drafted
        self.ema = 0.8 * self.ema + 0.2 * a
        self.p_min = min(self.hi, max(self.lo, self.p_min + self.rate * (self.target - self.ema) * 4))


@dataclass
class ProgressiveSchedule:
    """Plans by context length: entries (min_context, plan), the last one whose min_context is
    <= the current context applies. Longer contexts make attention dearer, so later entries
    usually skip more attention sub-blocks."""

    steps: list[tuple[int, Plan]]

    def plan_for(self, n_context: int) -> Plan:
        chosen = self.steps[0][1]
        for min_ctx, plan in self.steps:
            if n_context >= min_ctx:
                chosen = plan
        return chosen


class Policy:
    """Interface: start(n_prompt) once per generation, then next_round / observe per round."""

    def start(self, n_prompt: int) -> None:
        pass

    def next_round(self, n_context: int) -> RoundPlan:
        raise NotImplementedError

    def observe(self, step: RoundPlan, result: RoundResult) -> None:
        pass


def default_plan(model) -> Plan:
    """The draft plan for a model: GGUF metadata `apls.draft_plan` (JSON) if present, else the
    shape `apls tune` finds on SmolLM2 (attention of the early-middle layers is the least
    important sub-block): skip attention in layers [15%, 30%) of the depth and draft with the
    first quarter of the vocabulary in the output head."""
    meta = model.meta("apls.draft_plan")
    if meta:
        return Plan.from_dict(json.loads(meta))
    n = model.n_layer
    lo, hi = max(1, round(n * 0.15)), max(2, round(n * 0.3))
    return Plan.skipping(range(lo, hi), (), head_rows=model.n_vocab // 4)


class StaticPolicy(Policy):
    """One plan for every round (or a progressive schedule), adaptive draft length, optional
    KV view for the draft on long contexts."""

    def __init__(
        self,
        plan: Plan | None = None,
        draft: DraftLength | None = None,
        schedule: ProgressiveSchedule | None = None,
        kv: KVViewPolicy | None = None,
        adapt_length: bool = True,
    ):
        self.plan = plan or Plan()
        self.draft = draft or DraftLength()
        self.schedule = schedule
        self.kv = kv
        self.adapt_length = adapt_length

    @staticmethod
    def default_for(model) -> StaticPolicy:
        return StaticPolicy(default_plan(model))

    @staticmethod
    def from_file(path: str) -> StaticPolicy:
        """A plan JSON (see Plan.load), optionally with "n_draft" and "p_min" keys, and
        "adapt_length": false to keep p_min fixed (a draft of n_draft tokens every round when
        p_min is 0)."""
        with open(path) as f:
            d = json.load(f)
        draft = DraftLength(n_max=int(d.pop("n_draft", 8)), p_min=float(d.pop("p_min", 0.3)))
        adapt = d.pop("adapt_length", True)
        if not isinstance(adapt, bool):
            raise ValueError(f"adapt_length must be true or false, not {adapt!r}")
        return StaticPolicy(Plan.from_dict(d), draft, adapt_length=adapt)

    def next_round(self, n_context: int) -> RoundPlan:
        plan = self.schedule.plan_for(n_context) if self.schedule else self.plan
        view = self.kv.view_for(n_context) if self.kv else None
        return RoundPlan(plan, self.draft.n_max, self.draft.p_min, view)

    def observe(self, step: RoundPlan, result: RoundResult) -> None:
        if self.adapt_length:
            self.draft.update(result.n_drafted, result.n_accepted)


@dataclass
class _Arm:
    plan: Plan
    n_draft: int | None = None  # fixed draft length (0: plain decoding); None: DraftLength decides
    tokens: float = 0.0  # decayed sums over the rounds this plan ran (this generation)
    seconds: float = 0.0
    rounds: int = 0
    prior: float = 0.0  # speed over earlier generations (0: none yet)
    backoff: int = 1  # explored at most once in this many bursts
    skip: int = 0  # bursts to sit out before the next exploration

    def speed(self) -> float:
        return tokens_per_second(self.tokens, self.seconds)


class AdaptivePolicy(Policy):
    """On-line adaptation among candidate plans.

    Each candidate's score is the tokens per second of the rounds it ran recently in this
    generation (tokens the model verified, over draft + verify time), decayed so that it follows
    the text. The best candidate runs (a challenger must be `margin` faster to take over); every
    `explore_every` rounds, a burst of `burst` rounds runs the least-tried other candidate, so
    the overhead of adaptation is bounded by burst/explore_every of the rounds running a possibly
    worse plan (and nothing else: scoring uses the rounds' own timings). A candidate whose burst
    leaves it clearly slower than the running one (by more than `backoff_gap`) sits out twice as
    many bursts as before (up to `max_backoff`); any other is explored at every turn again, so a
    close second (plain decoding behind a draft that won on a good stretch) is never starved. The
    burst of a backed-off candidate ends after its first round when that round is clearly slower
    too, so a candidate that keeps losing costs one round per turn, not a whole burst. A
    new generation starts with the candidate of the best speed over earlier generations (the
    prior), and the backoffs carry over: they describe the model and the machine more than the
    text. Draft length adapts as in StaticPolicy. While plain decoding runs, a round may take
    up to `plain_chain` steps at once, never past the next burst: each step counts as a round.
    """

    def __init__(
        self,
        candidates: Sequence[Plan],
        draft: DraftLength | None = None,
        kv: KVViewPolicy | None = None,
        explore_every: int = 10,
        decay: float = 0.9,
        with_plain: bool = False,
        burst: int = 1,
        margin: float = 0.0,
        max_backoff: int = 1,
        backoff_gap: float = 0.15,
        plain_chain: int = 1,
    ):
        if not candidates:
            raise ValueError("AdaptivePolicy needs at least one candidate plan")
        self.arms = [_Arm(p) for p in candidates]
        if with_plain:  # drafting nothing: each round is one plain decode step; it starts, and
            self.arms.insert(0, _Arm(Plan(), n_draft=0))  # drafts must prove they are faster
        self.draft = draft or DraftLength()
        self.kv = kv
        self.explore_every = explore_every
        self.burst = burst  # rounds per exploration: one round's timing is noisy
        self.margin = margin  # a challenger must be this much faster to take over
        self.decay = decay
        self.max_backoff = max_backoff  # 1: every candidate is explored in turn, always
        self.backoff_gap = backoff_gap  # how much slower a candidate must be to back off
        self.plain_chain = plain_chain  # plain steps one round may run
        self.round = 0
        self.current = 0
        self.exploring = -1  # the arm of the burst under way, -1: none

    def start(self, n_prompt: int) -> None:
        # Speeds depend on the context length, so scores from another generation do not compare
        # with this one's: they become priors, the best prior starts, and exploration re-measures
        # the others here.
        self.round = 0
        for a in self.arms:
            if a.rounds:
                a.prior = a.speed() if a.prior == 0.0 else 0.5 * (a.prior + a.speed())
            a.tokens = a.seconds = 0.0
            a.rounds = 0
        if any(a.prior > 0.0 for a in self.arms):
            self.current = max(range(len(self.arms)), key=lambda i: self.arms[i].prior)
        self.exploring = -1

    def next_round(self, n_context: int) -> RoundPlan:
        self.round += 1
        arm = self.current
        phase = self.round % self.explore_every
        if len(self.arms) > 1 and phase == self.explore_every - self.burst:  # a burst's turn
            self.exploring = self._explore_next()
        if self.exploring >= 0 and phase >= self.explore_every - self.burst:
            arm = self.exploring
        view = self.kv.view_for(n_context) if self.kv else None
        a = self.arms[arm]
        n_plain = 1
        if a.n_draft == 0 and arm != self.exploring:  # up to the round before the next burst
            start = self.explore_every - self.burst
            n_plain = max(1, min(self.plain_chain, (start if phase < start else self.explore_every) - phase))
        return RoundPlan(
            a.plan, self.draft.n_max if a.n_draft is None else a.n_draft, self.draft.p_min, view, arm, n_plain
        )

    def observe(self, step: RoundPlan, result: RoundResult) -> None:
        if step.n_draft == 0:  # every plain step it ran counts as a round
            self.round += max(0, len(result.tokens) - 1)
        a = self.arms[step.arm]
        a.tokens = a.tokens * self.decay + len(result.tokens)
        a.seconds = a.seconds * self.decay + result.t_draft_s + result.t_verify_s
        a.rounds += 1
        best = max(range(len(self.arms)), key=lambda i: self.arms[i].speed() if self.arms[i].rounds else -1)
        cur = self.arms[self.current]
        if cur.rounds == 0 or self.arms[best].speed() > cur.speed() * (1.0 + self.margin):
            self.current = best
        if step.arm == self.exploring:
            phase = self.round % self.explore_every
            if phase == self.explore_every - 1:  # the burst's last round
                self._judge(self.exploring)
            elif phase == self.explore_every - self.burst and a.backoff > 1 and self._clearly_slower(result.speed()):
                self._judge(self.exploring)  # a backed-off candidate's first round lost again: the burst ends
        if self.arms[step.arm].n_draft is None:
            self.draft.update(result.n_drafted, result.n_accepted)

    def _clearly_slower(self, speed: float) -> bool:
        """Whether a speed (tokens/s) is clearly below the running arm's (by more than backoff_gap)."""
        return speed < self.arms[self.current].speed() * (1.0 - self.backoff_gap)

    def _explore_next(self) -> int:
        """The arm of this burst: the least-tried other arm not sitting out, or -1 (none)."""
        due = []
        for i, a in enumerate(self.arms):
            if i == self.current:
                continue
            if a.skip > 0:
                a.skip -= 1
            else:
                due.append(i)
        return min(due, key=lambda i: self.arms[i].rounds) if due else -1

    def _judge(self, i: int) -> None:
        """After arm i's burst: back off if it was clearly slower than the running arm, else
        explore it at every turn."""
        a = self.arms[i]
        if self._clearly_slower(a.speed()):
            a.backoff = min(2 * a.backoff, self.max_backoff)
        else:
            a.backoff = 1
        a.skip = a.backoff - 1
        self.exploring = -1

    def scores(self) -> dict[str, float]:
        return {("plain decoding" if a.n_draft == 0 else a.plan.describe()): a.speed() for a in self.arms}


def make_policy(name: str, model, plan_file: str | None = None) -> Policy:
    """Policy by name: "static" (default plan or --plan FILE), "adaptive" (candidates around the
    default plan, and plain decoding, chosen by measured speed; a draft KV view on long contexts),
    "progressive" (skip more as the context grows). Raises ValueError otherwise."""
    base = Plan.load(plan_file) if plan_file else default_plan(model)
    if name == "static":
        return StaticPolicy.from_file(plan_file) if plan_file else StaticPolicy(base)
    if name == "adaptive":
        return AdaptivePolicy(
            _neighbours(base, model.n_layer),
            kv=KVViewPolicy(),
            with_plain=True,
            explore_every=40,
            burst=4,
            margin=0.05,
            max_backoff=8,
            plain_chain=16,
        )
    if name == "progressive":
        more = Plan.skipping(
            set(base.skip_attn) | set(range(1, model.n_layer - 1, 2)), base.skip_mlp, base.groups, base.head_rows
        )
        return StaticPolicy(base, schedule=ProgressiveSchedule([(0, base), (1024, more)]), kv=KVViewPolicy())
    raise ValueError(f"unknown policy {name!r} (static, adaptive, progressive)")


def _neighbours(base: Plan, n_layer: int) -> list[Plan]:
    """The base plan and two neighbours for AdaptivePolicy: one that also skips the MLPs of the
    layers whose attention it skips (cheaper draft), one that skips attention in two more
    layers."""
    out = [base]
    attn = sorted(base.skip_attn)
    if attn:
        out.append(Plan.skipping(attn, sorted(set(base.skip_mlp) | set(attn)), base.groups, base.head_rows))
        lo, hi = max(1, attn[0] - 1), min(n_layer - 2, attn[-1] + 1)
        out.append(Plan.skipping(sorted(set(attn) | {lo, hi}), base.skip_mlp, base.groups, base.head_rows))
    return out
