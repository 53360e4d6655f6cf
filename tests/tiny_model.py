"""Tiny random models (llama layout; qwen2, qwen3) written as GGUF with the `gguf` package (no tokenizer)."""

from __future__ import annotations

import numpy as np
from gguf import GGUFWriter


def write_tiny_llama(
    path,
    n_layer=4,
    d=32,
    n_head=4,
    n_kv=2,
    n_ff=64,
    n_vocab=16,
    seed=0,
    identity_layers=(),
    scale=1.0,
    n_ctx=256,
    arch="llama",
    rope_linear=None,
    tied=False,
    weight_type=None,
    head_dim=None,
    qkv_bias=None,
    out_bias=False,
    qk_norm=None,
):
    """Write a random llama-layout GGUF (F32 weights). Layers in `identity_layers` have zero output
    projections (attn_output and ffn_down), so they leave the residual stream unchanged.
    rope_linear: a linear RoPE scaling factor; tied: no output.weight (tied embeddings);
    weight_type: a GGMLQuantizationType for the layer matrices (quantized with gguf.quants).
    The other layouts of the same layer: head_dim (default d // n_head; else written as the
    attention key/value length), qkv_bias (q/k/v biases; default: arch == "qwen2"), out_bias
    (attn_output bias), qk_norm (per-head q/k RMSNorm weights; default: arch == "qwen3"). With
    arch "qwen2"/"qwen3" the engine applies NEOX RoPE to the same tensors."""
    from gguf.quants import quantize

    rng = np.random.default_rng(seed)
    qkv_bias = arch == "qwen2" if qkv_bias is None else qkv_bias
    qk_norm = arch == "qwen3" if qk_norm is None else qk_norm
    hd = head_dim or d // n_head
    w = GGUFWriter(str(path), arch)
    if head_dim:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    if rope_linear:
        w.add_rope_scaling_type(__import__("gguf").RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope_linear)
    w.add_context_length(n_ctx)
    w.add_embedding_length(d)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(0)

    def mat(rows, k, s=1.0):
        return (rng.standard_normal((rows, k)) * s * scale / np.sqrt(k)).astype(np.float32)

    w.add_tensor("token_embd.weight", mat(n_vocab, d, np.sqrt(d)))
    w.add_tensor("output_norm.weight", np.ones(d, np.float32))
    if not tied:
        w.add_tensor("output.weight", mat(n_vocab, d, 4.0))

    def add(name, a):
        if weight_type is None:
            w.add_tensor(name, a)
        else:
            w.add_tensor(
                name, quantize(a, weight_type), raw_shape=quantize(a, weight_type).shape, raw_dtype=weight_type
            )

    for l in range(n_layer):
        p = f"blk.{l}."
        zero = l in identity_layers
        w.add_tensor(p + "attn_norm.weight", (1 + 0.1 * rng.standard_normal(d)).astype(np.float32))
        add(p + "attn_q.weight", mat(n_head * hd, d))
        add(p + "attn_k.weight", mat(n_kv * hd, d))
        add(p + "attn_v.weight", mat(n_kv * hd, d))
        add(p + "attn_output.weight", mat(d, n_head * hd) * (0 if zero else 1))
        if qkv_bias:
            for name, n in (("attn_q", n_head * hd), ("attn_k", n_kv * hd), ("attn_v", n_kv * hd)):
                w.add_tensor(p + name + ".bias", (0.5 * rng.standard_normal(n)).astype(np.float32))
        if out_bias:
            w.add_tensor(p + "attn_output.bias", (0.2 * rng.standard_normal(d)).astype(np.float32))
        if qk_norm:
            for name in ("attn_q_norm", "attn_k_norm"):
                w.add_tensor(p + name + ".weight", (1 + 0.3 * rng.standard_normal(hd)).astype(np.float32))
        w.add_tensor(p + "ffn_norm.weight", (1 + 0.1 * rng.standard_normal(d)).astype(np.float32))
        add(p + "ffn_gate.weight", mat(n_ff, d))
        add(p + "ffn_up.weight", mat(n_ff, d))
        add(p + "ffn_down.weight", mat(d, n_ff) * (0 if zero else 1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)
