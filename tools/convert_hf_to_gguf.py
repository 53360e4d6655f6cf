#!/usr/bin/env python3
"""Convert a Hugging Face checkpoint to GGUF: the same as `apls convert` (see `--help`).

    python tools/convert_hf_to_gguf.py SRC -o OUT.gguf [--type f32|f16|bf16|q8_0|q4_0|q4_1|q5_0|q5_1]

SRC is a checkpoint directory or a Hugging Face repo id.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from apls.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
