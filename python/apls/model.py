"""`apls.Model` and `apls.Context`: the engine from Python."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Union

import numpy as np

from . import _core
from .chat import render_chat
from .generate import GenerationStats, SamplingParams, generate_tokens, stream_text
from .plan import Plan

if TYPE_CHECKING:
    from .kv import KVCache, KVView

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
        n_threads: worker threads (0: the physical cores this process may use — its CPU affinity,
            capped by a container's CPU quota).
        n_seq_max: number of sequences the cache can hold.
        kv_block_size: tokens per KV block.
        kv_type: "f16" (default) or "f32" storage for keys and values.

    Raises:
        apls.InvalidArgumentError: for a bad setting; apls.OutOfMemoryError if the cache does not fit.
    """

    def __init__(
        self,
        model: Model,
        n_ctx: int = 0,
        n_batch: int = 512,
        n_threads: int = 0,
        n_seq_max: int = 1,
        kv_block_size: int = 16,
        kv_type: str = "f16",
    ):
        self.model = model
        self._ctx = _core.Context(
            model._model,
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_threads=n_threads,
            n_seq_max=n_seq_max,
            kv_block_size=kv_block_size,
            kv_type=kv_type,
        )

    @property
    def n_ctx(self) -> int:
        return self._ctx.n_ctx

    @property
    def n_threads(self) -> int:
        return self._ctx.n_threads

    def decode(
        self,
        tokens: TokenIds,
        *,
        logits: str | np.ndarray = "all",
        pos: TokenIds | None = None,
        seq_ids: TokenIds | None = None,
        plan: Plan | None = None,
        view: KVView | None = None,
    ) -> np.ndarray:
        """Run tokens through the model, appending them to the KV cache.

        Args:
            tokens: token ids (n,), decoded as one batch.
            logits: "all" (default), "last", or a boolean mask (n,) of rows to return.
            pos: positions (n,); default: each sequence continues where it stands.
            seq_ids: sequence of each token (n,); default: sequence 0.
            plan: a layer plan (skipped sub-blocks); default: the full model.
            view: an `apls.kv.KVView` restricting what attention sees of the cache; default: all.

        Returns:
            float32 array (n_outputs, n_vocab) of logits, one row per requested token.

        Raises:
            apls.InvalidArgumentError: a token out of range, a batch too large, a bad plan;
            apls.KVCacheFullError: no room left (the cache is unchanged).
        """
        mask = logits if isinstance(logits, str) else np.asarray(logits, dtype=np.uint8)
        kw = plan.arrays(self.model.n_layer) if plan is not None else {}
        if view is not None:
            return self._ctx.decode_view(
                _tokens(tokens),
                None if pos is None else _tokens(pos),
                None if seq_ids is None else _tokens(seq_ids),
                mask,
                **kw,
                **view.arrays(),
            )
        return self._ctx.decode(
            _tokens(tokens),
            None if pos is None else _tokens(pos),
            None if seq_ids is None else _tokens(seq_ids),
            mask,
            **kw,
        )

    def decode_greedy(self, tokens: TokenIds, *, pos: TokenIds | None = None, seq_ids: TokenIds | None = None) -> int:
        """Like `decode`, but return the greedy choice after the last token (its largest logit;
        ties to the lowest id) instead of logits: what a greedy sampler without penalties picks.
        On a GPU the choice is made there and only the token is copied back."""
        return self._ctx.decode_greedy(
            _tokens(tokens), None if pos is None else _tokens(pos), None if seq_ids is None else _tokens(seq_ids)
        )

    def generate_greedy(self, last: int, n_max: int, *, seq: int = 0, stop_at_eog: bool = True) -> list[int]:
        """Greedy generation with the full model after `last`, a token chosen but not yet decoded:
        decodes it and then each token the model picks, up to n_max steps (fewer when the KV
        cache has less room), ending after an end-of-generation token when stop_at_eog.

        Returns the chosen tokens, the same as `decode_greedy` one token at a time; the cache then
        holds everything before the last of them (the next call's `last`). On a GPU the steps
        are queued as one chain, each token taken from the previous step's choice on the device,
        and the host waits once. No logits are kept.

        Raises:
            apls.InvalidArgumentError: `last` out of range, an unknown sequence, n_max < 0;
            apls.KVCacheFullError: no room for `last` (the cache is unchanged).
        """
        return self._ctx.generate_greedy(int(last), int(n_max), int(seq), bool(stop_at_eog))

    @property
    def kv(self) -> KVCache:
        """The KV cache's operations: truncate, delete, fork, keep, clear, stats (`apls.kv.KVCache`)."""
        from .kv import KVCache

        return KVCache(self._ctx)

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
        n_threads: default worker threads (0: physical cores this process may use).
        use_mmap: map the file instead of reading it.
        device: "cuda" (weights copied to the GPU, forward pass there), "cpu", or "auto" (the
            default: CUDA when this build has it, a GPU is usable and the CUDA backend runs the
            model — llama architecture, head dimension a multiple of 8 up to 128, F32, F16,
            BF16, Q8_0, Q4_0 or Q4_1 matrices — else the CPU; the environment variable
            APLS_DEVICE=cpu|cuda names the device instead). `model.device` says where it
            runs; `model.device_note` why "auto" chose the CPU, or that APLS_DEVICE chose.

    Raises:
        apls.FileError: the file cannot be opened; apls.FormatError: it is not valid GGUF;
        apls.UnsupportedError: an architecture or tensor type the engine does not run.
    """

    def __init__(self, path: str, n_ctx: int = 0, n_threads: int = 0, use_mmap: bool = True, device: str = "auto"):
        self._model = _core.Model(str(path), use_mmap, device)
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

    def logits(self, tokens: TokenIds, plan: Plan | None = None) -> np.ndarray:
        """Logits for every position of `tokens` from a fresh context: float32 (n_tokens, n_vocab)."""
        toks = _tokens(tokens)
        n = len(toks)
        ctx = self.context(n_ctx=max(self.n_ctx, n), n_batch=min(512, n))
        rows = [ctx.decode(toks[i : i + 512], plan=plan) for i in range(0, n, 512)]
        return np.concatenate(rows)

    # ---- text ---------------------------------------------------------------------------
    @property
    def vocab(self):
        """The model's tokenizer (`apls._core.Vocab`)."""
        v = self._model.vocab
        if v is None:
            raise _core.UnsupportedError("the model file has no tokenizer (tokenizer.ggml.model is absent)")
        return v

    def tokenize(self, text: str | bytes, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of `text`. add_special adds BOS/EOS as the model file says; parse_special
        turns control-token text such as "<|im_start|>" into its id."""
        return self.vocab.tokenize(text, add_special, parse_special)

    def detokenize(self, ids: Sequence[int], special: bool = False) -> str:
        """Text of token ids (invalid UTF-8, possible only from a partial sequence, is replaced).
        Raises apls.InvalidArgumentError for an id out of range."""
        return self.vocab.detokenize([int(i) for i in ids], special).decode("utf-8", errors="replace")

    def generate(
        self,
        prompt: str | Sequence[int],
        max_tokens: int = 128,
        *,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        penalty_last_n: int = 64,
        stop: Sequence[str] | None = None,
        seed: int = 0,
        stream: bool = False,
        ignore_eos: bool = False,
        add_special: bool = True,
        parse_special: bool = False,
        n_ctx: int | None = None,
        speculative: bool = False,
        policy=None,
        stream_past_window: bool = False,
    ) -> str | Iterator[str]:
        """Generate a continuation of `prompt` (text, or token ids).

        Sampling follows llama.cpp's chain (penalties, top-k, top-p, min-p, temperature); a
        temperature <= 0 is greedy. Generation stops at an end-of-generation token (unless
        ignore_eos), at the first of the `stop` strings (not included in the output), after
        `max_tokens`, or when the context is full — unless stream_past_window, which deletes the
        oldest entries after 4 attention sinks and goes on. Statistics of the last call are in
        `self.last_stats`.

        speculative=True decodes with APLS (self-speculative decoding; `policy` chooses the draft
        plan, default `apls.policy.StaticPolicy.default_for(model)`): greedy output is identical,
        sampled output has the same distribution, penalties included.

        Returns:
            the generated text, or with stream=True an iterator of text pieces (whole characters).
        Raises:
            apls.InvalidArgumentError for bad settings; apls.UnsupportedError without a tokenizer.
        """
        if speculative:
            from .speculative import SpeculativeGenerator

            return SpeculativeGenerator(self, policy, n_ctx=n_ctx).generate(
                prompt,
                max_tokens,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                min_p=min_p,
                seed=seed,
                repeat_penalty=repeat_penalty,
                frequency_penalty=frequency_penalty,
                presence_penalty=presence_penalty,
                penalty_last_n=penalty_last_n,
                stop=stop,
                stream=stream,
                ignore_eos=ignore_eos,
                add_special=add_special,
                parse_special=parse_special,
            )
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        ids = self.tokenize(prompt, add_special, parse_special) if isinstance(prompt, (str, bytes)) else list(prompt)
        if not ids:
            raise ValueError("the prompt is empty")
        params = SamplingParams(
            temperature, top_k, top_p, min_p, repeat_penalty, frequency_penalty, presence_penalty, penalty_last_n, seed
        )
        sampler = params.sampler()  # validates the settings before any work
        n_ctx = n_ctx or self.n_ctx or min(self.n_ctx_train, 4096)
        if len(ids) >= n_ctx:
            raise ValueError(f"the prompt has {len(ids)} tokens, the context holds {n_ctx}")
        ctx = self.context(n_ctx=n_ctx)
        stats = GenerationStats()
        self.last_stats = stats
        pieces = stream_text(
            self.vocab,
            generate_tokens(ctx, ids, max_tokens, sampler, ignore_eos, stats, stream_past_window),
            stop or [],
            stats,
        )
        return pieces if stream else "".join(pieces)

    def chat_prompt(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The model's chat template applied to `messages` (raises ChatTemplateError without one)."""
        v = self.vocab
        tok = lambda i: v.token_to_piece(i, True).decode("utf-8", "replace") if i >= 0 else ""  # noqa: E731
        return render_chat(
            self._model.meta("tokenizer.chat_template"),
            messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=tok(v.bos),
            eos_token=tok(v.eos),
        )

    def chat(self, messages: list[dict[str, str]], max_tokens: int = 256, **kwargs) -> str | Iterator[str]:
        """Reply to a conversation ([{"role": "user", "content": "..."}, ...]) using the model's
        chat template; keyword arguments as for `generate`."""
        prompt = self.chat_prompt(messages)
        kwargs.setdefault("add_special", False)  # the template places BOS itself
        kwargs.setdefault("parse_special", True)
        return self.generate(prompt, max_tokens, **kwargs)
