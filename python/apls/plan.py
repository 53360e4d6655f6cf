"""Layer plans: which attention and MLP sub-blocks of each layer run."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Tuple

import numpy as np


@dataclass(frozen=True)
class Plan:
    """A layer plan. `skip_attn` / `skip_mlp` list the layers whose sub-block is skipped.

    The empty plan is the full model (bit-identical to passing no plan).
    """

    skip_attn: Tuple[int, ...] = field(default_factory=tuple)
    skip_mlp: Tuple[int, ...] = field(default_factory=tuple)

    @staticmethod
    def skipping(attn: Iterable[int] = (), mlp: Iterable[int] = ()) -> "Plan":
        return Plan(tuple(sorted(set(attn))), tuple(sorted(set(mlp))))

    def arrays(self, n_layer: int) -> Tuple[np.ndarray, np.ndarray]:
        """(attn, mlp) uint8 arrays of n_layer flags, 1 = run. Raises ValueError for a bad layer."""
        attn = np.ones(n_layer, np.uint8)
        mlp = np.ones(n_layer, np.uint8)
        for name, layers, arr in (("skip_attn", self.skip_attn, attn), ("skip_mlp", self.skip_mlp, mlp)):
            for layer in layers:
                if not 0 <= layer < n_layer:
                    raise ValueError(f"{name} names layer {layer}, the model has {n_layer} layers")
                arr[layer] = 0
        return attn, mlp
