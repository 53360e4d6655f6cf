#!/usr/bin/env python3
"""Does llama.cpp load what `apls convert` writes, and decode it the same way as APLS?

For each architecture (llama, llama with attention biases and tied embeddings, mistral with
head_dim != hidden/heads, qwen2, qwen3) a tiny random `transformers` model and a byte-level
BPE tokenizer are made and converted (F32 and F16); then llama.cpp (llama-cpp-python) and
APLS each tokenize the same prompt and decode 32 greedy tokens. Reported per file: tokenizer
equal, greedy tokens equal, and the relative difference of the prompt's last logits.

    python tools/compare_llama_cpp.py [--types f32 f16] [--n 32]

Needs torch, transformers, tokenizers and llama-cpp-python (not a CI dependency).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python"), str(ROOT / "tests")]

PROMPT = "The capital of France is Paris, and 12 + 30 = 42. Once upon a time"


def apls_greedy(path, tokens, n):
    from apls import _core

    ctx = _core.Context(_core.Model(str(path)), n_ctx=256, kv_type="f32")
    logits = ctx.decode(np.array(tokens, np.int32), logits="last")[-1]
    first, out = logits.copy(), []
    for _ in range(n):
        out.append(int(np.argmax(logits)))
        logits = ctx.decode(np.array([out[-1]], np.int32), logits="last")[-1]
    return first, out


def llama_cpp_greedy(path, tokens, n):
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=256,
        n_batch=256,
        n_threads=2,
        verbose=False,
        logits_all=True,
        type_k=llama_cpp.GGML_TYPE_F32,
        type_v=llama_cpp.GGML_TYPE_F32,
    )
    llm.eval(tokens)
    logits = np.array(llm.scores[llm.n_tokens - 1], np.float32)
    first, out = logits.copy(), []
    for _ in range(n):
        out.append(int(np.argmax(logits)))
        llm.eval([out[-1]])
        logits = np.array(llm.scores[llm.n_tokens - 1], np.float32)
    return first, out, llm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--types", nargs="+", default=["f32", "f16"])
    ap.add_argument("--n", type=int, default=32, help="greedy tokens (default 32)")
    args = ap.parse_args()

    from hf_tiny import ARCH_CONFIGS, make_hf_model, write_bpe_tokenizer

    from apls import _core
    from apls.convert import convert

    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp) / "tok"
        write_bpe_tokenizer(tok_dir, "smollm", vocab_size=400)
        for arch in ARCH_CONFIGS:
            d = Path(tmp) / arch
            make_hf_model(d, arch, 416, seed=1)
            for f in tok_dir.iterdir():
                shutil.copy(f, d)
            for ty in args.types:
                path = convert(str(d), str(d / f"{arch}-{ty}.gguf"), ty, progress=False)
                ours_tok = _core.Vocab.from_file(str(path)).tokenize(PROMPT, add_special=True, parse_special=False)
                a_first, a_out = apls_greedy(path, ours_tok, args.n)
                l_first, l_out, llm = llama_cpp_greedy(path, ours_tok, args.n)
                cpp_tok = llm.tokenize(PROMPT.encode(), add_bos=True, special=False)
                err = float(np.linalg.norm(a_first - l_first) / np.linalg.norm(l_first))
                same = a_out == l_out
                ok &= same and cpp_tok == ours_tok
                print(
                    f"{arch:16s} {ty:4s}  tokenizer {'equal' if cpp_tok == ours_tok else 'DIFFERS'}  "
                    f"greedy {args.n} tokens {'identical' if same else 'DIFFER'}  "
                    f"last-logit rel diff {err:.1e}"
                )
                if not same:
                    print(f"   apls     : {a_out}\n   llama.cpp: {l_out}")
                del llm
    print("all equal" if ok else "differences found")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
