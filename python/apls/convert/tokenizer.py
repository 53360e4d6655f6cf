"""Tokenizer export: tokenizer.json (byte-level BPE) or tokenizer.model (SentencePiece) →
llama.cpp's tokenizer.ggml.* metadata, written so the engine's tokenizer reproduces Hugging
Face's.

Byte-level BPE ("gpt2"): the vocabulary, merges and added tokens of tokenizer.json; the
pre-tokenizer is identified from tokenizer.json's pre_tokenizer (its regex and steps) and
written as tokenizer.ggml.pre, a name the engine (and llama.cpp) knows.
SentencePiece ("llama"): pieces, scores and piece types from the model file's protobuf.
Both: special token ids and add_bos/add_eos from tokenizer_config.json, config.json,
generation_config.json and the tokenizer's post-processor; the chat template; ids the
embedding has beyond the tokenizer are padded with unused "[PAD{id}]" tokens.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConvertError
from .hparams import read_json

log = logging.getLogger("apls.convert")

# tokenizer.ggml.token_type values (the same numbers as SentencePiece's piece types).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Pre-tokenizer regexes as the models' tokenizer.json files spell them.
GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_RE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Pre-tokenizer step signatures (see _signature) → tokenizer.ggml.pre.
KNOWN_PRE: dict[tuple, str] = {
    ("ByteLevel(regex)",): "gpt-2",
    (f"Split({GPT2_RE})", "ByteLevel"): "gpt-2",
    ("Digits(individual)", "ByteLevel(regex)"): "smollm",
    (f"Split({LLAMA3_RE})", "ByteLevel"): "llama-bpe",
    (f"Split({QWEN2_RE})", "ByteLevel"): "qwen2",
}
# Pre-tokenizers whose tokenizer.json has model.ignore_merges = true (the engine assumes it).
IGNORE_MERGES_PRE = {"llama-bpe"}


@dataclass
class TokenizerExport:
    """What goes into tokenizer.ggml.*; write() adds it to a GGUFWriter."""

    model: str  # "gpt2" (byte-level BPE) or "llama" (SentencePiece)
    tokens: list[str]
    types: list[int]
    pre: str | None = None
    merges: list[str] | None = None
    scores: list[float] | None = None
    special: dict[str, int] = field(default_factory=dict)  # bos, eos, unk, pad -> id
    add_bos: bool | None = None
    add_eos: bool | None = None
    add_space_prefix: bool | None = None
    chat_template: str | None = None

    def write(self, w) -> None:
        w.add_tokenizer_model(self.model)
        if self.pre is not None:
            w.add_tokenizer_pre(self.pre)
        w.add_token_list(self.tokens)
        w.add_token_types(self.types)
        if self.scores is not None:
            w.add_token_scores(self.scores)
        if self.merges is not None:
            w.add_token_merges(self.merges)
        for kind, fn in (
            ("bos", w.add_bos_token_id),
            ("eos", w.add_eos_token_id),
            ("unk", w.add_unk_token_id),
            ("pad", w.add_pad_token_id),
        ):
            if kind in self.special:
                fn(self.special[kind])
        if self.add_bos is not None:
            w.add_add_bos_token(self.add_bos)
        if self.add_eos is not None:
            w.add_add_eos_token(self.add_eos)
        if self.add_space_prefix is not None:
            w.add_add_space_prefix(self.add_space_prefix)
        if self.chat_template:
            w.add_chat_template(self.chat_template)


# ---- entry point ------------------------------------------------------------------------------


def read_tokenizer(model_dir: Path, n_vocab: int, cfg: dict[str, Any]) -> TokenizerExport:
    """The tokenizer of a checkpoint directory, padded to n_vocab ids.

    Raises:
        ConvertError: no tokenizer file, a tokenizer that is neither byte-level BPE nor
        SentencePiece BPE, an unknown pre-tokenizer (described), more tokens than the
        embedding has rows, or special tokens that are not in the vocabulary.
    """
    tj_path, spm_path = model_dir / "tokenizer.json", model_dir / "tokenizer.model"
    tok_cfg = read_json(model_dir / "tokenizer_config.json", required=False) or {}
    gen_cfg = read_json(model_dir / "generation_config.json", required=False) or {}
    tj = read_json(tj_path, required=False)
    if tj is not None and _is_byte_level(tj):
        exp = _bpe(tj, tj_path)
    elif spm_path.exists():
        exp = _spm(spm_path, tok_cfg, model_dir)
    elif tj is not None:
        kind = (tj.get("model") or {}).get("type")
        raise ConvertError(
            f"{tj_path}: a {kind} tokenizer that is not byte-level BPE, and there is no tokenizer.model "
            "(supported: byte-level BPE tokenizer.json, SentencePiece tokenizer.model)"
        )
    else:
        raise ConvertError(f"{model_dir}: no tokenizer (need tokenizer.json or tokenizer.model)")
    _pad(exp, n_vocab)
    _special_tokens(exp, tj, tok_cfg, cfg, gen_cfg)
    exp.chat_template = _chat_template(model_dir, tok_cfg)
    return exp


def _pad(exp: TokenizerExport, n_vocab: int) -> None:
    n = len(exp.tokens)
    if n > n_vocab:
        raise ConvertError(
            f"the tokenizer has {n} tokens but the model's embedding has {n_vocab} rows (config.json vocab_size)"
        )
    for i in range(n, n_vocab):
        exp.tokens.append(f"[PAD{i}]")
        exp.types.append(UNUSED)
        if exp.scores is not None:
            exp.scores.append(-1000.0)


# ---- byte-level BPE (tokenizer.json) ---------------------------------------------------------


def _steps(pt: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not pt:
        return []
    if pt.get("type") == "Sequence":
        return [s for p in pt.get("pretokenizers", []) for s in _steps(p)]
    return [pt]


def _is_byte_level(tj: dict[str, Any]) -> bool:
    return (tj.get("model") or {}).get("type") == "BPE" and any(
        s.get("type") == "ByteLevel" for s in _steps(tj.get("pre_tokenizer"))
    )


def _describe(step: dict[str, Any]) -> str:
    t = step.get("type")
    if t == "Split":
        pat = step.get("pattern") or {}
        return (
            f"Split({'Regex' if 'Regex' in pat else 'String'} {next(iter(pat.values()), '')!r}, "
            f"{step.get('behavior')}{', invert' if step.get('invert') else ''})"
        )
    args = ", ".join(f"{k}={v}" for k, v in step.items() if k != "type")
    return f"{t}({args})"


def _signature(steps: list[dict[str, Any]]) -> tuple:
    sig = []
    for s in steps:
        t = s.get("type")
        if t == "ByteLevel" and not s.get("add_prefix_space", False):
            sig.append("ByteLevel(regex)" if s.get("use_regex", True) else "ByteLevel")
        elif t == "Digits":
            sig.append("Digits(individual)" if s.get("individual_digits") else "Digits")
        elif (
            t == "Split"
            and s.get("behavior") == "Isolated"
            and not s.get("invert")
            and "Regex" in (s.get("pattern") or {})
        ):
            sig.append(f"Split({s['pattern']['Regex']})")
        else:
            sig.append(_describe(s))
    return tuple(sig)


def identify_pretokenizer(tj: dict[str, Any]) -> str:
    """tokenizer.ggml.pre for tokenizer.json's pre_tokenizer.

    Raises:
        ConvertError: a pre-tokenizer the engine has no matcher for, described step by step.
    """
    steps = _steps(tj.get("pre_tokenizer"))
    name = KNOWN_PRE.get(_signature(steps))
    if name is None:
        desc = " + ".join(_describe(s) for s in steps) or "none"
        raise ConvertError(
            f"unknown pre-tokenizer in tokenizer.json: {desc} (supported: {', '.join(sorted(set(KNOWN_PRE.values())))})"
        )
    return name


def _check_normalizer(tj: dict[str, Any], path: Path) -> None:
    norm = tj.get("normalizer")
    steps = norm.get("normalizers", []) if norm and norm.get("type") == "Sequence" else [norm] if norm else []
    for s in steps:
        if s.get("type") == "NFC":
            log.warning(
                "%s: the NFC normalizer is not applied by the engine (nor by llama.cpp): text that is "
                "not in NFC may tokenize differently",
                path,
            )
        else:
            raise ConvertError(f"{path}: normalizer {_describe(s)} is not supported for byte-level BPE")


def _bpe(tj: dict[str, Any], path: Path) -> TokenizerExport:
    model = tj["model"]
    if model.get("byte_fallback") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise ConvertError(
            f"{path}: BPE options byte_fallback / continuing_subword_prefix / end_of_word_suffix "
            "are not supported with a byte-level pre-tokenizer"
        )
    _check_normalizer(tj, path)
    pre = identify_pretokenizer(tj)
    if bool(model.get("ignore_merges", False)) != (pre in IGNORE_MERGES_PRE):
        log.warning(
            "%s: ignore_merges = %s, but the engine's '%s' tokenizer assumes %s",
            path,
            model.get("ignore_merges", False),
            pre,
            pre in IGNORE_MERGES_PRE,
        )
    by_id: dict[int, tuple[str, int]] = {i: (t, NORMAL) for t, i in model["vocab"].items()}
    for a in tj.get("added_tokens", []):
        by_id[a["id"]] = (a["content"], CONTROL if a.get("special") else USER_DEFINED)
    n = max(by_id) + 1 if by_id else 0
    tokens, types = [f"[PAD{i}]" for i in range(n)], [UNUSED] * n
    for i, (t, ty) in by_id.items():
        tokens[i], types[i] = t, ty
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return TokenizerExport("gpt2", tokens, types, pre=pre, merges=merges)


# ---- SentencePiece (tokenizer.model) ---------------------------------------------------------


def _fields(buf: bytes):
    """(field number, wire type, value) of a protobuf message; len-delimited values are bytes."""
    i, n = 0, len(buf)

    def varint():
        nonlocal i
        v = shift = 0
        while True:
            if i >= n:
                raise ValueError("truncated varint")
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v

    while i < n:
        key = varint()
        num, wt = key >> 3, key & 7
        if wt == 0:
            yield num, wt, varint()
        elif wt == 1:
            yield num, wt, buf[i : i + 8]
            i += 8
        elif wt == 2:
            ln = varint()
            if i + ln > n:
                raise ValueError("truncated field")
            yield num, wt, buf[i : i + ln]
            i += ln
        elif wt == 5:
            yield num, wt, buf[i : i + 4]
            i += 4
        else:
            raise ValueError(f"wire type {wt}")


def read_spm_model(path: Path) -> dict[str, Any]:
    """The parts of a SentencePiece ModelProto conversion needs: pieces (text, score, type),
    the trainer's model type, the normalizer's name, add_dummy_prefix, remove_extra_whitespaces.

    Raises:
        ConvertError: the file is not a SentencePiece model.
    """
    out: dict[str, Any] = {
        "pieces": [],
        "model_type": 1,
        "normalizer": "",
        "add_dummy_prefix": True,
        "remove_extra_whitespaces": True,
    }
    try:
        for num, wt, val in _fields(path.read_bytes()):
            if num == 1 and wt == 2:  # SentencePiece { piece = 1; score = 2; type = 3 }
                piece, score, ty = "", 0.0, NORMAL
                for n2, w2, v2 in _fields(val):
                    if n2 == 1 and w2 == 2:
                        piece = v2.decode("utf-8")
                    elif n2 == 2 and w2 == 5:
                        score = struct.unpack("<f", v2)[0]
                    elif n2 == 3 and w2 == 0:
                        ty = v2
                out["pieces"].append((piece, score, ty))
            elif num == 2 and wt == 2:  # TrainerSpec { model_type = 3 }
                for n2, w2, v2 in _fields(val):
                    if n2 == 3 and w2 == 0:
                        out["model_type"] = v2
            elif (
                num == 3 and wt == 2
            ):  # NormalizerSpec { name = 1; add_dummy_prefix = 3; remove_extra_whitespaces = 4 }
                for n2, w2, v2 in _fields(val):
                    if n2 == 1 and w2 == 2:
                        out["normalizer"] = v2.decode("utf-8")
                    elif n2 == 3 and w2 == 0:
                        out["add_dummy_prefix"] = bool(v2)
                    elif n2 == 4 and w2 == 0:
                        out["remove_extra_whitespaces"] = bool(v2)
    except (ValueError, UnicodeDecodeError, struct.error) as e:
        raise ConvertError(f"{path}: not a SentencePiece model ({e})") from None
    if not out["pieces"]:
        raise ConvertError(f"{path}: not a SentencePiece model (no pieces)")
    return out


def _spm(path: Path, tok_cfg: dict[str, Any], model_dir: Path) -> TokenizerExport:
    m = read_spm_model(path)
    kinds = {1: "Unigram", 2: "BPE", 3: "Word", 4: "Char"}
    if m["model_type"] != 2:
        raise ConvertError(
            f"{path}: SentencePiece {kinds.get(m['model_type'], m['model_type'])} model is not "
            "supported (supported: BPE)"
        )
    if m["normalizer"] not in ("identity", "") or m["remove_extra_whitespaces"]:
        log.warning(
            "%s: normalizer '%s' (remove_extra_whitespaces=%s) is not applied by the engine (nor by "
            "llama.cpp): text it would change may tokenize differently",
            path,
            m["normalizer"],
            m["remove_extra_whitespaces"],
        )
    tokens = [p for p, _, _ in m["pieces"]]
    scores = [float(s) for _, s, _ in m["pieces"]]
    types = [t if 1 <= t <= 6 else NORMAL for _, _, t in m["pieces"]]
    # Tokens added on top of the model (ids past its pieces), as transformers adds them.
    added: dict[int, tuple[str, bool]] = {}
    for i, a in (tok_cfg.get("added_tokens_decoder") or {}).items():
        added[int(i)] = (a["content"], bool(a.get("special")))
    for content, i in (read_json(model_dir / "added_tokens.json", required=False) or {}).items():
        added.setdefault(int(i), (content, False))
    for i in sorted(added):
        content, special = added[i]
        if i < len(tokens):
            if special and types[i] == NORMAL:
                types[i] = CONTROL
            continue
        while len(tokens) < i:
            tokens.append(f"[PAD{len(tokens)}]")
            types.append(UNUSED)
            scores.append(-1000.0)
        tokens.append(content)
        types.append(CONTROL if special else USER_DEFINED)
        scores.append(0.0)
    exp = TokenizerExport("llama", tokens, types, scores=scores, add_space_prefix=m["add_dummy_prefix"])
    exp.add_bos = bool(tok_cfg.get("add_bos_token", True))
    exp.add_eos = bool(tok_cfg.get("add_eos_token", False))
    for kind, ty in (("unk", UNKNOWN),):
        ids = [i for i, t in enumerate(types) if t == ty]
        if ids:
            exp.special[kind] = ids[0]
    for kind, text in (("bos", "<s>"), ("eos", "</s>")):
        if text in tokens and types[tokens.index(text)] == CONTROL:
            exp.special[kind] = tokens.index(text)
    return exp


# ---- special tokens, add_bos/add_eos, chat template --------------------------------------------


def _token_text(v: Any) -> str | None:
    if isinstance(v, dict):
        return v.get("content")
    return v if isinstance(v, str) else None


def _special_tokens(
    exp: TokenizerExport,
    tj: dict[str, Any] | None,
    tok_cfg: dict[str, Any],
    cfg: dict[str, Any],
    gen_cfg: dict[str, Any],
) -> None:
    index: dict[str, int] = {}
    for i, t in enumerate(exp.tokens):
        index.setdefault(t, i)
    for kind in ("bos", "eos", "unk", "pad"):
        text = _token_text(tok_cfg.get(f"{kind}_token"))
        if text is not None:
            if text not in index:
                raise ConvertError(f"tokenizer_config.json: {kind}_token {text!r} is not in the vocabulary")
            exp.special[kind] = index[text]
            continue
        if kind in exp.special:
            continue
        ids = gen_cfg.get(f"{kind}_token_id", cfg.get(f"{kind}_token_id"))
        if isinstance(ids, list):
            ids = ids[0] if ids else None
        if isinstance(ids, int) and 0 <= ids < len(exp.tokens):
            exp.special[kind] = ids
    if exp.model == "gpt2" and tj is not None:  # byte-level BPE comes from tokenizer.json
        _bpe_add_special(exp, tj, tok_cfg)


def _bpe_add_special(exp: TokenizerExport, tj: dict[str, Any], tok_cfg: dict[str, Any]) -> None:
    """add_bos / add_eos as the tokenizer's post-processor does them (tokenizer_config.json's
    add_bos_token / add_eos_token, when given, win, as transformers applies them)."""
    from tokenizers import Tokenizer

    tk = Tokenizer.from_str(json.dumps(tj))
    plain = tk.encode("a", add_special_tokens=False).ids
    full = tk.encode("a", add_special_tokens=True).ids
    n_pre = next((k for k in range(len(full) - len(plain) + 1) if full[k : k + len(plain)] == plain), 0)
    exp.add_bos = n_pre > 0
    exp.add_eos = len(full) > n_pre + len(plain)
    if exp.add_bos:
        exp.special["bos"] = full[0]
    if exp.add_eos:
        exp.special["eos"] = full[-1]
    if tok_cfg.get("add_bos_token") is not None:
        exp.add_bos = bool(tok_cfg["add_bos_token"])
    if tok_cfg.get("add_eos_token") is not None:
        exp.add_eos = bool(tok_cfg["add_eos_token"])


def _chat_template(model_dir: Path, tok_cfg: dict[str, Any]) -> str | None:
    t = tok_cfg.get("chat_template")
    if isinstance(t, list):  # named templates: the default one
        t = next((x.get("template") for x in t if x.get("name") == "default"), None)
    if t:
        return t
    jinja = model_dir / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text(encoding="utf-8")
    js = read_json(model_dir / "chat_template.json", required=False)
    return js.get("chat_template") if js else None
