"""An independent NumPy forward pass of the llama architecture, reading weights with `gguf`.

It is written from the architecture's definition, not from the engine: weights dequantized by
`gguf.quants`, RMSNorm, RoPE on adjacent pairs (the llama GGUF convention), grouped-query
attention with a causal mask, SwiGLU MLP, tied or separate output. Two optional emulations make
the comparison with the engine tight where the engine rounds on purpose:
  - quant_act: activations entering a quantized matrix product are rounded to Q8 blocks
    (d = max|x| / 127, q = rint(x / d)), as the engine's CPU kernels do;
  - kv_f16: cached keys and values are stored as float16;
  - act_f16: activations entering every matrix product are rounded to float16, as the CUDA
    backend's prompt path (cuBLAS on F16 operands) does.
"""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

QUANTIZED = {GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q8_0}


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


class Reference:
    def __init__(self, path, quant_act=False, kv_f16=False, plan=None, act_f16=False):
        r = GGUFReader(path)
        arch = _field(r, "general.architecture")
        assert arch == "llama", arch
        k = lambda s, d=None: _field(r, f"{arch}.{s}", d)  # noqa: E731
        self.n_layer = k("block_count")
        self.n_head = k("attention.head_count")
        self.n_head_kv = k("attention.head_count_kv", self.n_head)
        self.d = k("embedding_length")
        self.hd = self.d // self.n_head
        self.n_rot = k("rope.dimension_count", self.hd)
        self.base = k("rope.freq_base", 10000.0)
        scale = k("rope.scaling.factor", None) if k("rope.scaling.type", "none") == "linear" else None
        self.pos_scale = 1.0 / scale if scale else 1.0
        self.eps = k("attention.layer_norm_rms_epsilon", 1e-5)
        self.quant_act = quant_act
        self.act_f16 = act_f16
        self.kv_f16 = kv_f16
        self.plan = plan  # (attn flags, mlp flags[, groups as (first, last) ranges]) or None
        self.w, self.wtype = {}, {}
        for t in r.tensors:
            # gguf reports shape ne-first; the data is (rows, k) row-major.
            a = dequantize(t.data, t.tensor_type).astype(np.float32)
            self.w[t.name] = a.reshape(-1, int(t.shape[0])) if len(t.shape) > 1 else a.reshape(-1)
            self.wtype[t.name] = t.tensor_type
        if "output.weight" not in self.w:
            self.w["output.weight"] = self.w["token_embd.weight"]
            self.wtype["output.weight"] = self.wtype["token_embd.weight"]
        self.reset()

    def reset(self):
        self.cache_k = [np.zeros((0, self.n_head_kv * self.hd), np.float32) for _ in range(self.n_layer)]
        self.cache_v = [np.zeros((0, self.n_head_kv * self.hd), np.float32) for _ in range(self.n_layer)]
        self.n_past = 0

    # --- pieces -------------------------------------------------------------------------
    @staticmethod
    def q8(x):
        """Round rows of x to Q8 blocks of 32 (the engine's activation quantization)."""
        b = x.reshape(x.shape[0], -1, 32)
        d = np.abs(b).max(axis=-1, keepdims=True) / np.float32(127)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(d > 0, np.float32(1) / d, np.float32(0))
        q = np.rint(b * inv)
        return (q * d).reshape(x.shape).astype(np.float32)

    def mm(self, x, name):
        w = self.w[name]
        if self.quant_act and self.wtype[name] in QUANTIZED:
            x = self.q8(x)
        if self.act_f16:
            x = x.astype(np.float16).astype(np.float32)
        return (x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.float32)

    def norm(self, x, name):
        x64 = x.astype(np.float64)
        s = 1.0 / np.sqrt((x64 * x64).mean(axis=-1, keepdims=True) + self.eps)
        return (x * s.astype(np.float32)) * self.w[name]

    def rope(self, x, pos, n_heads):
        x = x.reshape(len(pos), n_heads, self.hd).copy()
        i = np.arange(self.n_rot // 2)
        theta = np.outer(np.asarray(pos, np.float64) * self.pos_scale, self.base ** (-2.0 * i / self.n_rot))
        c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
        a, b = x[..., 0 : self.n_rot : 2].copy(), x[..., 1 : self.n_rot : 2].copy()
        x[..., 0 : self.n_rot : 2] = a * c - b * s
        x[..., 1 : self.n_rot : 2] = a * s + b * c
        return x.reshape(len(pos), -1)

    # --- forward ------------------------------------------------------------------------
    def forward(self, tokens):
        """Logits (n, n_vocab) for tokens appended after the cached ones."""
        n = len(tokens)
        pos = np.arange(self.n_past, self.n_past + n)
        x = self.w["token_embd.weight"][np.asarray(tokens)]
        groups = self.plan[2] if self.plan is not None and len(self.plan) > 2 else ()
        starts = {a: b for a, b in groups}
        l = 0
        while l < self.n_layer:
            if l in starts:  # parallel group: every layer reads h; out = h + sum(layer(h) - h)
                h0 = x
                x = h0 + sum(self.layer(h0, j, pos) - h0 for j in range(l, starts[l] + 1))
                l = starts[l] + 1
            else:
                x = self.layer(x, l, pos)
                l += 1
        self.n_past += n
        return self.mm(self.norm(x, "output_norm.weight"), "output.weight")

    def layer(self, x, l, pos):
        n = x.shape[0]
        group = self.n_head // self.n_head_kv
        if True:
            p = f"blk.{l}."
            if self.plan is None or self.plan[0][l]:
                h = self.norm(x, p + "attn_norm.weight")
                q = self.rope(self.mm(h, p + "attn_q.weight"), pos, self.n_head)
                k = self.rope(self.mm(h, p + "attn_k.weight"), pos, self.n_head_kv)
                v = self.mm(h, p + "attn_v.weight")
                if self.kv_f16:
                    k, v = k.astype(np.float16).astype(np.float32), v.astype(np.float16).astype(np.float32)
                self.cache_k[l] = np.concatenate([self.cache_k[l], k])
                self.cache_v[l] = np.concatenate([self.cache_v[l], v])
                K, V = self.cache_k[l], self.cache_v[l]
                out = np.zeros((n, self.n_head * self.hd), np.float32)
                mask = np.arange(K.shape[0])[None, :] <= pos[:, None]  # causal
                for hh in range(self.n_head):
                    g = hh // group
                    qh = q[:, hh * self.hd : (hh + 1) * self.hd].astype(np.float64)
                    kh = K[:, g * self.hd : (g + 1) * self.hd].astype(np.float64)
                    vh = V[:, g * self.hd : (g + 1) * self.hd].astype(np.float64)
                    sc = np.where(mask, qh @ kh.T / np.sqrt(self.hd), -np.inf)
                    sc = np.exp(sc - sc.max(axis=1, keepdims=True))
                    out[:, hh * self.hd : (hh + 1) * self.hd] = (sc / sc.sum(axis=1, keepdims=True)) @ vh
                x = x + self.mm(out, p + "attn_output.weight")
            if self.plan is None or self.plan[1][l]:
                h = self.norm(x, p + "ffn_norm.weight")
                g = self.mm(h, p + "ffn_gate.weight")
                u = self.mm(h, p + "ffn_up.weight")
                a = (g / (1.0 + np.exp(-g.astype(np.float64)))).astype(np.float32) * u
                x = x + self.mm(a, p + "ffn_down.weight")
        return x
