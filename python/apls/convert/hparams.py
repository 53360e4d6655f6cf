"""config.json → the architecture and its GGUF hyperparameters (llama.cpp's keys)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

from .errors import ConvertError

log = logging.getLogger("apls.convert")


@dataclass(frozen=True)
class ArchSpec:
    """How one Hugging Face architecture converts.

    gguf_arch: general.architecture; permute_qk: reorder q/k rows from rotate-half to adjacent
    pairs (llama's RoPE layout in GGUF); qkv_bias: "required", "optional" (attention_bias) or
    "none"; qk_norm: per-head q/k RMSNorm weights (attn_q_norm / attn_k_norm).
    """

    gguf_arch: str
    permute_qk: bool
    qkv_bias: str
    qk_norm: bool = False


ARCHITECTURES: dict[str, ArchSpec] = {
    "LlamaForCausalLM": ArchSpec("llama", permute_qk=True, qkv_bias="optional"),
    "MistralForCausalLM": ArchSpec("llama", permute_qk=True, qkv_bias="none"),
    "Qwen2ForCausalLM": ArchSpec("qwen2", permute_qk=False, qkv_bias="required"),
    "Qwen3ForCausalLM": ArchSpec("qwen3", permute_qk=False, qkv_bias="none", qk_norm=True),
}


@dataclass
class HParams:
    """The hyperparameters conversion needs, read from config.json and checked."""

    hf_arch: str
    spec: ArchSpec
    n_vocab: int
    n_ctx: int
    n_embd: int
    n_layer: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    rope_theta: float
    rope_linear_factor: float | None
    rms_eps: float
    tied: bool | None  # None: config.json does not say (decided by lm_head.weight's presence)
    qkv_bias: bool
    o_bias: bool  # attn_output bias (llama with attention_bias; Qwen2 has q/k/v biases only)
    name: str

    @property
    def q_dim(self) -> int:
        return self.n_head * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_head_kv * self.head_dim


@overload
def read_json(path: Path, required: Literal[True] = ...) -> dict[str, Any]: ...
@overload
def read_json(path: Path, required: bool) -> dict[str, Any] | None: ...
def read_json(path: Path, required: bool = True) -> dict[str, Any] | None:
    """A JSON file as a dict; None when absent and not required.

    Raises:
        ConvertError: missing (when required) or not a JSON object.
    """
    if not path.exists():
        if required:
            raise ConvertError(
                f"{path}: missing (a Hugging Face checkpoint directory has config.json, "
                "safetensors weights and a tokenizer)"
            )
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConvertError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise ConvertError(f"{path}: not a JSON object")
    return d


def _rope(cfg: dict[str, Any]) -> tuple:
    """(theta, linear factor or None) from transformers 4 (rope_theta, rope_scaling) or 5
    (rope_parameters) configs; other scaling types are refused by name."""
    params: dict[str, Any] = cfg.get("rope_parameters") or {}
    if isinstance(params, dict) and params and not ("rope_type" in params or "rope_theta" in params):
        params = next(iter(params.values()), {})  # per-layer-type dict: not used by these architectures
    theta = cfg.get("rope_theta", params.get("rope_theta", 10000.0))
    scaling: dict[str, Any] = cfg.get("rope_scaling") or params
    kind = (scaling.get("rope_type") or scaling.get("type") or "default") if scaling else "default"
    if kind == "default":
        return float(theta), None
    if kind == "linear":
        factor = float(scaling.get("factor", 0))
        if factor <= 0:
            raise ConvertError(f"config.json: linear RoPE scaling needs a positive factor, got {factor}")
        return float(theta), factor
    raise ConvertError(f"config.json: RoPE scaling type '{kind}' is not supported (supported: default, linear)")


def read_hparams(cfg: dict[str, Any]) -> HParams:
    """Check config.json and extract the hyperparameters.

    Raises:
        ConvertError: no `architectures`, an unsupported one (named, with the supported list),
        or settings the engine does not run (activation, sliding window, RoPE scaling type...).
    """
    archs = cfg.get("architectures") or []
    if not archs:
        raise ConvertError("config.json has no 'architectures' entry")
    hf_arch = archs[0]
    spec = ARCHITECTURES.get(hf_arch)
    if spec is None:
        raise ConvertError(f"unsupported architecture '{hf_arch}' (supported: {', '.join(ARCHITECTURES)})")

    def need(key: str) -> Any:
        if cfg.get(key) is None:
            raise ConvertError(f"config.json: '{key}' is missing (needed for {hf_arch})")
        return cfg[key]

    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise ConvertError(f"config.json: hidden_act '{act}' is not supported (supported: silu)")
    if cfg.get("mlp_bias"):
        raise ConvertError("config.json: mlp_bias = true is not supported")
    if cfg.get("use_sliding_window"):
        raise ConvertError("config.json: use_sliding_window = true (sliding-window attention) is not supported")
    kinds = set(cfg.get("layer_types") or ["full_attention"])
    if kinds != {"full_attention"}:
        raise ConvertError(f"config.json: layer_types {sorted(kinds)} are not supported (supported: full_attention)")
    if cfg.get("partial_rotary_factor", 1.0) != 1.0:
        raise ConvertError("config.json: partial_rotary_factor != 1 is not supported")
    n_embd, n_head = int(need("hidden_size")), int(need("num_attention_heads"))
    n_head_kv = int(cfg.get("num_key_value_heads") or n_head)
    head_dim = int(cfg.get("head_dim") or 0) or (n_embd // n_head)
    if cfg.get("head_dim") is None and n_embd % n_head:
        raise ConvertError(f"config.json: hidden_size {n_embd} is not a multiple of num_attention_heads {n_head}")
    if n_head % n_head_kv:
        raise ConvertError(
            f"config.json: num_attention_heads {n_head} is not a multiple of num_key_value_heads {n_head_kv}"
        )
    if head_dim % 2:
        raise ConvertError(f"config.json: head_dim {head_dim} is odd (RoPE rotates pairs)")
    bias = bool(cfg.get("attention_bias", False))
    if spec.qkv_bias == "required":
        bias = True
    elif spec.qkv_bias == "none" and bias:
        raise ConvertError(f"config.json: attention_bias = true is not supported for {hf_arch}")
    theta, linear = _rope(cfg)
    n_ctx = int(cfg.get("max_position_embeddings") or 2048)
    sw = cfg.get("sliding_window")
    if hf_arch == "MistralForCausalLM" and sw and sw < n_ctx:
        log.warning(
            "sliding_window %d < max_position_embeddings %d: like llama.cpp, the engine attends to the "
            "whole context, which differs from the checkpoint past %d tokens",
            sw,
            n_ctx,
            sw,
        )
    tied = cfg.get("tie_word_embeddings")
    return HParams(
        hf_arch=hf_arch,
        spec=spec,
        n_vocab=int(need("vocab_size")),
        n_ctx=n_ctx,
        n_embd=n_embd,
        n_layer=int(need("num_hidden_layers")),
        n_ff=int(need("intermediate_size")),
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        rope_theta=theta,
        rope_linear_factor=linear,
        rms_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        tied=None if tied is None else bool(tied),
        qkv_bias=bias,
        o_bias=bias and spec.qkv_bias == "optional",
        name=str(cfg.get("_name_or_path") or ""),
    )


def write_hparams(w, hp: HParams, name: str) -> None:
    """Add the architecture's metadata to GGUFWriter `w` (llama.cpp's keys)."""
    w.add_name(name)
    w.add_context_length(hp.n_ctx)
    w.add_embedding_length(hp.n_embd)
    w.add_block_count(hp.n_layer)
    w.add_feed_forward_length(hp.n_ff)
    w.add_head_count(hp.n_head)
    w.add_head_count_kv(hp.n_head_kv)
    w.add_rope_freq_base(hp.rope_theta)
    w.add_layer_norm_rms_eps(hp.rms_eps)
    w.add_vocab_size(hp.n_vocab)
    w.add_rope_dimension_count(hp.head_dim)
    if hp.head_dim != hp.n_embd // hp.n_head or hp.spec.qk_norm:
        w.add_key_length(hp.head_dim)
        w.add_value_length(hp.head_dim)
    if hp.rope_linear_factor is not None:
        import gguf

        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(hp.rope_linear_factor)
