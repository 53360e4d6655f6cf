"""Draft sources for the server's speculative decoding: guesses of the tokens that follow a request's text.

A drafter is made per request and asked, each step, for up to k tokens that may follow the
request's tokens so far (prompt + output, the last one chosen but not yet decoded). The model
verifies them in the same batch as every other request's tokens, so a draft must cost almost
nothing to make: `PromptLookup` looks the text's last n-gram up in the text itself.

The engine's own draft sources (prompt lookup, suffix index, token recycling in C++) plug in
here: anything with `propose(tokens, k) -> list[int]` will do (`Scheduler(drafter=...)` takes a
factory that makes one per request).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Drafter(Protocol):
    def propose(self, tokens: Sequence[int], k: int) -> list[int]:
        """Up to k tokens that may follow `tokens` (the request's whole text so far, which only
        grows between calls); [] when there is no guess."""
        ...


class PromptLookup:
    """Prompt lookup decoding: find the most recent earlier occurrence of the text's last n-gram
    (n from n_max down to n_min) and propose the tokens that followed it.

    The index grows with the text: each call indexes only the tokens added since the last one,
    so a step costs O(new tokens * n) however long the text is."""

    def __init__(self, n_max: int = 3, n_min: int = 2):
        if not 1 <= n_min <= n_max:
            raise ValueError(f"need 1 <= n_min <= n_max, got n_min {n_min}, n_max {n_max}")
        self.n_min, self.n_max = n_min, n_max
        self._where: dict[tuple[int, ...], int] = {}  # n-gram -> index just after its latest occurrence
        self._indexed = 0  # n-grams ending before this index are in _where

    def propose(self, tokens: Sequence[int], k: int) -> list[int]:
        n = len(tokens)
        # Index the n-grams that end before the last token: each has a continuation.
        for end in range(max(self._indexed, self.n_min), n):
            for size in range(self.n_min, min(self.n_max, end) + 1):
                self._where[tuple(tokens[end - size : end])] = end
        self._indexed = max(self._indexed, n)
        if k <= 0:
            return []
        for size in range(min(self.n_max, n - 1), self.n_min - 1, -1):
            end = self._where.get(tuple(tokens[n - size :]))
            if end is not None:
                return list(tokens[end : end + k])
        return []
