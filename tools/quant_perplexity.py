#!/usr/bin/env python3
"""Perplexity and KL divergence of quantized files against their F16 source, per type.

    PYTHONPATH=python APLS_EXT_DIR=$PWD/build/h-quant python tools/quant_perplexity.py F16.gguf \\
        tests/data/heldout_text.txt OUT_DIR Q8_0 Q6_K Q5_K Q4_K Q4_1 Q4_K_M

For each type: quantize F16.gguf to OUT_DIR/TYPE.gguf (apls.quantize), then over the first 256
and 512 tokens of the text: perplexity, its increase over the F16 model, and the mean KL
divergence of the next-token distribution from the F16 model's (docs/QUANTIZATION.md).
"""

import sys
import time
from pathlib import Path

import numpy as np

import apls


def log_probs(path, toks):
    lg = apls.Model(path, n_threads=2).logits(toks).astype(np.float64)
    lp = lg - lg.max(-1, keepdims=True)
    return lp - np.log(np.exp(lp).sum(-1, keepdims=True))


def main():
    f16, text_path, out_dir, types = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4:]
    toks_all = apls.Model(f16).tokenize(Path(text_path).read_text())
    lengths = [n for n in (256, 512) if n <= len(toks_all)]
    base = {n: log_probs(f16, toks_all[:n]) for n in lengths}
    for t in types:
        out = str(out_dir / f"{t}.gguf")
        t0 = time.time()
        res = apls.quantize(f16, out, t, progress=False, n_threads=2)
        line = f"{t:7s} {res.out_bytes / 1e6:6.1f} MB  quantized in {time.time() - t0:5.1f} s"
        for n in lengths:
            tg, b = np.asarray(toks_all[1:n]), base[n]
            lp = log_probs(out, toks_all[:n])
            p0 = np.exp(-b[np.arange(len(tg)), tg].mean())
            p = np.exp(-lp[np.arange(len(tg)), tg].mean())
            kl = (np.exp(b) * (b - lp)).sum(-1).mean()
            line += f" | {n} tok: ppl {p:.3f} (F16 {p0:.3f}) {100 * (p / p0 - 1):+.2f}% KL {kl:.5f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
