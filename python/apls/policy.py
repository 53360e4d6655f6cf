"""Speculative policies: which draft sources, which draft plan, how long a draft, how large a
token tree and which KV view, round by round.

- Draft sources (`DRAFT_SOURCES`): "skip" (the model itself under a layer plan) and the model-free
  "lookup", "suffix" and "recycle" (apls._core.Drafter); a round merges the chosen ones into one
  token tree, and the engine keeps the nodes worth their verify cost (`VerifyCost`: measured on
  this device) by each node's measured acceptance.
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

from . import _core
from .kv import KVView
from .kv_policy import KVViewPolicy
from .plan import Plan

DRAFT_SOURCES: tuple[str, ...] = tuple(_core.DRAFT_SOURCES)  # ("skip", "lookup", "suffix", "recycle")
TEXT_SOURCES = tuple(s for s in DRAFT_SOURCES if s != "skip")
# The adaptive policy's default: layer-skip candidates whose draft token costs more than this
# share of a plain step on the device are not offered (AdaptivePolicy, max_draft_cost).
MAX_DRAFT_COST = 0.5


def parse_draft(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """Draft sources from "skip,lookup,suffix,recycle" (or a list of names); None, "" or "all":
    every source. Returns them in DRAFT_SOURCES order. Raises ValueError naming an unknown one."""
    if spec is None or spec == "" or spec == "all":
        return DRAFT_SOURCES
    names = [x.strip() for x in spec.split(",")] if isinstance(spec, str) else [str(x) for x in spec]
    for n in names:
        if n not in DRAFT_SOURCES:
            raise ValueError(f"unknown draft source {n!r} (choose from {', '.join(DRAFT_SOURCES)})")
    if not names:
        raise ValueError("no draft source given")
    return tuple(s for s in DRAFT_SOURCES if s in names)


@dataclass
class RoundPlan:
    """What the next round runs."""

    plan: Plan
    n_draft: int
    p_min: float
    view: KVView | None = None  # what the draft attends to (None: the whole cache)
    arm: int = 0  # index of the candidate plan (AdaptivePolicy)
    n_plain: int = (
        1  # with n_draft 0: plain steps the round may run (greedy: one chain, or tree steps while nothing pays)
    )
    sources: tuple[str, ...] = ("skip",)  # draft sources of the round (skip: under `plan`)
    n_nodes: int = 0  # most tree nodes verified (0: n_draft)
    verify_cost: list[float] | None = None  # cost model of the cut (VerifyCost.curve); None: verify n_nodes
    n_rounds: int = 1  # tree rounds one call may run back to back (Context.spec_tree_round's max_rounds)

    @property
    def is_plain(self) -> bool:
        """Plain decoding: nothing drafted, by the skip plan or any other source."""
        return self.n_draft == 0 and all(s == "skip" for s in self.sources)


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
    t_host_s: float = 0.0  # tree rounds: sources, the cut, acceptance, learning
    n_plain_steps: int = 0  # tree rounds: steps that drafted nothing before the last (their tokens first)
    t_plain_s: float = 0.0  # tree rounds: those steps' forward passes
    n_candidates: int = 0  # tree rounds: nodes the sources proposed (n_drafted of them verified)
    n_skip_drafted: int = 0  # tree rounds: tokens the layer-skip draft decoded
    drafted_by: list[int] = field(default_factory=lambda: [0] * len(DRAFT_SOURCES))  # verified nodes per source
    accepted_by: list[int] = field(default_factory=lambda: [0] * len(DRAFT_SOURCES))  # accepted nodes per source
    # tree rounds: each round's verify (n_plain_steps, n_drafted, n_accepted, t_verify_s, t_plain_s);
    # several when rounds ran back to back (the fields above are then their sums)
    steps: list[tuple[int, int, int, float, float]] = field(default_factory=list)

    def speed(self) -> float:
        """Tokens per second of this round (inf for a round that took no measurable time)."""
        return tokens_per_second(len(self.tokens), self.seconds())

    def verify_steps(self) -> list[tuple[int, int, int, float, float]]:
        """Each verify step of the call, as `steps` (a chain round's one verify too; a plain
        chain has none)."""
        if self.steps:
            return self.steps
        if len(self.tokens) == self.n_plain_steps + self.n_accepted + 1:
            return [(self.n_plain_steps, self.n_drafted, self.n_accepted, self.t_verify_s, self.t_plain_s)]
        return []

    def seconds(self) -> float:
        """The round's time: drafting, verifying, plain steps and the host's work."""
        return self.t_draft_s + self.t_verify_s + self.t_plain_s + self.t_host_s


class VerifyCost:
    """The cost of a verify batch of n + 1 tokens relative to one plain step (n drafted nodes and
    the round's last token), on this device, for n = 0..n_max: what a tree is cut by.

    `calibrate` times each batch size once (apls._core.time_verify, as a round verifies: every
    row's logits); `observe` then folds in each round's own verify time (decayed), so the curve
    follows the context length and the machine's load. One observation counts for at most
    `max_jump` times the estimate it updates: a round that captured a CUDA graph (a chain batch's
    first round of its size: ~1.3 ms on top of a ~1 ms verify) or met a hiccup of the host moves
    an entry by at most 2.5%, while a lasting change still takes over within tens of rounds. The
    curve is kept non-decreasing: a larger batch never costs less than a smaller one."""

    def __init__(self, n_max: int, decay: float = 0.9, max_jump: float = 1.25):
        if n_max < 0:
            raise ValueError(f"n_max must be >= 0, got {n_max}")
        self.n_max = n_max
        self.decay = decay
        self.max_jump = max_jump
        self.seconds: list[float | None] = [None] * (n_max + 1)  # [n]: a batch of n + 1 tokens

    @property
    def calibrated(self) -> bool:
        return self.seconds[0] is not None

    def calibrate(self, ctx, reps: int = 2) -> None:
        """Time verify batches of 1..n_max + 1 tokens after what `ctx` holds (left as it was)."""
        self.n_max = min(self.n_max, ctx.max_verify_batch - 1)
        self.seconds = [ctx.time_verify(n + 1, reps) for n in range(self.n_max + 1)]

    def observe(self, n_nodes: int, seconds: float) -> None:
        if 0 <= n_nodes <= self.n_max and seconds > 0:
            old = self.seconds[n_nodes]
            if old is not None:
                seconds = min(seconds, self.max_jump * old)
            self.seconds[n_nodes] = seconds if old is None else self.decay * old + (1 - self.decay) * seconds

    def curve(self) -> list[float]:
        """[n]: the cost of n + 1 tokens relative to one; [] before calibration."""
        one = self.seconds[0]
        if one is None:  # not calibrated
            return []
        out, last = [], 0.0
        for t in self.seconds:
            last = max(last, (t if t is not None else last * one) / one)
            out.append(last)
        out[0] = 1.0
        return out


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


@dataclass
class TreeShape:
    """How the model-free sources join a policy's rounds: which of them, and the verify cost
    model that cuts each round's tree (made and calibrated on the device at the first prepare).
    n_nodes: most nodes a tree may verify (0: 8 on the CPU, where every extra token costs
    arithmetic; 63 on a GPU; capped by the context's largest verify batch). use_cost False:
    verify the n_nodes likeliest candidates every round, whatever they cost (tests)."""

    sources: tuple[str, ...] = TEXT_SOURCES
    n_nodes: int = 0
    use_cost: bool = True
    cost: VerifyCost | None = None

    def prepare(self, ctx) -> None:
        if self.use_cost and (self.cost is None or not self.cost.calibrated):
            cpu = ctx.model.device == "cpu"
            self.cost = VerifyCost(self.n_nodes or (8 if cpu else 63))
            # A GPU's verify of ~1 ms varies from call to call: the best of 2 made SmolLM2's
            # trees 6.7-13.9 nodes a round from one session to the next (Spec-Bench 1.55x-1.71x,
            # H100), the best of 5 7.3-8.6 (1.67x-1.71x). A CPU batch is steadier and 10-50x dearer.
            self.cost.calibrate(ctx, reps=2 if cpu else 5)

    def fill(self, step: RoundPlan, with_skip: bool) -> RoundPlan:
        """`step` drafting from these sources too (and from the skip plan when with_skip)."""
        step.sources = (("skip",) if with_skip else ()) + self.sources
        step.n_nodes = self.cost.n_max if self.cost else (self.n_nodes or 8)
        step.verify_cost = self.cost.curve() if self.cost else None
        return step

    def observe(self, result: RoundResult) -> None:
        if self.cost is None:
            return
        for n_plain, n_drafted, _, t_verify, t_plain in result.verify_steps():  # not a plain chain's
            self.cost.observe(n_drafted, t_verify)
            if n_plain:
                self.cost.observe(0, t_plain / n_plain)


def skip_counts(step: RoundPlan, result: RoundResult) -> tuple[int, int]:
    """(drafted, accepted) tokens of the layer-skip draft in a round (what DraftLength adapts to)."""
    if step.sources == ("skip",):
        return result.n_drafted, result.n_accepted
    return result.n_skip_drafted, result.accepted_by[DRAFT_SOURCES.index("skip")]


class Policy:
    """Interface: start(n_prompt) and prepare(ctx) once per generation, then next_round / observe
    per round. The policy also holds the session's drafter (the model-free sources' text and
    tables, kept across generations like what the policy learned)."""

    _drafter: _core.Drafter | None = None

    def start(self, n_prompt: int) -> None:
        pass

    def prepare(self, ctx) -> None:
        """After the prompt is in `ctx`'s cache: a policy may measure the device here."""

    def drafter(self, model) -> _core.Drafter:
        """The session's drafter for `model` (made on first use)."""
        if self._drafter is None:
            self._drafter = _core.Drafter(model._model)
        return self._drafter

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
    KV view for the draft on long contexts; with `tree`, the model-free sources join every
    round's tree (skip=False: they alone draft)."""

    def __init__(
        self,
        plan: Plan | None = None,
        draft: DraftLength | None = None,
        schedule: ProgressiveSchedule | None = None,
        kv: KVViewPolicy | None = None,
        adapt_length: bool = True,
        tree: TreeShape | None = None,
        skip: bool = True,
    ):
        if not skip and tree is None:
            raise ValueError("a policy without the skip source needs model-free sources (tree)")
        self.plan = plan or Plan()
        self.draft = draft or DraftLength()
        self.schedule = schedule
        self.kv = kv
        self.adapt_length = adapt_length
        self.tree = tree
        self.skip = skip

    def prepare(self, ctx) -> None:
        if self.tree:
            self.tree.prepare(ctx)

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
        step = RoundPlan(plan, self.draft.n_max if self.skip else 0, self.draft.p_min, view)
        return self.tree.fill(step, self.skip) if self.tree else step

    def observe(self, step: RoundPlan, result: RoundResult) -> None:
        if self.tree:
            self.tree.observe(result)
        if self.adapt_length and self.skip:
            self.draft.update(*skip_counts(step, result))


@dataclass
class _Arm:
    plan: Plan
    n_draft: int | None = None  # fixed draft length (0: no skip draft); None: DraftLength decides
    sources: tuple[str, ...] = ("skip",)  # () with n_draft 0: plain decoding
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
    prior), and the backoffs of the layer-skip candidates carry over: they describe the model
    and the machine more than the text. The model-free arm's do not: whether the text repeats
    itself is a property of this text, so a new generation explores that arm at its first burst
    whatever the last one found (one prompt that repeats nothing must not keep lookup off for
    the next ones). Draft length adapts as in StaticPolicy. While plain decoding runs, a round
    may take up to `plain_chain` steps at once, never past the next burst: each step counts as
    a round. Likewise plain decoding and the model-free arm run up to `round_chain` rounds back
    to back in one call of the engine (each counts as a round).

    With `tree`, the model-free sources become a candidate of their own (`text_arm`) and join
    every plan's draft in one token tree, cut by the measured verify cost.

    With `max_draft_cost`, the first prepare times one draft token of each layer-skip candidate
    against a plain step on this device (`draft_costs`) and drops the candidates dearer than
    that: at a cost c per drafted token, k drafted tokens accepted at rate a give at most
    (1 - a^(k+1)) / (1 - a) tokens for k c + (a verify step) of time, which loses to plain decoding
    at c > ~0.5 for any acceptance a small model reaches (SmolLM2 on an H100: c ~0.7; exploring
    such arms only costs rounds). Plain decoding (when present) and the model-free arm always stay.
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
        round_chain: int = 1,
        tree: TreeShape | None = None,
        text_arm: bool = True,
        max_draft_cost: float | None = None,
    ):
        if not candidates and not (tree and text_arm):
            raise ValueError("AdaptivePolicy needs at least one candidate plan or the model-free sources")
        with_text = ("skip",) + tree.sources if tree else ("skip",)
        self.arms = [_Arm(p, sources=with_text) for p in candidates]
        if tree and text_arm:
            self.arms.insert(0, _Arm(Plan(), n_draft=0, sources=tree.sources))
        self.tree = tree
        if with_plain:  # drafting nothing: each round is one plain decode step; it starts, and
            self.arms.insert(0, _Arm(Plan(), n_draft=0, sources=()))  # drafts must prove they are faster
        self.draft = draft or DraftLength()
        self.kv = kv
        self.explore_every = explore_every
        self.burst = burst  # rounds per exploration: one round's timing is noisy
        self.margin = margin  # a challenger must be this much faster to take over
        self.decay = decay
        self.max_backoff = max_backoff  # 1: every candidate is explored in turn, always
        self.backoff_gap = backoff_gap  # how much slower a candidate must be to back off
        self.plain_chain = plain_chain  # plain steps one round may run
        self.round_chain = round_chain  # rounds one engine call may run (plain decoding, the model-free arm)
        self.round = 0
        self.current = 0
        self.exploring = -1  # the arm of the burst under way, -1: none
        self.max_draft_cost = max_draft_cost
        self.draft_costs: dict[str, float] | None = None  # plan name -> draft token / plain step

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
            if a.n_draft == 0 and a.sources:  # the model-free arm: its worth is the text's
                a.backoff, a.skip = 1, 0
        if any(a.prior > 0.0 for a in self.arms):
            self.current = max(range(len(self.arms)), key=lambda i: self.arms[i].prior)
        self.exploring = -1

    def prepare(self, ctx) -> None:
        if self.max_draft_cost is not None and self.draft_costs is None:
            if any(a.n_draft != 0 for a in self.arms):
                self._drop_dear_drafts(ctx)
            else:
                self.draft_costs = {}
        if self.tree:
            self.tree.prepare(ctx)

    def _drop_dear_drafts(self, ctx, reps: int = 3) -> None:
        """Time each layer-skip candidate's draft token against a plain step (once, at the first
        prepare) and drop those dearer than max_draft_cost, keeping at least one arm."""
        one = ctx.time_verify(1, reps)
        costs: dict[str, float] = {}
        self.draft_costs = costs
        keep = []
        for a in self.arms:
            if a.n_draft != 0:  # a layer-skip candidate
                cost = ctx.time_verify(1, reps, plan=a.plan) / one
                costs[a.plan.describe()] = cost
                if cost > self.max_draft_cost:
                    continue
            keep.append(a)
        if not keep:  # only skip candidates, all dear: the cheapest stays
            keep = [min(self.arms, key=lambda a: costs[a.plan.describe()])]
        if len(keep) < len(self.arms):
            running = self.arms[self.current]
            self.arms = keep
            self.current = next((i for i, a in enumerate(keep) if a is running), 0)
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
        n_plain = n_rounds = 1
        if a.n_draft == 0 and arm != self.exploring:  # up to the round before the next burst
            start = self.explore_every - self.burst
            left = (start if phase < start else self.explore_every) - phase
            n_plain = max(1, min(self.plain_chain, left))
            n_rounds = max(1, min(self.round_chain, left))  # rounds one call runs back to back
        step = RoundPlan(
            a.plan, self.draft.n_max if a.n_draft is None else a.n_draft, self.draft.p_min, view, arm, n_plain
        )
        step.n_rounds = n_rounds
        if a.sources != ("skip",):
            step.sources = a.sources
            if self.tree and set(a.sources) & set(self.tree.sources):
                self.tree.fill(step, "skip" in a.sources)
        return step

    def observe(self, step: RoundPlan, result: RoundResult) -> None:
        if step.is_plain:  # every plain step it ran counts as a round (a chain's, or back to back)
            self.round += max(0, len(result.tokens) - 1)
        else:  # and so does every round run back to back
            self.round += result.n_plain_steps + max(0, len(result.steps) - 1)
        if self.tree:
            self.tree.observe(result)
        a = self.arms[step.arm]
        decay = self.decay ** max(1, len(result.steps))  # a decay per round, however many one call ran
        a.tokens = a.tokens * decay + len(result.tokens)
        a.seconds = a.seconds * decay + result.seconds()
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
            self.draft.update(*skip_counts(step, result))

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
        """Measured tokens/s of each candidate (this generation), by name."""
        return {_arm_name(a): a.speed() for a in self.arms}


