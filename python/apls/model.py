"""`apls.Model` and `apls.Context`: the engine from Python."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar, Union, cast

import numpy as np

from . import _core
from .chat import render_chat
from .generate import GenerationStats, SamplingParams, generate_tokens, stream_text
from .kv import KVCache, KVView
from .plan import Plan
from .policy import Policy, RoundResult, make_policy
from .speculative import SpecStats, speculative_tokens

TokenIds = Union[Sequence[int], np.ndarray]
_T = TypeVar("_T")


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
        """KV cache capacity in tokens."""
        return self._ctx.n_ctx

    @property
    def n_batch(self) -> int:
        """Most tokens one `decode` call may carry."""
        return self._ctx.n_batch

    @property
    def n_threads(self) -> int:
        """Worker threads of this context."""
        return self._ctx.n_threads

    @property
    def n_seq_max(self) -> int:
        """Number of sequences the cache can hold."""
        return self._ctx.n_seq_max

    def decode(
        self,
        tokens: TokenIds,
        *,
        logits: str | np.ndarray = "all",
        pos: TokenIds | None = None,
        seq_ids: TokenIds | None = None,
        plan: Plan | None = None,
        view: KVView | None = None,
        parent: TokenIds | None = None,
    ) -> np.ndarray:
        """Run tokens through the model, appending them to the KV cache.

        Args:
            tokens: token ids (n,), decoded as one batch.
            logits: "all" (default), "last", or a boolean mask (n,) of rows to return.
            pos: positions (n,); default: each sequence continues where it stands.
            seq_ids: sequence of each token (n,); default: sequence 0.
            plan: a layer plan (skipped sub-blocks); default: the full model.
            view: an `apls.KVView` restricting what attention sees of the cache; default: all.
            parent: a token tree of one sequence (n,): each token's parent batch index, -1 for a
                root; each token sees the cache, its ancestors and itself (`kv.keep_path` keeps
                the accepted path afterwards); default: a causal batch.

        Returns:
            float32 array (n_outputs, n_vocab) of logits, one row per requested token.

        Raises:
            apls.InvalidArgumentError: a token out of range, a batch too large, a bad plan;
            apls.KVCacheFullError: no room left (the cache is unchanged).
        """
        mask = logits if isinstance(logits, str) else np.asarray(logits, dtype=np.uint8)
        return self._ctx.decode(
            _tokens(tokens),
            None if pos is None else _tokens(pos),
            None if seq_ids is None else _tokens(seq_ids),
            mask,
            None if plan is None else plan.layers(self.model.n_layer),
            view,
            None if parent is None else _tokens(parent),
        )

    def prefill(self, tokens: TokenIds, *, seq: int = 0) -> np.ndarray:
        """Decode a prompt in chunks of n_batch tokens (as many calls as it takes) after what
        sequence `seq` holds; returns the logits after its last token, float32 (n_vocab,).

        Raises as `decode` does; a chunk that fails leaves the chunks before it in the cache."""
        toks = _tokens(tokens)
        rows = [
            self.decode(chunk, logits="last", seq_ids=np.full(len(chunk), seq, np.int32) if seq else None)
            for chunk in np.split(toks, range(self.n_batch, len(toks), self.n_batch))
        ]
        return rows[-1][-1]

    def decode_greedy(self, tokens: TokenIds, *, pos: TokenIds | None = None, seq_ids: TokenIds | None = None) -> int:
        """Like `decode`, but return the greedy choice after the last token (its largest logit;
        ties to the lowest id) instead of logits: what a greedy sampler without penalties picks.
        On a GPU the choice is made there and only the token is copied back."""
        return self._ctx.decode_greedy(
            _tokens(tokens), None if pos is None else _tokens(pos), None if seq_ids is None else _tokens(seq_ids)
        )

    def decode_choose(
        self,
        tokens: TokenIds,
        *,
        logits: str | np.ndarray = "last",
        fetch: Sequence[bool],
        pos: TokenIds | None = None,
        seq_ids: TokenIds | None = None,
        parent: TokenIds | None = None,
    ) -> tuple[list[int], np.ndarray]:
        """Like `decode`, but return every output row's greedy choice (largest logit, ties to the
        lowest id; on a GPU made there) and the logits of only the output rows `fetch` marks
        (one flag per output row): what a batch of requests needs when some sample greedily
        without penalties and the rest need their logits, or a verify batch (`parent`: a token
        tree, as for `decode`). Returns (ids, float32 array (n_fetched, n_vocab)); with no row
        marked no logits are copied back.

        Raises as `decode` does; ValueError when `fetch` does not have one flag per output row."""
        mask = logits if isinstance(logits, str) else np.asarray(logits, dtype=np.uint8)
        return self._ctx.decode_choose(
            _tokens(tokens),
            [bool(f) for f in fetch],
            None if pos is None else _tokens(pos),
            None if seq_ids is None else _tokens(seq_ids),
            mask,
            None if parent is None else _tokens(parent),
        )

    def top_k(self, k: int) -> np.ndarray:
        """The k best token ids of every output row of the last decode, int32 (n_outputs, k):
        largest logit first, ties to the lowest id; on a GPU picked there, so the logits are not
        copied back (token recycling's successors). Raises apls.InvalidArgumentError for k
        outside [1, min(64, n_vocab)] or when the last decode kept no output row."""
        return self._ctx.top_k(k)

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

    def spec_round(
        self,
        last: int,
        plan: Plan,
        *,
        view: KVView | None = None,
        n_draft_max: int = 8,
        draft_p_min: float = 0.0,
        sampler: _core.Sampler | None = None,
        seq: int = 0,
    ) -> RoundResult:
        """One round of self-speculative decoding after `last` (chosen, not yet decoded): draft up
        to n_draft_max tokens under `plan` (stopping once the draft's top probability falls below
        draft_p_min), attending to `view` of the cache (None: all of it); verify them with the
        full model in one batch; accept the longest valid prefix and one token of the verifier.

        sampler None (or a greedy one without penalties): greedy acceptance, output identical to
        plain greedy decoding; otherwise rejection sampling, which keeps the sampler's
        distribution, penalties included (the sampler's history receives the round's output).
        Afterwards the cache holds everything before the round's last token.

        Returns: the round's tokens and statistics (`apls.policy.RoundResult`).
        Raises:
            apls.InvalidArgumentError: a bad plan or view, `last` out of range, an unknown sequence;
            apls.KVCacheFullError: no room for the verify batch. Either leaves cache and sampler as they were.
        """
        raw = _core.spec_round(
            self._ctx,
            int(last),
            plan.layers(self.model.n_layer),
            view,
            seq=seq,
            n_draft_max=n_draft_max,
            draft_p_min=draft_p_min,
            sampler=sampler,
        )
        return RoundResult(**raw)

    def spec_tree_round(
        self,
        last: int,
        drafter: _core.Drafter,
        params: _core.TreeParams,
        plan: Plan | None = None,
        *,
        view: KVView | None = None,
        sampler: _core.Sampler | None = None,
        max_rounds: int = 1,
        max_tokens: int = 0,
        stop_at_eog: bool = True,
    ) -> RoundResult:
        """One round of token-tree speculative decoding after `last` (chosen, not yet decoded; the
        drafter's text ends with it): candidates from the sources in `params` (the layer-skip
        draft under `plan` and `view`, prompt lookup, suffix index, token recycling) merged into
        one tree and cut by params' verify cost model, verified by the full model in one batch;
        the longest path the verifier agrees with is accepted (greedy: its argmax; sampling:
        multi-candidate rejection sampling, which keeps the sampler's distribution) with one
        token of the verifier, and every other node is rolled back. The drafter's text and
        tables take the outcome.

        max_rounds > 1: up to that many rounds back to back in one call, each after the last
        one's verifier token, while fewer than max_tokens tokens came out (0: no limit), ending
        after a round that produced an end-of-generation token (stop_at_eog) or before one the
        cache has no room for (a GPU round takes ~1 ms, this method's Python around it ~0.1 ms).

        Returns: the rounds' tokens and statistics (`apls.policy.RoundResult`; `steps`: each
        round's verify).
        Raises:
            apls.InvalidArgumentError: bad parameters, a bad plan or view, `last` out of range or
            not the drafter's last token; apls.KVCacheFullError: no room for the verify batch.
            Either leaves the cache, the sampler and the drafter as they were (an error in a
            round after the first ends the call with the rounds before it instead).
        """
        raw = _core.spec_tree_round(
            self._ctx,
            drafter,
            int(last),
            params,
            None if plan is None else plan.layers(self.model.n_layer),
            view,
            sampler,
            int(max_rounds),
            int(max_tokens),
            bool(stop_at_eog),
        )
        return RoundResult(**raw)

    @property
    def max_verify_batch(self) -> int:
        """The most tokens a verify batch may hold (n_batch on the CPU, the device's limit there)."""
        return _core.max_verify_batch(self._ctx)

    def time_verify(self, n_tokens: int, reps: int = 2, plan: Plan | None = None) -> float:
        """Seconds of a verify batch of n_tokens after what sequence 0 holds, as a round runs it
        (best of reps); the cache is left as it was. With a plan: the same batch under that plan
        (time_verify(1, plan=p) / time_verify(1) is what a draft token of p costs)."""
        core_plan = None if plan is None else plan.layers(self.model.n_layer)
        return _core.time_verify(self._ctx, int(n_tokens), int(reps), 0, core_plan)

    @property
    def kv(self) -> KVCache:
        """The KV cache's operations: truncate, delete, fork, keep, clear, stats (`apls.kv.KVCache`)."""
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


class _Generation(Iterator[int]):
    """`Model.generate_tokens`' iterator: the tokens; then what the generation took (its context,
    the default policy) goes back to the model — exhausted, closed, failed, or dropped, started
    or not (a generator never started would never run its `finally`)."""

    def __init__(self, tokens: Iterator[int], give_back: Callable[[], None]):
        self._tokens = tokens
        self._give_back: Callable[[], None] | None = give_back

    def __iter__(self) -> _Generation:
        return self

    def __next__(self) -> int:
        if self._give_back is None:
            raise StopIteration
        try:
            return next(self._tokens)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the generation; what it took is idle again (also when exhausted or dropped)."""
        give_back, self._give_back = self._give_back, None
        if give_back is None:
            return
        try:
            close = getattr(self._tokens, "close", None)
            if close is not None:
                close()
        finally:
            give_back()

    def __del__(self) -> None:
        self.close()


class Model:
    """A model loaded from a GGUF file.

    Args:
        path: the GGUF file.
        n_ctx: default context size for contexts made by this object (0: training context, <= 4096).
        n_threads: default worker threads (0: physical cores this process may use).
        use_mmap: map the file instead of reading it.
        device: "cuda" (weights copied to the GPU, forward pass there), "cpu", or "auto" (the
            default: CUDA when this build has it, a GPU is usable and the CUDA backend runs the
            model — llama, qwen2 or qwen3, head dimension a multiple of 8 up to 128, every
            weight type the CPU runs — else the CPU; the environment variable
            APLS_DEVICE=cpu|cuda names the device instead). `model.device` says where it
            runs; `model.device_note` why "auto" chose the CPU, or that APLS_DEVICE chose.

    Raises:
        apls.FileError: the file cannot be opened; apls.FormatError: it is not valid GGUF;
        apls.UnsupportedError: an architecture or tensor type the engine does not run.
    """

    def __init__(self, path: str, n_ctx: int = 0, n_threads: int = 0, use_mmap: bool = True, device: str = "auto"):
        try:
            self._model = _core.Model(str(path), use_mmap, device)
        except (_core.FileError, _core.FormatError, _core.UnsupportedError) as e:
            if str(path) in str(e):
                raise
            raise type(e)(f"{path}: {e}") from None  # which file, for whoever reads the message
        self.path = str(path)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.last_stats: GenerationStats | None = None  # of the last generate / generate_tokens call
        # What a generation used, once it is over, for the next one to take: its context, by n_ctx
        # (cache emptied; a new one would allocate again and, on a GPU, capture its CUDA graphs
        # again: ~1.3 ms for each batch shape), and the default speculative policy, by draft (a
        # new one would measure its verify costs again: ~0.4 s on 2 CPU cores).
        self._idle: dict[tuple, object] = {}
        self._idle_lock = threading.Lock()

    # ---- what the file holds ---------------------------------------------------------------
    @property
    def arch(self) -> str:
        """Architecture name ("llama", "qwen2", "qwen3")."""
        return self._model.arch

    @property
    def device(self) -> str:
        """Where the model runs: "cpu" or "cuda"."""
        return self._model.device

    @property
    def device_note(self) -> str:
        """Why device "auto" chose the CPU, or that APLS_DEVICE chose ("" otherwise)."""
        return self._model.device_note

    @property
    def n_vocab(self) -> int:
        return self._model.n_vocab

    @property
    def n_layer(self) -> int:
        return self._model.n_layer

    @property
    def n_embd(self) -> int:
        return self._model.n_embd

    @property
    def n_ff(self) -> int:
        return self._model.n_ff

    @property
    def n_head(self) -> int:
        return self._model.n_head

    @property
    def n_head_kv(self) -> int:
        return self._model.n_head_kv

    @property
    def n_ctx_train(self) -> int:
        """The context length the model was trained with."""
        return self._model.n_ctx_train

    @property
    def n_params(self) -> int:
        """Number of weights."""
        return self._model.n_params

    @property
    def size(self) -> int:
        """Bytes of the weights' tensor data."""
        return self._model.size

    def meta(self, key: str) -> str | None:
        """A string metadata value of the GGUF file (e.g. "tokenizer.chat_template"), or None."""
        return self._model.meta(key)

    # ---- contexts ---------------------------------------------------------------------------
    def context(
        self,
        n_ctx: int | None = None,
        n_batch: int = 512,
        n_threads: int | None = None,
        n_seq_max: int = 1,
        kv_block_size: int = 16,
        kv_type: str = "f16",
    ) -> Context:
        """A new `Context` (KV cache and buffers) for this model.

        Args:
            n_ctx: KV cache capacity in tokens, over all sequences (None: this model's n_ctx;
                0: the training context, at most 4096).
            n_batch: most tokens per `decode` call.
            n_threads: worker threads (None: this model's n_threads; 0: the physical cores this
                process may use).
            n_seq_max: number of sequences the cache can hold (`ctx.kv.fork` needs two or more).
            kv_block_size: tokens per KV block.
            kv_type: "f16" or "f32" storage for keys and values.

        Raises:
            apls.InvalidArgumentError: for a bad setting; apls.OutOfMemoryError if the cache does not fit.
        """
        return Context(
            self,
            n_ctx=self.n_ctx if n_ctx is None else n_ctx,
            n_batch=n_batch,
            n_threads=self.n_threads if n_threads is None else n_threads,
            n_seq_max=n_seq_max,
            kv_block_size=kv_block_size,
            kv_type=kv_type,
        )

    def logits(self, tokens: TokenIds, plan: Plan | None = None) -> np.ndarray:
        """Logits for every position of `tokens` from a fresh context: float32 (n_tokens, n_vocab)."""
        toks = _tokens(tokens)
        n = len(toks)
        ctx = self.context(n_ctx=max(self.n_ctx, n), n_batch=min(512, n))
        rows = [ctx.decode(toks[i : i + 512], plan=plan) for i in range(0, n, 512)]
        return np.concatenate(rows)

    # ---- text ---------------------------------------------------------------------------
    @property
    def vocab(self) -> _core.Vocab:
        """The model's tokenizer (`apls._core.Vocab`). Raises apls.UnsupportedError without one."""
        v = self._model.vocab
        if v is None:
            raise _core.UnsupportedError("the model file has no tokenizer (tokenizer.ggml.model is absent)")
        return v

    def is_eog(self, token: int) -> bool:
        """Whether `token` ends generation (EOS, EOT, ...); False for a model without a tokenizer."""
        v = self._model.vocab
        return v is not None and v.is_eog(int(token))

    def tokenize(self, text: str | bytes, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of `text`. add_special adds BOS/EOS as the model file says; parse_special
        turns control-token text such as "<|im_start|>" into its id."""
        return self.vocab.tokenize(text, add_special, parse_special)

    def detokenize(self, ids: Sequence[int], special: bool = False) -> str:
        """Text of token ids (invalid UTF-8, possible only from a partial sequence, is replaced).
        Raises apls.InvalidArgumentError for an id out of range."""
        return self.vocab.detokenize([int(i) for i in ids], special).decode("utf-8", errors="replace")

    # ---- generation -------------------------------------------------------------------------
    def generate(
        self,
        prompt: str | bytes | Sequence[int],
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
        policy: Policy | None = None,
        draft: str | Sequence[str] | None = None,
        stream_past_window: bool = False,
    ) -> str | Iterator[str]:
        """Generate a continuation of `prompt` (text, or token ids).

        Sampling follows llama.cpp's chain (penalties, top-k, top-p, min-p, temperature); a
        temperature <= 0 is greedy. Generation stops at an end-of-generation token (unless
        ignore_eos), at the first of the `stop` strings (not included in the output), after
        `max_tokens`, or when the context (n_ctx tokens; default: the model's) is full —
        unless stream_past_window, which deletes the oldest entries after 4 attention sinks
        and goes on. Statistics of the last call are in `self.last_stats`.

        speculative=True decodes with APLS, speculative decoding from the model itself and from
        the text (`generate_tokens`; `draft` names the sources): greedy output is identical to
        plain decoding, sampled output has the same distribution, penalties included.

        Returns:
            the generated text, or with stream=True an iterator of text pieces (whole characters).
        Raises:
            apls.InvalidArgumentError (a ValueError) for bad settings, ValueError for an empty
            prompt or one that fills the context; apls.UnsupportedError without a tokenizer.
        """
        ids = self.tokenize(prompt, add_special, parse_special) if isinstance(prompt, (str, bytes)) else list(prompt)
        params = SamplingParams(
            temperature, top_k, top_p, min_p, repeat_penalty, frequency_penalty, presence_penalty, penalty_last_n, seed
        )
        vocab = self.vocab  # text needs the tokenizer: fail before any work
        stats = SpecStats() if speculative else GenerationStats()
        tokens = self.generate_tokens(
            ids,
            max_tokens,
            params,
            ignore_eos=ignore_eos,
            n_ctx=n_ctx,
            speculative=speculative,
            policy=policy,
            draft=draft,
            stream_past_window=stream_past_window,
            stats=stats,
        )
        pieces = stream_text(vocab, tokens, stop or [], stats)
        return pieces if stream else "".join(pieces)

    def generate_tokens(
        self,
        prompt: Sequence[int],
        max_tokens: int = 128,
        sampling: SamplingParams | None = None,
        *,
        ignore_eos: bool = False,
        n_ctx: int | None = None,
        speculative: bool = False,
        policy: Policy | None = None,
        draft: str | Sequence[str] | None = None,
        stream_past_window: bool = False,
        stats: GenerationStats | None = None,
    ) -> Iterator[int]:
        """Token ids generated after `prompt` (token ids), in a context of n_ctx tokens (default:
        the model's); `generate` without the text. The settings are checked now, the work is done
        as the iterator is consumed; `self.last_stats` is this call's statistics. The context is
        kept when the generation ends (one per n_ctx, its cache emptied) and taken by the next
        generation of that size: on a GPU its CUDA graphs are then captured once, not per call. So
        is the default speculative policy (one per draft setting): what it measured and learned
        (verify costs, acceptance, the session's text for the suffix index) serves the next one.

        sampling: the sampler settings (default `SamplingParams()`: llama.cpp's defaults,
        temperature 0.8; `SamplingParams(temperature=0)` is greedy).

        speculative=True: speculative decoding (apls.speculative): each round drafts a token
        tree from the sources in `draft` ("skip,lookup,suffix,recycle", "all" or a list of them;
        default: those the device can pay for — on the CPU the model-free ones, on a GPU all but
        recycle) — the model itself under a layer plan, prompt lookup, a suffix index over the text,
        token recycling — and verifies it with the full model in one batch, keeping the nodes
        worth their verify cost on this device. `policy` chooses round by round (default:
        `apls.policy.make_policy("adaptive", model, draft=draft)`, which picks by measured speed
        among plain decoding, the model-free sources and the default draft plan and two
        neighbours of it joined by them; pass the same policy object again and it starts from
        what it learned, the suffix index keeping the earlier outputs); `self.last_stats` is
        then an `apls.speculative.SpecStats` (tau, acceptance, per source). Not with
        stream_past_window.

        stats: filled as the tokens are consumed (a `SpecStats` when speculative); default a new
        one. Either way it is also `self.last_stats`.

        Raises:
            ValueError: max_tokens < 0, an empty prompt, a prompt that fills the context,
            speculative with stream_past_window, an unknown draft source, both draft and policy;
            apls.InvalidArgumentError: bad sampling settings; TypeError: speculative with stats
            that are not a SpecStats.
        """
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        ids = [int(t) for t in prompt]
        if not ids:
            raise ValueError("the prompt is empty")
        if speculative and stream_past_window:
            raise ValueError("stream_past_window does not combine with speculative decoding")
        if draft is not None and policy is not None:
            raise ValueError("give draft= or policy=, not both (make_policy(..., draft=...) combines them)")
        sampler = (sampling or SamplingParams()).sampler()  # validates the settings before any work
        held: list[tuple[tuple, object]] = []  # what goes back to self._idle when the generation ends
        ctx = self._take(("context", n_ctx), lambda: self.context(n_ctx=n_ctx), held)
        try:
            if len(ids) >= ctx.n_ctx:
                raise ValueError(f"the prompt has {len(ids)} tokens, the context holds {ctx.n_ctx}")
            if speculative:
                spec_stats = SpecStats() if stats is None else stats
                if not isinstance(spec_stats, SpecStats):
                    raise TypeError(f"speculative decoding fills a SpecStats, not a {type(spec_stats).__name__}")
                if policy is None:  # the default, kept between generations (checks the sources first)
                    key = ("policy", draft if draft is None or isinstance(draft, str) else tuple(draft))
                    policy = self._take(key, lambda: make_policy("adaptive", self, draft=draft), held)
                self.last_stats = spec_stats
                tokens = speculative_tokens(ctx, ids, max_tokens, sampler, policy, ignore_eos, spec_stats)
            else:
                self.last_stats = stats = GenerationStats() if stats is None else stats
                tokens = generate_tokens(ctx, ids, max_tokens, sampler, ignore_eos, stats, stream_past_window)
        except BaseException:
            self._give_back(held)
            raise
        return self._then_give_back(held, tokens)

    def _take(self, key: tuple, make: Callable[[], _T], held: list) -> _T:
        """An idle object of `key` (see __init__), else make(); noted in `held`."""
        with self._idle_lock:
            idle = self._idle.pop(key, None)
        obj = cast(_T, idle) if idle is not None else make()
        held.append((key, obj))
        return obj

    def _give_back(self, held: list) -> None:
        for key, obj in held:
            if key[0] == "context":
                obj.kv.clear()
            with self._idle_lock:
                self._idle.setdefault(key, obj)  # one kept per key; another is freed
        held.clear()

    def _then_give_back(self, held: list, tokens: Iterator[int]) -> Iterator[int]:
        return _Generation(tokens, lambda: self._give_back(held))

    def chat_prompt(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The model's chat template applied to `messages` (raises ChatTemplateError without one)."""
        v = self.vocab

        def piece(i: int) -> str:
            return v.token_to_piece(i, True).decode("utf-8", "replace") if i >= 0 else ""

        return render_chat(
            self.meta("tokenizer.chat_template"),
            messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=piece(v.bos),
            eos_token=piece(v.eos),
        )

    def chat(self, messages: list[dict[str, str]], max_tokens: int = 256, **kwargs) -> str | Iterator[str]:
        """Reply to a conversation ([{"role": "user", "content": "..."}, ...]) using the model's
        chat template; keyword arguments as for `generate` (speculative=True included)."""
        prompt = self.chat_prompt(messages)
        kwargs.setdefault("add_special", False)  # the template places BOS itself
        kwargs.setdefault("parse_special", True)
        return self.generate(prompt, max_tokens, **kwargs)
