"""Draft KV deletion: on long contexts the draft attends to a view of the cache (attention sinks
plus a recent window), so its attention cost stays flat as the context grows. The verifier
always sees the whole cache, so the output stays lossless."""

from __future__ import annotations

from dataclasses import dataclass

from .kv import KVView


@dataclass
class KVViewPolicy:
    """Use a (n_sink, n_window) view for the draft once the context holds `min_context` tokens."""

    n_sink: int = 4
    n_window: int = 256
    min_context: int = 1024

    def view_for(self, n_context: int) -> KVView | None:
        """The draft's view at this context length, or None (the whole cache)."""
        if n_context < self.min_context:
            return None
        return KVView.sinks_window(self.n_sink, self.n_window)