def _arm_name(a: _Arm) -> str:
    if not a.sources:
        return "plain decoding"
    text = "+".join(s for s in a.sources if s != "skip")
    if a.n_draft == 0:
        return text
    return a.plan.describe() + (f" + {text}" if text else "")


def make_policy(name: str, model, plan_file: str | None = None, draft: str | Sequence[str] | None = None) -> Policy:
    """Policy by name: "static" (default plan or --plan FILE), "adaptive" (candidates around the
    default plan and the model-free sources alone, chosen by measured speed; plain decoding is
    a candidate only without model-free sources, which decode plainly where they propose
    nothing; a draft KV view on long contexts), "progressive" (skip more as the context
    grows). `draft`: the sources the rounds may draft from (`parse_draft`; default: all of
    them, but token recycling only on the CPU and, for the adaptive policy, the layer-skip draft
    only on a GPU, and there only its candidates whose draft token costs at most half a plain
    step, measured at the first generation). The model-free ones join every draft in one token
    tree, cut by the verify cost measured on the device. Raises ValueError for an unknown name
    or source."""
    sources = parse_draft(draft)
    if draft is None and model.device != "cpu":
        # Token recycling on a GPU (its successors picked on the device: Context.top_k) proposes
        # nodes accepted at 0.17 that grow the trees: SmolLM2 on Spec-Bench 1.44x against 1.64x
        # without it (H100, one call; docs/BENCHMARKS.md). Name it in `draft` to have it.
        sources = tuple(s for s in sources if s != "recycle")
    if draft is None and model.device == "cpu" and name == "adaptive":
        # On the CPU a layer-skip draft token costs 0.6-0.85 of a full step (SmolLM2, docs/
        # BENCHMARKS.md) while each verified token adds ~0.26 of one: it cannot pay at the
        # acceptance it reaches, and exploring its arms costs ~5% on Spec-Bench. Name it in
        # `draft` to have it.
        sources = tuple(s for s in sources if s != "skip")
    text = tuple(s for s in sources if s != "skip")
    skip = "skip" in sources
    tree = TreeShape(text) if text else None
    base = Plan.load(plan_file) if plan_file else default_plan(model)
    if name == "static":
        if plan_file and skip:
            pol = StaticPolicy.from_file(plan_file)
            pol.tree = tree
            return pol
        return StaticPolicy(base, tree=tree, skip=skip)
    if name == "adaptive":
        return AdaptivePolicy(
            _neighbours(base, model.n_layer) if skip else [],
            kv=KVViewPolicy(),
            # The model-free arm decodes plainly wherever its sources propose nothing worth the
            # verify (its tree is cut by the measured cost and acceptance), so it is the plain
            # fallback itself; a plain-decoding arm beside it only switched away from it on a
            # stretch of rejections and stayed off until the next burst: SmolLM2 on Spec-Bench,
            # CPU (AMD EPYC Zen 3, 2 threads), 1.21-1.24x with it against 1.25-1.27x without it
            # in three runs; Qwen2.5-Coder-0.5B 1.37x against 1.42x (docs/BENCHMARKS.md).
            # Without model-free sources (draft "skip"), plain decoding is the arm the skip
            # drafts must beat.
            with_plain=not text,
            explore_every=40,
            burst=4,
            margin=0.05,
            max_backoff=8,
            plain_chain=16,
            # A GPU round of a small model takes ~1 ms and the Python around each ~0.1 ms: the
            # model-free arm runs up to 16 rounds a call there (the CPU's rounds take 10-50 ms).
            round_chain=1 if model.device == "cpu" else 16,
            tree=tree,
            max_draft_cost=MAX_DRAFT_COST if draft is None else None,
        )
    if name == "progressive":
        more = Plan.skipping(
            set(base.skip_attn) | set(range(1, model.n_layer - 1, 2)), base.skip_mlp, base.groups, base.head_rows
        )
        return StaticPolicy(
            base, schedule=ProgressiveSchedule([(0, base), (1024, more)]), kv=KVViewPolicy(), tree=tree, skip=skip
        )
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
