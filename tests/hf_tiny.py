"""Tiny Hugging Face checkpoints made in the tests: tokenizers trained with `tokenizers` /
`sentencepiece`, random models with `transformers` (torch) or, when only the file layout
matters, written with NumPy."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

# Pre-tokenizer regexes (from the models' tokenizer.json files).
GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_RE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

DATA = Path(__file__).parent / "data"


def training_text():
    with open(DATA / "spec_bench_prompts.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def bpe_pre_tokenizer(pre: str):
    """The `tokenizers` pre-tokenizer of each supported tokenizer.ggml.pre, as the real
    models' tokenizer.json files configure it."""
    from tokenizers import Regex
    from tokenizers import pre_tokenizers as pt

    if pre == "gpt-2":
        return pt.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        return pt.Sequence([pt.Digits(individual_digits=True), pt.ByteLevel(add_prefix_space=False, use_regex=True)])
    regex = {"llama-bpe": LLAMA3_RE, "qwen2": QWEN2_RE}[pre]
    return pt.Sequence(
        [
            pt.Split(Regex(regex), behavior="isolated", invert=False),
            pt.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def write_bpe_tokenizer(
    d: Path,
    pre: str = "smollm",
    vocab_size: int = 400,
    bos: bool = False,
    specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
    user_tokens=("<think>",),
    chat_template: str | None = None,
) -> dict:
    """Train a byte-level BPE tokenizer and save it with transformers (tokenizer.json,
    tokenizer_config.json) into d. bos: a post-processor that prepends the first special
    token (as Llama 3's does). Returns {"n_tokens": ...}."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(ignore_merges=(pre == "llama-bpe")))
    tok.pre_tokenizer = bpe_pre_tokenizer(pre)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(training_text(), trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in user_tokens])
    if bos:
        b = specials[0]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{b} $A", pair=f"{b} $A {b} $B", special_tokens=[(b, tok.token_to_id(b))]
        )
    kw = dict(tokenizer_object=tok, eos_token=specials[-1], pad_token=specials[0])
    if bos:
        kw["bos_token"] = specials[0]
    hf = PreTrainedTokenizerFast(**kw)
    if chat_template:
        hf.chat_template = chat_template
    d.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(str(d))
    return {"n_tokens": tok.get_vocab_size()}


def write_spm_tokenizer(d: Path, vocab_size: int = 600) -> dict:
    """Train a SentencePiece BPE model (byte fallback, identity normalization, as Llama 2's)
    and save tokenizer.model and tokenizer_config.json into d."""
    import sentencepiece as spm

    lines = [ln for p in training_text() for ln in p.split("\n") if ln.strip()]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=0.995,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        allow_whitespace_only_pieces=True,
        split_digits=True,
        minloglevel=2,
    )
    d.mkdir(parents=True, exist_ok=True)
    (d / "tokenizer.model").write_bytes(buf.getvalue())
    (d / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "add_bos_token": True,
                "add_eos_token": False,
                "legacy": True,
            }
        )
    )
    return {"n_tokens": vocab_size}


def llama_config(arch: str = "LlamaForCausalLM", **kw) -> dict:
    cfg = dict(
        architectures=[arch],
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=512,
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        hidden_act="silu",
        tie_word_embeddings=False,
        model_type="llama",
    )
    cfg.update(kw)
    return cfg


def write_numpy_checkpoint(d: Path, cfg: dict, seed: int = 0, dtype=np.float32, drop=(), reshape=None):
    """A random llama-layout checkpoint written with NumPy (no torch): config.json and
    model.safetensors. drop: tensor names to leave out; reshape: {name: shape} to corrupt."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    h, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg.get("head_dim") or h // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    t = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    if not cfg.get("tie_word_embeddings"):
        t["lm_head.weight"] = (v, h)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t.update(
            {
                p + "input_layernorm.weight": (h,),
                p + "self_attn.q_proj.weight": (q, h),
                p + "self_attn.k_proj.weight": (kv, h),
                p + "self_attn.v_proj.weight": (kv, h),
                p + "self_attn.o_proj.weight": (h, q),
                p + "post_attention_layernorm.weight": (h,),
                p + "mlp.gate_proj.weight": (f, h),
                p + "mlp.up_proj.weight": (f, h),
                p + "mlp.down_proj.weight": (h, f),
            }
        )
    t.update(reshape or {})
    arrays = {k: (rng.standard_normal(s) * 0.1).astype(dtype) for k, s in t.items() if k not in drop}
    save_file(arrays, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps(cfg))
    return d


ARCH_CONFIGS = {
    # name: (transformers config class, config overrides)
    "llama": ("LlamaConfig", dict()),
    "llama-bias-tied": ("LlamaConfig", dict(attention_bias=True, tie_word_embeddings=True)),
    "mistral": ("MistralConfig", dict(head_dim=24, sliding_window=None)),  # head_dim != hidden / heads
    "qwen2": ("Qwen2Config", dict()),
    "qwen3": ("Qwen3Config", dict(head_dim=24)),
}


def make_hf_model(d: Path, arch: str, vocab_size: int, seed: int = 0, shard: bool = False):
    """A random tiny `transformers` model of architecture `arch` (ARCH_CONFIGS), saved as
    safetensors into d (sharded with an index when shard). Norm weights and biases, which
    transformers initialises to 1 and 0, are randomised too so that every tensor matters.
    Returns the model (float32, eval mode)."""
    import torch
    import transformers

    cls, over = ARCH_CONFIGS[arch]
    kw = dict(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab_size,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        initializer_range=0.15,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    kw.update(over)
    cfg = getattr(transformers, cls)(**kw)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn_like(p))
    d.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(d), max_shard_size="100KB" if shard else "10GB")
    return model
