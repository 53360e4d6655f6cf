"""Layer plans: which attention and MLP sub-blocks of each layer run, which consecutive layers
run as parallel groups, and how much of the output head a draft computes."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import _core


@dataclass(frozen=True)
class Plan:
    """A layer plan. The default Plan() is the full model (bit-identical to no plan).

    Attributes:
        skip_attn: layers whose attention sub-block is skipped.
        skip_mlp: layers whose MLP sub-block is skipped.
        groups: (first, last) inclusive layer ranges run as parallel groups: every layer of a
            group reads the group's input h, and the group outputs h + sum(layer(h) - h).
        head_rows: compute only logits of token ids < head_rows (0 = all); for drafts.
    """

    skip_attn: tuple[int, ...] = field(default_factory=tuple)
    skip_mlp: tuple[int, ...] = field(default_factory=tuple)
    groups: tuple[tuple[int, int], ...] = field(default_factory=tuple)
    head_rows: int = 0

    # ---- constructors ---------------------------------------------------------------------
    @staticmethod
    def skipping(
        attn: Iterable[int] = (), mlp: Iterable[int] = (), groups: Iterable[tuple[int, int]] = (), head_rows: int = 0
    ) -> Plan:
        return Plan(
            tuple(sorted(set(int(i) for i in attn))),
            tuple(sorted(set(int(i) for i in mlp))),
            tuple((int(a), int(b)) for a, b in groups),
            int(head_rows),
        )

    @staticmethod
    def early_exit(after: int, n_layer: int, head_rows: int = 0) -> Plan:
        """Run layers [0, after) only: the output head reads layer `after - 1`'s output."""
        rest = range(after, n_layer)
        return Plan.skipping(rest, rest, head_rows=head_rows)

    @staticmethod
    def from_dict(d: dict) -> Plan:
        """From {"skip_attn": [...], "skip_mlp": [...], "groups": [[a, b], ...], "head_rows": n}.
        Raises ValueError on unknown keys."""
        unknown = set(d) - {
            "skip_attn",
            "skip_mlp",
            "groups",
            "head_rows",
            "comment",
            "metrics",
            "n_draft",
            "p_min",
            "adapt_length",
        }
        if unknown:
            raise ValueError(f"unknown plan keys: {sorted(unknown)}")
        return Plan.skipping(d.get("skip_attn", ()), d.get("skip_mlp", ()), d.get("groups", ()), d.get("head_rows", 0))

    @staticmethod
    def load(path: str) -> Plan:
        """Read a plan from a JSON file (as written by `save` or `apls tune`)."""
        with open(path) as f:
            return Plan.from_dict(json.load(f))

    # ---- views ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "skip_attn": list(self.skip_attn),
            "skip_mlp": list(self.skip_mlp),
            "groups": [list(g) for g in self.groups],
            "head_rows": self.head_rows,
        }

    def save(self, path: str, **extra) -> None:
        with open(path, "w") as f:
            json.dump({**self.to_dict(), **extra}, f, indent=2)
            f.write("\n")

    @property
    def is_full(self) -> bool:
        return not (self.skip_attn or self.skip_mlp or self.groups or self.head_rows)

    def n_skipped(self) -> int:
        return len(self.skip_attn) + len(self.skip_mlp)

    def layers(self, n_layer: int) -> _core.Plan:
        """The plan as the engine runs it (`apls._core.Plan`: per-layer switches for a model of
        n_layer layers), built once per (plan, n_layer): the controller asks every round.
        Raises ValueError for a layer out of range or overlapping groups."""
        return _layers(self, n_layer)

    def describe(self, n_layer: int | None = None) -> str:
        parts = []
        if self.skip_attn:
            parts.append(f"skip attn {_ranges(self.skip_attn)}")
        if self.skip_mlp:
            parts.append(f"skip mlp {_ranges(self.skip_mlp)}")
        if self.groups:
            parts.append("groups " + ",".join(f"{a}-{b}" for a, b in self.groups))
        if self.head_rows:
            parts.append(f"head {self.head_rows}")
        return "; ".join(parts) or "full model"


@functools.lru_cache(maxsize=256)
def _layers(plan: Plan, n_layer: int) -> _core.Plan:
    attn = np.ones(n_layer, np.uint8)
    mlp = np.ones(n_layer, np.uint8)
    for name, skipped, arr in (("skip_attn", plan.skip_attn, attn), ("skip_mlp", plan.skip_mlp, mlp)):
        for layer in skipped:
            if not 0 <= layer < n_layer:
                raise ValueError(f"{name} names layer {layer}, the model has {n_layer} layers")
            arr[layer] = 0
    group = None
    if plan.groups:
        group = np.full(n_layer, -1, np.int32)
        for gid, (a, b) in enumerate(plan.groups):
            if not 0 <= a <= b < n_layer:
                raise ValueError(f"group ({a}, {b}) is not a layer range of a {n_layer}-layer model")
            if (group[a : b + 1] >= 0).any():
                raise ValueError(f"group ({a}, {b}) overlaps another group")
            group[a : b + 1] = gid
    return _core.Plan(attn, mlp, group, int(plan.head_rows))


def _ranges(xs: Sequence[int]) -> str:
    out, start, prev = [], None, None
    for x in sorted(xs):
        if start is None:
            start = prev = x
        elif x == prev + 1:
            prev = x
        else:
            out.append(f"{start}-{prev}" if start != prev else f"{start}")
            start = prev = x
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else f"{start}")
    return ",".join(out)
