"""Prompt-lookup peers beside APLS, on the same prompts and token budget, greedy, on the CPU:

- apls: plain greedy decoding and `Model.generate_tokens(speculative=True)` (token-tree drafts
  from the sources `--draft` names; default all);
- llama.cpp through llama-cpp-python: plain and `Llama(..., draft_model=LlamaPromptLookupDecoding)`
  (its prompt lookup: the last 1..max_ngram_size tokens matched in the prompt and output,
  num_pred_tokens drafted) on the same GGUF file;
- llama.cpp's `llama-lookup` binary (--lookup-bin DIR; the GPU machine's build from ../shared/peers):
  its n-gram cache drafts (--n-pred tokens), every layer on the GPU; plain decoding is the same
  binary with one-token drafts. Its tokens are not returned, so its rows say "-" for identical;
- Hugging Face transformers: plain `generate` and `generate(prompt_lookup_num_tokens=...)` on the
  same GGUF file loaded by transformers (`gguf_file=`: dequantized to float32, so it computes
  with different weights' rounding than the engines; its speedup is what compares).

Each prompt runs every engine in turn (plain then speculative), so machine noise hits them
alike; --clock cpu times each generation by the process's CPU time instead of wall time (with
--threads 1, the work itself, on a machine others load). Prints a table per group and overall (tokens/s, speedup over the same engine's plain
decoding, whether the speculative output equals that engine's plain output) and writes JSON.

    python tools/bench_peers_lookup.py --prompts tests/data/spec_bench_prompts.jsonl --limit 3 \\
        --max-tokens 256 --json peers.json
"""

from __future__ import annotations

import argparse
import json
import os
import time


def apls_runner(path, threads, draft):
    import apls
    from apls.policy import make_policy

    model = apls.Model(path, n_threads=threads)
    policy = make_policy("adaptive", model, draft=draft)  # one session for the whole run
    greedy = apls.SamplingParams(temperature=0.0)

    def run(ids, n, spec):
        out = list(model.generate_tokens(ids, n, greedy, n_ctx=2048, speculative=spec, policy=policy if spec else None))
        st = model.last_stats
        return out, st.decode_s, st.decode_cpu_s, (st.n_rounds, st.n_accepted) if spec else None

    return model, run


