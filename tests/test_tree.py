"""Token-tree batches (batch.h, apls_batch.parent) and keep_path (kv_cache.h) on the CPU.

References:
  - chain decoding: every node of a random tree must give the logits of its root-to-node path
    decoded as a plain chain, bit for bit (the batch-invariance contract extended to trees);
  - a dense NumPy forward (tests/reference.py's pieces) with the tree's attention mask, float64
    attention: the engine with an F32 cache differs from it by float32 rounding only;
  - keep_path: the kept path's K/V must be those of a fresh decode of the same tokens, seen
    through the next token's logits (bit-identical), and the rejected nodes must leave nothing
    (kv_check, block counts, positions).
"""

import numpy as np
import pytest
from reference import Reference
from tiny_model import write_tiny_llama

import apls
from apls import _core

VOCAB = 64


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def random_tree(rng, n):
    """Parents of an n-node tree in batch order: each node's parent is an earlier node or -1."""
    return [-1] + [int(rng.integers(-1, i)) for i in range(1, n)]


def path_to(parent, b):
    """Batch indices from the root down to node b."""
    out = []
    while b >= 0:
        out.append(b)
        b = parent[b]
    return out[::-1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tree") / "tiny.gguf"
    write_tiny_llama(path, n_layer=2, d=64, n_head=4, n_kv=2, n_ff=96, n_vocab=VOCAB, seed=7, n_ctx=512, scale=2.0)
    return str(path), _core.Model(str(path))


def ctx_of(model, kv_type="f32", block=16, n_threads=2):
    return _core.Context(model, n_ctx=256, n_batch=64, n_threads=n_threads, kv_block_size=block, kv_type=kv_type)


def check_nodes_match_chains(model, prompt, tokens, parent, kv_type, block, view=None):
    tree_ctx, chain_ctx = ctx_of(model, kv_type, block), ctx_of(model, kv_type, block)
    for c in (tree_ctx, chain_ctx):
        c.decode(np.asarray(prompt, np.int32))
    n_p = len(prompt)
    kv_view = _core.KVView(**view) if view else None
    run = lambda c, t, **kw: c.decode(t, view=kv_view, **kw)  # noqa: E731
    got = run(tree_ctx, np.asarray(tokens, np.int32), logits="all", parent=np.asarray(parent, np.int32))
    assert tree_ctx.kv_seq_len(0) == n_p + len(tokens)
    for b in range(len(tokens)):
        path = path_to(parent, b)
        want = run(chain_ctx, np.asarray([tokens[j] for j in path], np.int32), logits="last")[0]
        chain_ctx.kv_truncate(0, n_p)
        assert np.array_equal(got[b], want), f"node {b} (path {path}) differs from its chain"


@pytest.mark.parametrize("kv_type, block", [("f32", 16), ("f16", 7), ("f16", 1)])
def test_tree_nodes_match_chain_decoding(tiny, kv_type, block):
    _, model = tiny
    rng = np.random.default_rng(block)
    for n in (1, 9, 24):
        parent = random_tree(rng, n)
        prompt = rng.integers(0, VOCAB, 21).tolist()
        check_nodes_match_chains(model, prompt, rng.integers(0, VOCAB, n).tolist(), parent, kv_type, block)


def test_tree_under_views_matches_chain_decoding(tiny):
    """A view restricts the cache the tree sees, as it does for the chain."""
    _, model = tiny
    rng = np.random.default_rng(5)
    parent = random_tree(rng, 12)
    prompt = rng.integers(0, VOCAB, 30).tolist()
    tokens = rng.integers(0, VOCAB, 12).tolist()
    for view in (dict(n_sink=4, n_window=8), dict(positions=np.array([0, 3, 4, 9, 20, 29], np.int32))):
        check_nodes_match_chains(model, prompt, tokens, parent, "f16", 16, view)


def test_smollm2_tree_nodes_match_chain_decoding(smollm2_path):
    """The real model: Q4_1 matrices with Q8 activations, GQA, 30 layers."""
    model = _core.Model(smollm2_path)
    rng = np.random.default_rng(3)
    parent = [-1, 0, 0, 1, 1, 2, -1, 6, 3, 8]
    prompt = rng.integers(0, 49152, 17).tolist()
    check_nodes_match_chains(model, prompt, rng.integers(0, 49152, len(parent)).tolist(), parent, "f16", 16)


def tree_reference(ref, prompt, tokens, parent, tree_mask=True):
    """Logits of the tree's nodes from a dense forward over prompt + nodes, float64 attention,
    each node seeing the prompt, its ancestors and itself (tree_mask=False: a causal mask, what
    the tree must not be)."""
    n_p, n = len(prompt), len(tokens)
    depth = [0] * n
    for b in range(n):
        depth[b] = 0 if parent[b] < 0 else depth[parent[b]] + 1
    pos = np.array(list(range(n_p)) + [n_p + d for d in depth])
    mask = np.tril(np.ones((n_p + n, n_p + n), bool))
    if tree_mask:
        mask[n_p:, n_p:] = False
        for b in range(n):
            mask[n_p + b, [n_p + a for a in path_to(parent, b)]] = True
    x = ref.w["token_embd.weight"][np.asarray(list(prompt) + list(tokens))]
    group, hd = ref.n_head // ref.n_head_kv, ref.hd
    for layer in range(ref.n_layer):
        p = f"blk.{layer}."
        h = ref.norm(x, p + "attn_norm.weight")
        q = ref.rope(ref.mm(h, p + "attn_q.weight"), pos, ref.n_head).astype(np.float64)
        k = ref.rope(ref.mm(h, p + "attn_k.weight"), pos, ref.n_head_kv).astype(np.float64)
        v = ref.mm(h, p + "attn_v.weight").astype(np.float64)
        out = np.zeros((len(pos), ref.n_head * hd), np.float32)
        for hh in range(ref.n_head):
            g = hh // group
            sc = q[:, hh * hd : (hh + 1) * hd] @ k[:, g * hd : (g + 1) * hd].T / np.sqrt(hd)
            sc = np.exp(np.where(mask, sc, -np.inf) - np.where(mask, sc, -np.inf).max(axis=1, keepdims=True))
            out[:, hh * hd : (hh + 1) * hd] = (sc / sc.sum(axis=1, keepdims=True)) @ v[:, g * hd : (g + 1) * hd]
        x = x + ref.mm(out, p + "attn_output.weight")
        h = ref.norm(x, p + "ffn_norm.weight")
        gt, up = ref.mm(h, p + "ffn_gate.weight"), ref.mm(h, p + "ffn_up.weight")
        x = x + ref.mm((gt / (1.0 + np.exp(-gt.astype(np.float64)))).astype(np.float32) * up, p + "ffn_down.weight")
    return ref.mm(ref.norm(x, "output_norm.weight"), "output.weight")[n_p:]


def test_tree_attention_matches_dense_numpy_reference(tiny):
    path, model = tiny
    ref = Reference(path)
    rng = np.random.default_rng(11)
    parent = [-1, 0, 0, 1, 2, 2, -1, 6, 4, 3, 9, 9]
    prompt = rng.integers(0, VOCAB, 25).tolist()
    tokens = rng.integers(0, VOCAB, len(parent)).tolist()
    ctx = ctx_of(model, "f32", 16)
    ctx.decode(np.asarray(prompt, np.int32))
    got = ctx.decode(np.asarray(tokens, np.int32), logits="all", parent=np.asarray(parent, np.int32))
    want = tree_reference(ref, prompt, tokens, parent)
    # F32 cache: float32 rounding of the matrix products and the summation order only (measured
    # ~3e-7); a sibling or cousin seen by mistake moves the logits by far more (the causal mask
    # below: > 1e-2).
    assert rel_err(got, want) < 1e-5, rel_err(got, want)
    assert rel_err(tree_reference(ref, prompt, tokens, parent, tree_mask=False), want) > 1e-2


@pytest.mark.parametrize("block", [16, 3])
def test_keep_path_equals_a_fresh_decode_and_leaves_no_trace(tiny, block):
    _, model = tiny
    rng = np.random.default_rng(block + 1)
    prompt = rng.integers(0, VOCAB, 19).tolist()
    parent = [-1, 0, 1, 0, 3, 4, 3, -1, 7, 5]
    tokens = rng.integers(0, VOCAB, len(parent)).tolist()
    for leaf in (2, 5, 8, 9, 0):  # paths through the first branch (in place), later branches, a root
        ctx = ctx_of(model, "f16", block)
        ctx.decode(np.asarray(prompt, np.int32))
        ctx.decode(np.asarray(tokens, np.int32), logits="all", parent=np.asarray(parent, np.int32))
        keep = path_to(parent, leaf)
        ctx.kv_keep_path(0, len(prompt), np.asarray([len(prompt) + b for b in keep], np.int32))
        ctx.kv_check()
        n = len(prompt) + len(keep)
        assert ctx.kv_seq_len(0) == n and ctx.kv_positions(0) == list(range(n))
        stats = ctx.kv_stats()
        assert stats["entries"] == n and stats["blocks_used"] == -(-n // block)
        probe = ctx.decode(np.array([5], np.int32))[0]
        fresh = ctx_of(model, "f16", block)
        want = fresh.decode(np.asarray(prompt + [tokens[b] for b in keep] + [5], np.int32))[0]
        assert np.array_equal(probe, want), f"path to node {leaf}"


def test_bad_trees_are_refused_and_change_nothing(tiny):
    _, model = tiny
    ctx = _core.Context(model, n_ctx=256, n_batch=80, n_threads=1, n_seq_max=2)
    ctx.decode(np.arange(6, dtype=np.int32))
    t = np.arange(4, dtype=np.int32)
    cases = [
        (dict(parent=np.array([-1, 0, 2, 0], np.int32)), "parent\\[2\\] = 2"),
        (dict(parent=np.array([-1, -2, 0, 0], np.int32)), "parent\\[1\\] = -2"),
        (dict(parent=np.array([-1, 0], np.int32)), "parent has 2 entries for 4 tokens"),
        (dict(parent=np.array([-1, 0, 1, 0], np.int32), pos=np.array([6, 7, 8, 8], np.int32)), "parent is at 6"),
        (dict(parent=np.array([-1, 0, 1, 0], np.int32), pos=np.array([5, 6, 7, 6], np.int32)), "continues at 6"),
        (dict(parent=np.array([-1, 0, 1, 0], np.int32), seq_ids=np.array([0, 0, 1, 0], np.int32)), "one sequence"),
    ]
    for kw, match in cases:
        with pytest.raises(apls.InvalidArgumentError, match=match):
            ctx.decode(t, **kw)
        assert ctx.kv_seq_len(0) == 6 and ctx.kv_seq_len(1) == 0
    with pytest.raises(apls.InvalidArgumentError, match="at most 64"):
        ctx.decode(np.zeros(65, np.int32), parent=np.arange(-1, 64, dtype=np.int32))
    with pytest.raises(apls.InvalidArgumentError, match="must be increasing"):
        ctx.kv_keep_path(0, 6, np.array([7, 7], np.int32))
    with pytest.raises(apls.InvalidArgumentError, match="is at position 5, not 4"):
        ctx.kv_keep_path(0, 4, np.array([5], np.int32))
    ctx.kv_check()
    assert ctx.kv_seq_len(0) == 6
    ok = ctx.decode(t, logits="all", parent=np.array([-1, 0, 1, 0], np.int32))  # still usable
    assert ok.shape == (4, VOCAB) and ctx.kv_positions(0) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 7]
