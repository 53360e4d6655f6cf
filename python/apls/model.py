"""`apls.Model` and `apls.Context`: the engine from Python."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from . import _core
from .plan import Plan

TokenIds = Union[Sequence[int], np.ndarray]


def _tokens(tokens: TokenIds) -> np.ndarray:
    a = np.asarray(tokens)
    if a.ndim != 1 or a.size == 0:
        raise ValueError("tokens must be a non-empty 1-D sequence of token ids")
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"token ids must be integers, not {a.dtype}")
    return a.astype(np.int32)


class Context:
    """A decoding context: a KV cache and the buffers of one model.

    Args:
        model: the `Model` to run.
        n_ctx: KV cache capacity in tokens (0: the model's training context, at most 4096).
        n_batch: most tokens per `decode` call.
        n_threads: worker threads (0: the machine's physical cores).
        n_seq_max: number of sequences the cache can hold.
        kv_block_size: tokens per KV block.
        kv_type: "f16" (default) or "f32" storage for keys and values.

    Raises:
        apls.InvalidArgumentError: for a bad setting; apls.OutOfMemoryError if the cache does not fit.
    """

    def __init__(self, model: "Model", n_ctx: int = 0, n_batch: int = 512, n_threads: int = 0,
                 n_seq_max: int = 1, kv_block_size: int = 16, kv_type: str = "f16"):
        self.model = model
        self._ctx = _core.Context(model._model, n_ctx=n_ctx, n_batch=n_batch, n_threads=n_threads,
                                  n_seq_max=n_seq_max, kv_block_size=kv_block_size, kv_type=kv_type)

    @property
    def n_ctx(self) -> int:
        return self._ctx.n_ctx

    @property
    def n_threads(self) -> int:
        return self._ctx.n_threads

    def decode(self, tokens: TokenIds, *, logits: Union[str, np.ndarray] = "all", pos: Optional[TokenIds] = None,
               seq_ids: Optional[TokenIds] = None, plan: Optional[Plan] = None) -> np.ndarray:
        """Run tokens through the model, appending them to the KV cache.

        Args:
            tokens: token ids (n,), decoded as one batch.
            logits: "all" (default), "last", or a boolean mask (n,) of rows to return.
            pos: positions (n,); default: each sequence continues where it stands.
            seq_ids: sequence of each token (n,); default: sequence 0.
            plan: a layer plan (skipped sub-blocks); default: the full model.

        Returns:
            float32 array (n_outputs, n_vocab) of logits, one row per requested token.

        Raises:
            apls.InvalidArgumentError: a token out of range, a batch too large, a bad plan;
            apls.KVCacheFullError: no room left (the cache is unchanged).
        """
        mask = logits if isinstance(logits, str) else np.asarray(logits, dtype=np.uint8)
        attn = mlp = None
        if plan is not None:
            attn, mlp = plan.arrays(self.model.n_layer)
        return self._ctx.decode(_tokens(tokens), None if pos is None else _tokens(pos),
                                None if seq_ids is None else _tokens(seq_ids), mask, attn, mlp)

    def kv_seq_len(self, seq: int = 0) -> int:
        """Number of cached entries of a sequence."""
        return self._ctx.kv_seq_len(seq)

    def kv_truncate(self, seq: int, n: int) -> None:
        """Keep the first n cached entries of a sequence (rollback)."""
        self._ctx.kv_truncate(seq, n)

    def kv_clear(self) -> None:
        """Empty the cache (all sequences)."""
        self._ctx.kv_clear()


class Model:
    """A model loaded from a GGUF file.

    Args:
        path: the GGUF file.
        n_ctx: default context size for contexts made by this object (0: training context, <= 4096).
        n_threads: default worker threads (0: physical cores).
        use_mmap: map the file instead of reading it.

    Raises:
        apls.FileError: the file cannot be opened; apls.FormatError: it is not valid GGUF;
        apls.UnsupportedError: an architecture or tensor type the engine does not run.
    """

    def __init__(self, path: str, n_ctx: int = 0, n_threads: int = 0, use_mmap: bool = True):
        self._model = _core.Model(str(path), use_mmap)
        self.path = str(path)
        self.n_ctx = n_ctx
        self.n_threads = n_threads

    def __getattr__(self, name):
        # Hyperparameters (n_vocab, n_layer, n_embd, ...) come from the engine.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._model, name)

    def context(self, **kwargs) -> Context:
        """A new `Context` with this model's defaults (keyword arguments override them)."""
        kwargs.setdefault("n_ctx", self.n_ctx)
        kwargs.setdefault("n_threads", self.n_threads)
        return Context(self, **kwargs)

    def logits(self, tokens: TokenIds, plan: Optional[Plan] = None) -> np.ndarray:
        """Logits for every position of `tokens` from a fresh context: float32 (n_tokens, n_vocab)."""
        toks = _tokens(tokens)
        n = len(toks)
        ctx = self.context(n_ctx=max(self.n_ctx, n), n_batch=min(512, n))
        rows = [ctx.decode(toks[i:i + 512], plan=plan) for i in range(0, n, 512)]
        return np.concatenate(rows)
