"""Tokenizers through `apls convert`: the engine's tokenizer, loaded from the converted file,
equals the Hugging Face tokenizer (transformers.AutoTokenizer on the checkpoint directory) on
a text corpus: Spec-Bench prompts, random slices of them, and generated strings of every
script, digit, space and symbol class (the corpus of test_tokenizer.py).

Byte-level BPE tokenizers are trained here with `tokenizers`, one per pre-tokenizer the
converter identifies (gpt-2, smollm, llama-bpe, qwen2); the SentencePiece BPE one with
`sentencepiece`. The models are NumPy-written (no torch)."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

pytest.importorskip("gguf")
pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from hf_tiny import (  # noqa: E402
    llama_config,
    write_bpe_tokenizer,
    write_numpy_checkpoint,
    write_spm_tokenizer,
)
from test_tokenizer import (  # noqa: E402
    EDGE_CASES,
    generated_strings,
    prompt_slices,
    spec_bench_prompts,
)

from apls import _core  # noqa: E402
from apls.convert import ConvertError, convert  # noqa: E402

N_VOCAB = 640
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"


@pytest.fixture(scope="module")
def corpus():
    prompts = spec_bench_prompts()
    return (
        prompts
        + prompt_slices(prompts, 300)
        + generated_strings(600)
        + EDGE_CASES
        + ["<|im_start|>user\nhi <think>ok</think><|im_end|>", "a<|endoftext|>b", " <think> x"]
    )


def converted(d):
    write_numpy_checkpoint(d, llama_config(vocab_size=N_VOCAB))
    out = convert(str(d), str(d / "m.gguf"), "f16", progress=False)
    return _core.Vocab.from_file(str(out))


def hf_tokenizer(d):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(d))


def mismatches(vocab, encode, corpus):
    bad = []
    for s in corpus:
        ours, ref = vocab.tokenize(s, add_special=True, parse_special=True), encode(s)
        if ours != ref:
            bad.append((s, ours, ref))
    return bad


@pytest.mark.parametrize("pre", ["gpt-2", "smollm", "llama-bpe", "qwen2"])
def test_bpe_equals_hugging_face(tmp_path, corpus, pre):
    bos = pre == "llama-bpe"  # a post-processor that prepends BOS, as Llama 3's
    write_bpe_tokenizer(tmp_path, pre, vocab_size=500, bos=bos, chat_template=TEMPLATE)
    ours, hf = converted(tmp_path), hf_tokenizer(tmp_path)
    assert ours.model_name == "gpt2" and ours.pre == pre and ours.n_tokens == N_VOCAB
    assert ours.add_bos == bos and (ours.bos == hf.bos_token_id if bos else True)
    assert ours.eos == hf.eos_token_id
    bad = mismatches(ours, lambda s: hf(s)["input_ids"], corpus)
    assert not bad, f"{len(bad)} of {len(corpus)} differ, e.g. {bad[:3]}"
    for s in corpus[:200]:
        assert ours.detokenize(ours.tokenize(s, add_special=False, parse_special=True), special=True) == s.encode()


def test_bpe_metadata(tmp_path):
    write_bpe_tokenizer(tmp_path, "smollm", vocab_size=500, chat_template=TEMPLATE)
    converted(tmp_path)
    from gguf import GGUFReader

    meta = {
        k: f.contents() for k, f in GGUFReader(str(tmp_path / "m.gguf")).fields.items() if k.startswith("tokenizer.")
    }
    toks, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    assert types[toks.index("<|im_end|>")] == 3 and types[toks.index("<think>")] == 4  # control, user-defined
    assert toks[-1] == f"[PAD{N_VOCAB - 1}]" and types[-1] == 5  # padding: unused
    assert meta["tokenizer.chat_template"] == TEMPLATE
    assert meta["tokenizer.ggml.eos_token_id"] == toks.index("<|im_end|>")
    assert meta["tokenizer.ggml.padding_token_id"] == toks.index("<|endoftext|>")


def test_spm_equals_sentencepiece_and_hugging_face(tmp_path, corpus):
    spm = pytest.importorskip("sentencepiece")
    write_spm_tokenizer(tmp_path, vocab_size=600)
    ours = converted(tmp_path)
    assert ours.model_name == "llama" and ours.add_bos and ours.add_space_prefix
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    assert (ours.bos, ours.eos, ours.unk) == (sp.bos_id(), sp.eos_id(), sp.unk_id())
    text = [s for s in corpus if "<" not in s]  # sentencepiece itself does not split special tokens
    bad = mismatches(ours, lambda s: [sp.bos_id()] + sp.encode(s), text)
    assert not bad, f"{len(bad)} of {len(text)} differ, e.g. {bad[:3]}"
    try:  # transformers' LlamaTokenizer reads tokenizer.model through protobuf
        import google.protobuf  # noqa: F401
    except ImportError:
        return
    # transformers 5 builds this tokenizer with tokenizers' Metaspace pre-tokenizer, which
    # adds no "▁" prefix to text that already starts with a space, where sentencepiece (and
    # llama.cpp, and the engine) add one; real Llama 2 tokenizer.json files (a Prepend
    # normalizer) follow sentencepiece. Those strings are compared with sentencepiece above.
    hf = hf_tokenizer(tmp_path)
    text = [s for s in text if not s.startswith(" ")]
    bad = mismatches(ours, lambda s: hf(s)["input_ids"], text)
    assert not bad, f"{len(bad)} of {len(text)} differ from transformers, e.g. {bad[:3]}"


def _edit_tokenizer_json(d, fn):
    p = d / "tokenizer.json"
    tj = json.loads(p.read_text())
    fn(tj)
    p.write_text(json.dumps(tj))


def test_unknown_pretokenizer_is_named(tmp_path):
    write_bpe_tokenizer(tmp_path, "qwen2", vocab_size=300)

    def other_regex(tj):
        tj["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{N}{1,2}|\p{L}+|\s+"

    _edit_tokenizer_json(tmp_path, other_regex)
    with pytest.raises(
        ConvertError,
        match=r"unknown pre-tokenizer in tokenizer.json: Split\(Regex "
        r"'\\\\p\{N\}\{1,2\}\|\\\\p\{L\}\+\|\\\\s\+', Isolated\) \+ ByteLevel",
    ):
        converted(tmp_path)

    def metaspace(tj):
        tj["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}

    _edit_tokenizer_json(tmp_path, metaspace)
    with pytest.raises(ConvertError, match="BPE tokenizer that is not byte-level BPE, and there is no tokenizer.model"):
        converted(tmp_path)


def test_nfc_normalizer_warns(tmp_path, caplog):
    write_bpe_tokenizer(tmp_path, "qwen2", vocab_size=300)
    _edit_tokenizer_json(tmp_path, lambda tj: tj.update(normalizer={"type": "NFC"}))
    with caplog.at_level(logging.WARNING, logger="apls.convert"):
        converted(tmp_path)
    assert "NFC normalizer is not applied by the engine" in caplog.text
    _edit_tokenizer_json(tmp_path, lambda tj: tj.update(normalizer={"type": "Lowercase"}))
    with pytest.raises(ConvertError, match=r"normalizer Lowercase\(\) is not supported"):
        converted(tmp_path)


def test_special_token_not_in_vocabulary(tmp_path):
    write_bpe_tokenizer(tmp_path, "gpt-2", vocab_size=300)
    p = tmp_path / "tokenizer_config.json"
    cfg = json.loads(p.read_text())
    cfg["eos_token"] = "<|nowhere|>"
    p.write_text(json.dumps(cfg))
    with pytest.raises(ConvertError, match=r"eos_token '<\|nowhere\|>' is not in the vocabulary"):
        converted(tmp_path)
    shutil.rmtree(tmp_path)