def llama_cpp_runner(path, threads, ngram, n_pred):
    from llama_cpp import Llama
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    kw = dict(model_path=path, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    plain = Llama(**kw)
    spec = Llama(**kw, draft_model=LlamaPromptLookupDecoding(max_ngram_size=ngram, num_pred_tokens=n_pred))

    def run(ids, n, use_spec):
        llm = spec if use_spec else plain
        llm.reset()
        llm.eval(ids[:-1])  # the prompt but its last token, untimed (as the engines' prefill)
        out, t0, c0 = [], time.perf_counter(), time.process_time()
        for tok in llm.generate(ids[-1:], top_k=1, temp=0.0, reset=False):
            if llm.token_eos() == tok or len(out) >= n:
                break
            out.append(int(tok))
        return out, time.perf_counter() - t0, time.process_time() - c0, None

    return run


def llama_lookup_runner(path, bindir, n_pred, prompt_of):
    """llama.cpp's llama-lookup on the same file, every layer on the GPU, greedy; timed by its own
    "decoded N tokens in T seconds" line (the generation loop, prompt excluded)."""
    import re
    import subprocess

    exe = os.path.join(bindir, "llama-lookup")

    def run(ids, n, use_spec):
        cmd = [exe, "-m", path, "-p", prompt_of[tuple(ids)], "-n", str(n), "-ngl", "99", "-fa", "on", "--temp", "0"]
        cmd += ["--spec-draft-n-max", str(n_pred if use_spec else 1), "-c", "2048"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        m = re.search(r"decoded\s+(\d+) tokens in\s+([0-9.]+) seconds", r.stderr)
        if r.returncode != 0 or not m:
            raise ValueError(f"llama-lookup failed (rc {r.returncode}): {r.stderr[-300:]}")
        return [None] * int(m.group(1)), float(m.group(2)), float(m.group(2)), None

    return run


def hf_runner(path, threads, n_lookup):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), torch_dtype=torch.float32
    )
    model.eval()

    def run(ids, n, use_spec):
        x = torch.tensor([ids])
        kw = {"prompt_lookup_num_tokens": n_lookup} if use_spec else {}
        with torch.no_grad():
            model.generate(x[:, :-1], max_new_tokens=1, do_sample=False)  # warm: the same shapes
            t0, c0 = time.perf_counter(), time.process_time()
            y = model.generate(x, max_new_tokens=n, do_sample=False, **kw)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
        return [int(t) for t in y[0, len(ids) :]], dt, dc, None

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="GGUF file (default: apls.default_model_path())")
    ap.add_argument("--prompts", default="tests/data/spec_bench_prompts.jsonl")
    ap.add_argument("--limit", type=int, default=3, help="prompts per group")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--draft", default=None, help="APLS draft sources (default: all)")
    ap.add_argument("--engines", default="apls,llama.cpp,hf", help="apls, llama.cpp, hf, llama-lookup")
    ap.add_argument("--lookup-bin", help="directory holding llama.cpp's llama-lookup (engine llama-lookup)")
    ap.add_argument("--ngram", type=int, default=2, help="llama.cpp max_ngram_size")
    ap.add_argument("--n-pred", type=int, default=10, help="llama.cpp num_pred_tokens / HF prompt_lookup_num_tokens")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="speeds from wall time or from the process's CPU time (with --threads 1: the work itself "
        "on a machine others load)",
    )
    ap.add_argument("--json")
    args = ap.parse_args()
    pick = 1 if args.clock == "wall" else 2

    import apls
    from apls.spec_bench import load_prompts

    path = args.model or apls.default_model_path()
    model, apls_run = apls_runner(path, args.threads, args.draft)
    runners = {}
    engines = args.engines.split(",")
    if "apls" in engines:
        runners["apls"] = apls_run
    if "llama.cpp" in engines:
        runners["llama.cpp"] = llama_cpp_runner(path, args.threads, args.ngram, args.n_pred)
    prompt_of = {}  # token ids -> the prompt text (llama-lookup takes text)
    if "llama-lookup" in engines:
        runners["llama-lookup"] = llama_lookup_runner(path, args.lookup_bin, args.n_pred, prompt_of)
    if "hf" in engines:
        runners["hf"] = hf_runner(path, args.threads, args.n_pred)
    groups = load_prompts(args.prompts, args.limit)
    acc = {}  # (engine, group) -> sums
    failed = []  # prompts an engine failed on
    for g, texts in groups.items():
        for text in texts:
            prompt = model.chat_prompt([{"role": "user", "content": text}])
            ids = model.tokenize(prompt, add_special=False, parse_special=True)
            prompt_of[tuple(ids)] = prompt
            for name, run in runners.items():
                try:
                    r_plain, r_spec = run(ids, args.max_tokens, False), run(ids, args.max_tokens, True)
                except ValueError as e:  # llama-cpp-python 0.3.36's prompt lookup overran its scores once
                    failed.append({"engine": name, "group": g, "prompt": text[:60], "error": str(e)})
                    print(f"{name} failed on a {g} prompt (left out of its rows): {e}", flush=True)
                    continue
                (plain, t_plain), (spec, t_spec) = (r_plain[0], r_plain[pick]), (r_spec[0], r_spec[pick])
                for key in ((name, g), (name, "overall")):
                    a = acc.setdefault(
                        key,
                        {"plain_tok": 0, "plain_s": 0.0, "spec_tok": 0, "spec_s": 0.0, "same": True, "steps": [0, 0]},
                    )
                    if r_spec[3]:  # APLS: full-model steps and accepted drafts, for tau
                        a["steps"] = [a["steps"][0] + r_spec[3][0], a["steps"][1] + r_spec[3][1]]
                    a["plain_tok"] += len(plain)
                    a["plain_s"] += t_plain
                    a["spec_tok"] += len(spec)
                    a["spec_s"] += t_spec
                    a["same"] = None if spec[:1] == [None] else (a["same"] is not False and spec == plain)
            print(g, "done", flush=True)
    rows = {}
    print(f"clock: {args.clock}, threads: {args.threads}, {args.limit} prompts per group, {args.max_tokens} tokens")
    print("| engine | group | plain tok/s | speculative tok/s | speedup | tau | identical |")
    print("|---|---|---|---|---|---|---|")
    for (name, g), a in sorted(acc.items(), key=lambda kv: (kv[0][0], kv[0][1] == "overall")):
        p, s = a["plain_tok"] / a["plain_s"], a["spec_tok"] / a["spec_s"]
        n, k = a["steps"]
        tau = (n + k) / n if n else None
        rows.setdefault(name, {})[g] = {
            "plain_tok_s": p,
            "spec_tok_s": s,
            "speedup": s / p,
            "tau": tau,
            "identical": a["same"],
        }
        print(
            f"| {name} | {g} | {p:.1f} | {s:.1f} | {s / p:.2f}x | {'-' if tau is None else f'{tau:.2f}'} | {'-' if a['same'] is None else a['same']} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "results": rows, "failed": failed}, f, indent=2)


if __name__ == "__main__":
    main()
