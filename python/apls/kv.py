"""The KV cache from Python: sequence operations, statistics, views, and a streaming helper.

`ctx.kv` (an `apls.Context`) is a `KVCache`; `ctx.decode(..., view=KVView(...))` restricts what
attention sees. The cache itself has no policy: `make_room` is the streaming policy (attention
sinks + a sliding window, StreamingLLM-style), built from `delete(..., shift=True)`.
See docs/KV_CACHE.md for the design and the cost of each operation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _core

if TYPE_CHECKING:
    from .model import Context


KVView = _core.KVView  # (n_sink, n_window) or explicit positions; the engine's own type


class KVCache:
    """Operations on the KV cache of a context. Every failing call leaves the cache unchanged and
    raises apls.InvalidArgumentError (unknown sequence, bad range) or apls.KVCacheFullError (no
    free block for a copy the operation needs)."""

    def __init__(self, core_ctx: _core.Context):
        self._c = core_ctx

    @property
    def n_seq_max(self) -> int:
        return self._c.n_seq_max

    @property
    def block_size(self) -> int:
        return self._c.kv_block_size

    def seq_len(self, seq: int = 0) -> int:
        """Entries held by a sequence."""
        return self._c.kv_seq_len(seq)

    def pos_min(self, seq: int = 0) -> int:
        """Smallest position held (-1 if empty)."""
        return self._c.kv_pos_min(seq)

    def pos_max(self, seq: int = 0) -> int:
        """Largest position held (-1 if empty); a batch without positions continues at pos_max + 1."""
        return self._c.kv_pos_max(seq)

    def positions(self, seq: int = 0) -> list[int]:
        """Positions of a sequence's entries, in cache order."""
        return list(self._c.kv_positions(seq))

    def truncate(self, seq: int, n: int) -> None:
        """Keep the first n entries of a sequence (rollback)."""
        self._c.kv_truncate(seq, n)

    def delete(self, seq: int, p0: int, p1: int, shift: bool = False) -> None:
        """Remove positions [p0, p1) of a sequence (0 <= p0 < p1 <= pos_max + 1). With shift,
        later positions move down by p1 - p0 and their keys are re-rotated to match."""
        self._c.kv_delete(seq, p0, p1, shift)

    def fork(self, src: int, dst: int | None = None) -> int:
        """Make `dst` (default: the lowest-numbered empty sequence other than src) a
        copy-on-write copy of `src`; returns dst."""
        if dst is None:
            free = [s for s in range(self.n_seq_max) if s != src and self.seq_len(s) == 0]
            if not free:
                raise _core.InvalidArgumentError(
                    f"fork of sequence {src}: no empty sequence left (n_seq_max {self.n_seq_max})"
                )
            dst = free[0]
        self._c.kv_fork(src, dst)
        return dst

    def keep(self, seq: int) -> None:
        """Drop every sequence but `seq`."""
        self._c.kv_keep(seq)

    def clear(self, seq: int | None = None) -> None:
        """Drop one sequence, or (seq None) everything."""
        if seq is None:
            self._c.kv_clear()
        else:
            self._c.kv_clear_seq(seq)

    def stats(self) -> dict[str, float]:
        """n_blocks, block_size, blocks_used, blocks_free, blocks_shared, n_seq_used, tokens
        (occupied slots), entries (sum of sequence lengths), holes (empty slots in used blocks),
        fragmentation = 1 - tokens / (blocks_used * block_size)."""
        return dict(self._c.kv_stats())

    def check(self) -> None:
        """Verify the cache's invariants (raises apls.InternalError naming a violation)."""
        self._c.kv_check()


def make_room(
    ctx: Context, seq: int, n_needed: int, n_sink: int = 4, n_discard: int | None = None, n_pos_max: int | None = None
) -> int:
    """Streaming: make room for `n_needed` more tokens of `seq` by deleting its oldest entries
    after the first `n_sink` (the attention sinks), shifting later positions down so positions
    stay below `n_pos_max` (default: the context size) however long generation runs.

    Nothing happens while the tokens fit (free slots in the pool and positions below
    n_pos_max). Otherwise at least `n_discard` entries are deleted (default: a quarter of the
    non-sink entries, so that deletions, which move the remaining entries, stay rare).

    Args:
        ctx: an `apls.Context`.
    Returns:
        the number of entries deleted.
    Raises:
        apls.KVCacheFullError: even deleting every non-sink entry leaves too little room.
    """
    kv = ctx.kv
    if n_needed < 0 or n_sink < 0:
        raise ValueError("n_needed and n_sink must be >= 0")
    n_pos_max = ctx.n_ctx if n_pos_max is None else n_pos_max
    st = kv.stats()
    n = kv.seq_len(seq)
    room = st["blocks_free"] * st["block_size"] + (-n) % st["block_size"]  # pool + tail of the last block
    short = max(n_needed - room, kv.pos_max(seq) + 1 + n_needed - n_pos_max, 0)
    if short == 0:
        return 0
    n_old = n - n_sink  # deletable entries
    if n_old < short:
        raise _core.KVCacheFullError(
            f"cannot make room for {n_needed} tokens in sequence {seq}: it holds "
            f"{n} entries, {n_sink} of them sinks, and {room} slots are free"
        )
    n_drop = min(n_old, max(short, n_old // 4 if n_discard is None else n_discard))
    pos = kv.positions(seq)
    if sorted(pos) != pos:
        raise _core.InvalidArgumentError(f"make_room: sequence {seq} is not in position order")
    p0 = pos[n_sink]
    p1 = pos[n_sink + n_drop] if n_sink + n_drop < n else pos[-1] + 1
    kv.delete(seq, p0, p1, shift=True)
    return n_drop
