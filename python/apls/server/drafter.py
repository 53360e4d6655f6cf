"""Draft sources for the server's speculative decoding: guesses of the tokens that follow a request's text.

A drafter is made per request and asked, each step, for up to k tokens that may follow the
request's tokens so far (prompt + output, the last one chosen but not yet decoded). The model
verifies them in the same batch as every other request's tokens, so a draft must cost almost
nothing to make: `TextDrafter` asks the engine's model-free sources (prompt lookup and the suffix
index of `apls._core.Drafter`, the same ones a token-tree round uses) for their likeliest chain.

Anything with `propose(tokens, k) -> list[int]` will do (`Scheduler(drafter=...)` takes a
factory that makes one per request).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from .. import _core
from ..policy import DRAFT_SOURCES


class Drafter(Protocol):
    def propose(self, tokens: Sequence[int], k: int) -> list[int]:
        """Up to k tokens that may follow `tokens` (the request's whole text so far, which only
        grows between calls); [] when there is no guess."""
        ...


class TextDrafter:
    """One request's model-free drafts: the engine's drafter (`apls._core.Drafter`) over the
    request's text, which it indexes incrementally (each call adds only the new tokens), asked
    for the likeliest chain of its `sources` ("lookup", "suffix")."""

    def __init__(self, model, sources: Sequence[str] = ("lookup", "suffix")):
        bad = [s for s in sources if s not in DRAFT_SOURCES or s == "skip"]
        if bad or not sources:
            raise ValueError(f"sources must be among lookup, suffix, recycle; got {list(sources)}")
        self._d = _core.Drafter(model._model)
        self._bits = sum(1 << DRAFT_SOURCES.index(s) for s in sources)
        self._seen = 0  # tokens of the request's text the drafter holds

    def propose(self, tokens: Sequence[int], k: int) -> list[int]:
        n = len(tokens)
        if n < self._seen:
            raise ValueError(f"the text shrank from {self._seen} to {n} tokens")
        if n > self._seen:
            new = np.asarray(tokens[self._seen :], dtype=np.int32)
            if self._seen == 0:
                self._d.start(new)
            else:
                self._d.append(new)
            self._seen = n
        return self._d.propose_chain(max(k, 0), self._bits) if k > 0 else []
