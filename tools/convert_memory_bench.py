#!/usr/bin/env python3
"""Peak memory of `apls convert` on a checkpoint of a real model's size (issue "Model conversion":
converting a 7B model must fit in 24 GiB of RAM).

Writes a Llama-2-7B-shaped Hugging Face checkpoint (config.json, F16 safetensors in 5 GB shards
with model.safetensors.index.json, the small BPE tokenizer of the tests; weights are random
blocks, tiled), then runs `python -m apls.cli convert` once per output type in a child process,
sampling /proc/PID/status every 0.1 s. Prints a table last and writes JSON.

    python tools/convert_memory_bench.py --dir /tmp/ck7b [--types f16,q8_0] [--json out.json]

Two numbers per run: peak anonymous memory (what the converter allocates) and peak resident set
(anonymous + file pages of the memory-mapped shards, which the kernel can drop at will).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # hf_tiny: the test suite's tokenizer builder

SHAPE = dict(
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    vocab_size=32000,
)
SHARD_BYTES = 5 << 30


def tensor_shapes(cfg):
    h, f, v, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    yield "model.embed_tokens.weight", (v, h)
    for i in range(n):
        p = f"model.layers.{i}."
        for name, shape in (
            ("input_layernorm.weight", (h,)),
            ("self_attn.q_proj.weight", (h, h)),
            ("self_attn.k_proj.weight", (h, h)),
            ("self_attn.v_proj.weight", (h, h)),
            ("self_attn.o_proj.weight", (h, h)),
            ("post_attention_layernorm.weight", (h,)),
            ("mlp.gate_proj.weight", (f, h)),
            ("mlp.up_proj.weight", (f, h)),
            ("mlp.down_proj.weight", (h, f)),
        ):
            yield p + name, shape
    yield "model.norm.weight", (h,)
    yield "lm_head.weight", (v, h)


def write_checkpoint(d: Path) -> int:
    """The checkpoint, written shard by shard (one tensor in memory at a time). Returns its bytes."""
    from hf_tiny import write_bpe_tokenizer

    d.mkdir(parents=True, exist_ok=True)
    cfg = dict(
        architectures=["LlamaForCausalLM"],
        model_type="llama",
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        hidden_act="silu",
        tie_word_embeddings=False,
        torch_dtype="float16",
        **SHAPE,
    )
    (d / "config.json").write_text(json.dumps(cfg))
    write_bpe_tokenizer(d, "smollm", vocab_size=400)  # padded to vocab_size by the converter
    block = (np.random.default_rng(0).standard_normal(1 << 20) * 0.02).astype(np.float16)
    shards, cur, size = [], [], 0
    for name, shape in tensor_shapes(cfg):
        n = int(np.prod(shape)) * 2
        if cur and size + n > SHARD_BYTES:
            shards.append(cur)
            cur, size = [], 0
        cur.append((name, shape))
        size += n
    shards.append(cur)
    weight_map, total = {}, 0
    for k, tensors in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        header, off = {}, 0
        for _name, shape in tensors:
            n = int(np.prod(shape)) * 2
            header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [off, off + n]}
            off += n
            weight_map[name] = fname
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        with open(d / fname, "wb") as f:
            f.write(len(raw).to_bytes(8, "little") + raw)
            for _name, shape in tensors:
                count = int(np.prod(shape))
                np.resize(block, count).tofile(f)
        total += off
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    return total


def run_convert(src: Path, out: Path, out_type: str) -> dict:
    """apls convert in a child process; peak RssAnon and VmRSS sampled from /proc."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'python'}:{os.environ.get('PYTHONPATH', '')}")
    cmd = [sys.executable, "-m", "apls.cli", "convert", str(src), "-o", str(out), "--type", out_type]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_anon = peak_rss = 0
    while p.poll() is None:
        try:
            status = Path(f"/proc/{p.pid}/status").read_text()
        except OSError:
            break
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        peak_anon = max(peak_anon, int(fields.get("RssAnon", "0 kB").split()[0]) * 1024)
        peak_rss = max(peak_rss, int(fields.get("VmRSS", "0 kB").split()[0]) * 1024)
        time.sleep(0.1)
    err = p.stderr.read()
    if p.wait() != 0:
        raise SystemExit(f"convert failed ({p.returncode}):\n{err[-2000:]}")
    return {
        "type": out_type,
        "seconds": time.perf_counter() - t0,
        "peak_anon": peak_anon,
        "peak_rss": peak_rss,
        "out_bytes": out.stat().st_size,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/ck7b")
    ap.add_argument("--types", default="f16,q8_0")
    ap.add_argument("--json", default=None)
    ap.add_argument("--layers", type=int, default=32, help="fewer layers for a quick check")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint and the outputs")
    a = ap.parse_args()
    src = Path(a.dir) / "hf"
    t0 = time.perf_counter()
    SHAPE["num_hidden_layers"] = a.layers
    in_bytes = write_checkpoint(src)
    print(f"checkpoint: {in_bytes / 1e9:.2f} GB of F16 weights in {time.perf_counter() - t0:.0f} s", flush=True)
    rows = []
    for t in a.types.split(","):
        out = Path(a.dir) / f"out-{t}.gguf"
        rows.append(run_convert(src, out, t))
        print(json.dumps(rows[-1]), flush=True)
        if not a.keep:
            out.unlink()
    if not a.keep:
        for f in src.iterdir():
            f.unlink()
    result = {"model": "Llama-2-7B shape (random F16 weights)", "input_bytes": in_bytes, "rows": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
    print()
    print("| output type | seconds | output GB | peak anonymous memory GiB | peak resident (incl. mapped input) GiB |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['type']} | {r['seconds']:.0f} | {r['out_bytes'] / 1e9:.2f} | {r['peak_anon'] / 2**30:.2f} | "
            f"{r['peak_rss'] / 2**30:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
