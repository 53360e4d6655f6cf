"""The scheduler's slots: one KV cache sequence each, the tokens whose entries it holds, and
prefix sharing between them (fork = copy-on-write in the block KV cache).

A slot holds the running request placed in it, or none; an idle slot keeps the entries of the
last request it ran, so that a later request starting with the same tokens (the next turn of a
chat, a common system prompt) shares them instead of computing them again.
"""

from __future__ import annotations

import time

import numpy as np


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two token arrays."""
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


class Slot:
    """Sequence `seq` of the KV cache and its tokens (entry j holds tokens[j] at position j)."""

    def __init__(self, seq: int, capacity: int):
        self.seq = seq
        self._tokens = np.zeros(capacity, dtype=np.int32)
        self.n = 0
        self.job = None  # the running Job, or None
        self.last_used = 0.0

    @property
    def tokens(self) -> np.ndarray:
        return self._tokens[: self.n]

    def appended(self, tokens) -> None:
        """Record entries that a decode call appended."""
        self._tokens[self.n : self.n + len(tokens)] = tokens
        self.n += len(tokens)


class Slots:
    """The slots of one context, and the cache operations that keep them and the KV cache in step."""

    def __init__(self, ctx, n_slots: int, capacity: int):
        self.kv = ctx.kv
        self.all = [Slot(i, capacity) for i in range(n_slots)]

    def busy(self) -> list[Slot]:
        return [s for s in self.all if s.job is not None]

    def n_busy(self) -> int:
        return sum(1 for s in self.all if s.job is not None)

    def best_prefix(self, prompt: np.ndarray, exclude: Slot | None = None) -> tuple[Slot | None, int]:
        """The slot sharing the longest prefix with `prompt`, and its length, capped one token
        short of the prompt (its last token must be decoded to get the logits that follow)."""
        best, best_n = None, 0
        for s in self.all:
            if s is exclude or s.n == 0 or s.tokens[0] != prompt[0]:
                continue
            n = min(common_prefix(s.tokens, prompt), len(prompt) - 1)
            if n > best_n:
                best, best_n = s, n
        return best, best_n

    def place(self, prompt: np.ndarray) -> tuple[Slot, int] | None:
        """A free slot for a request, holding the longest prefix of `prompt` any slot has: the
        idle slot that holds it (when no empty one is left), else an empty or the least recently
        used idle slot, given the prefix by a fork. Returns (slot, prefix length), or None when
        every slot runs a request."""
        free = [s for s in self.all if s.job is None]
        if not free:
            return None
        src, n = self.best_prefix(prompt)
        empty = [s for s in free if s.n == 0]
        if src is not None and src.job is None and not empty:
            self.truncate(src, n)  # take the idle cache over
            return src, n
        dst = empty[0] if empty else min(free, key=lambda s: s.last_used)
        if src is not None and src is not dst:
            self.share(src, dst, n)
        else:
            self.truncate(dst, n)
        return dst, n

    def share(self, src: Slot, dst: Slot, n: int) -> None:
        """dst holds the first n entries of src, sharing its blocks (fork, then truncate)."""
        self.kv.fork(src.seq, dst.seq)
        self.kv.truncate(dst.seq, n)
        dst._tokens[:n] = src._tokens[:n]
        dst.n = n

    def truncate(self, slot: Slot, n: int) -> None:
        if n < slot.n:
            self.kv.truncate(slot.seq, n)
            slot.n = n

    def clear(self, slot: Slot) -> None:
        """Free the slot's entries (its blocks go back to the pool unless another slot shares them)."""
        self.kv.clear(slot.seq)
        slot.n = 0
        slot.last_used = time.monotonic()
