"""Diagnose a tree verify batch on CUDA that differs from its chains: per node, the error of the
tree's logits and of the chains' against the CPU backend, and against a causal batch of the same
tokens at the same positions (the mask ignored). Prints one table; run on the GPU machine:

    python tools/cuda/debug_tree.py MODEL.gguf
"""

import os
import sys

import numpy as np

import apls

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
from tree_cases import path_to  # noqa: E402 (tests/tree_cases.py: the tree tests' helpers)


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def prefill(ctx, toks):
    for i in range(0, len(toks), 16):
        ctx.decode(toks[i : i + 16], logits="last")


def run(model, prompt, tokens, parent, kv_type):
    tree = model.context(n_ctx=256, kv_type=kv_type)
    prefill(tree, prompt)
    got = tree.decode(tokens, logits="all", parent=parent)
    depth = [len(path_to(parent, b)) - 1 for b in range(len(tokens))]
    causal = model.context(n_ctx=256, kv_type=kv_type)
    prefill(causal, prompt)
    flat = causal.decode(tokens, logits="all", pos=[len(prompt) + d for d in depth])
    chain = model.context(n_ctx=256, kv_type=kv_type)
    prefill(chain, prompt)
    want = []
    for b in range(len(tokens)):
        want.append(chain.decode([tokens[j] for j in path_to(parent, b)], logits="last")[0])
        chain.kv.truncate(0, len(prompt))
    fresh = []  # each chain in a fresh context (no truncate in between)
    for b in range(len(tokens)):
        c = model.context(n_ctx=256, kv_type=kv_type)
        prefill(c, prompt)
        fresh.append(c.decode([tokens[j] for j in path_to(parent, b)], logits="last")[0])
    return got, np.stack(want), flat, np.stack(fresh)


def main():
    path = sys.argv[1]
    rng = np.random.default_rng(7)
    gpu, cpu = apls.Model(path, device="cuda"), apls.Model(path, device="cpu")
    prompt = rng.integers(0, 1000, 37).tolist()
    tokens = rng.integers(0, 1000, 7).tolist()
    parent = [-1, 0, 0, -1, -1, 1, 2]
    for kv_type in ("f16", "f32"):
        g = run(gpu, prompt, tokens, parent, kv_type)
        c = run(cpu, prompt, tokens, parent, kv_type)
        print(
            f"kv {kv_type}: node | tree vs chain (cuda) | tree cuda vs cpu | chain cuda vs cpu | fresh chain cuda vs cpu | tree cuda vs causal cuda | tree cpu vs chain cpu"
        )
        for b in range(len(tokens)):
            print(
                f"  {b} (parent {parent[b]}) | {rel(g[0][b], g[1][b]):.2e} | {rel(g[0][b], c[0][b]):.2e} | "
                f"{rel(g[1][b], c[1][b]):.2e} | {rel(g[3][b], c[3][b]):.2e} | {rel(g[0][b], g[2][b]):.2e} | {rel(c[0][b], c[1][b]):.2e}"
            )


if __name__ == "__main__":
    main()
