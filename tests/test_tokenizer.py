"""The C++ tokenizer (apls._core.Vocab) against independent implementations.

- SmolLM2 (byte-level BPE, pre-tokenizer `smollm`): HF `tokenizers` built from the GGUF's own
  vocabulary and merges, configured as SmolLM2's tokenizer.json is (Digits(individual_digits)
  then ByteLevel with the GPT-2 regex; ByteLevel decoder; the control tokens as special added
  tokens). Optionally also `transformers` loading the tokenizer from the GGUF file itself.
- `gpt-2`, `llama-bpe`, `qwen2`: small BPE vocabularies trained here with `tokenizers` using each
  pre-tokenizer's regex, written to GGUF files with the matching tokenizer.ggml.pre.
- SentencePiece BPE (tokenizer.ggml.model = llama): a model trained here with `sentencepiece`
  (byte fallback), converted to GGUF, compared with `sentencepiece` itself.

Test strings: Spec-Bench prompts (tests/data/spec_bench_prompts.jsonl) and generated text.
"""

from __future__ import annotations

import io
import json
import random
import time
import unicodedata
from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf")
tokenizers = pytest.importorskip("tokenizers")
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

import apls  # noqa: E402
from apls import _core  # noqa: E402

DATA = Path(__file__).parent / "data"

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

# ---------------------------------------------------------------------------------------------
# Test strings
# ---------------------------------------------------------------------------------------------


def spec_bench_prompts():
    with open(DATA / "spec_bench_prompts.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


CODE = [
    "def f(x):\n    return x**2 + 1  # square\n\n\nclass A(B):\n\tpass\n",
    "for (int i = 0; i < n; ++i) {\n    a[i] += b[i] * c;\n}\n",
    '{"key": [1, 2.5e-3, null, true], "nested": {"a": "b\\n"}}',
    '<html><body class="x">&nbsp;&lt;tag&gt;</body></html>',
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    "#include <vector>\nint main(){std::vector<int> v{1,2,3};return v[0];}",
    'x = [i for i in range(10) if i % 2 == 0]\nprint(f"{x!r:>10}")',
    "    if (a && b || !c) { return -1; } else if (d != e) { x <<= 2; }",
    'fn main() -> Result<(), Box<dyn Error>> { let s = "héllo"; Ok(()) }',
    "$ ls -la /usr/bin | grep -E '^-.*x' > out.txt 2>&1",
    "```python\nimport numpy as np\nnp.zeros((3, 4), dtype=np.float32)\n```",
    "a\r\nb\r\n\r\nc\n\r\n  d\t\te",
]

SPACES = [
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "\n\n",
    "\u00a0",
    "\u3000",
    "\u2009",
    "\u2028",
    "\x0b",
    "\x0c",
    "\x85",
    "\u200b",
    "\x1c",
    "\x1f",
    "\u180e",
    "\u202f",
    "\u2000",
]

POOLS = {
    "ascii_word": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "digits": "0123456789",
    "punct": "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "latin": "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßœšžŁłĞğİıſ",
    "greek_cyr": "αβγδεζηθλμπσωΩΔΣабвгдежзийклмнопрстуфхцчшщыэюяЖЩЯ",
    "cjk": "中文字符测试日本語漢字한국어텍스트ひらがなカタカナ々〆〇",
    "rtl": "שלום עולם مرحبا بالعالم עִבְרִית العَرَبِيَّة",
    "marks": "\u0301\u0300\u0308\u0327\u20dd\u0489\u0903\u093f\u0e31\u302a",
    "numbers": "٣٤٥۱۲۳१२३１２３²³¹½¾ⅫⅣ①⑩〇零",
    "symbols": "€£¥©®™°±×÷→←↑↓∑∏√∞≈≠≤≥♥♦♣♠★☆✓✗⌘⌥",
    "emoji": "😀😃😄😁🤔🤖👍🏽🇺🇸🇯🇵❤️✨🔥🎉",
    "zwj": "\u200d\u200c\ufe0f\ufe0e",
    "odd": "\ufffd\ufeff\u00ad\u2060\ue000\U000f0000\uffff\ufffe\x00\x01\x04\x06\x07\x13\x1b\x1d\x7f\x80\x9f",
    "quote": "'’\"`",
}
EMOJI_SEQS = ["👨‍👩‍👧‍👦", "🏳️‍🌈", "👩🏽‍💻", "1️⃣", "🧑‍🤝‍🧑", "❤️‍🔥", "🇪🇺", "👁️‍🗨️"]
CONTRACTIONS = [
    "'s",
    "'t",
    "'re",
    "'ve",
    "'m",
    "'ll",
    "'d",
    "'S",
    "'T",
    "'RE",
    "'Ve",
    "'LL",
    "'D",
    "'ſ",
    "'x",
    "'",
    "''s",
    "’s",
]


# Hand-picked boundaries of the regex alternatives.
EDGE_CASES = [
    "",
    " ",
    "  ",
    "\n",
    "a",
    "'s",
    " 's",
    "''",
    "1",
    " 1",
    "12345",
    "1234567",
    " \n ",
    "a  b",
    "a \n b",
    "it'ſtrange",
    "he'Sgood",
    "'LLama",
    "we'REady",
    "I'm'd've",
    "x'ſ'ſ",
    "don’t",
    "'s's",
    "a's",
    "A'S1",
    "a\x1c\x1cb",
    "x \x1c1",
    "\x1f \x1f",
    "a\u00a0\u00a0b",
    "a \u3000b",
    "\u2028\u2029x",
    "\u180e a",
    "a\r\n\r\n  b",
    "  \n\t x",
    "x\t\t\ty",
    "\n\n\n",
    " \r",
    "\r ",
    "x \n",
    "x  ",
    "x   1",
    " \t1",
    "(hello)",
    " (hello",
    "\thello",
    "\nhello",
    "!!!\n\n",
    " !!\r\nx",
    "..\n ",
    "$100",
    " $ 1",
    "½¾ Ⅻ",
    "x²³",
    "١٢٣٤",
    "ab12cd345ef6789",
    "3.14e-10",
    "0x1F",
    "a1b2",
    "١a",
    "\u0301a",
    "a\u0301\u0301 b",
    "ß ẞ ǅ",
    "ᾼ",
    "\U0001d400\U0001d7ce",
    "\U00010400x",
    "\ue000\U000f0000",
    "\ufffd\ufffd",
    "\x00\x00 a",
]


def _assigned(s):
    return all(unicodedata.category(c) != "Cn" or c in "\uffff\ufffe" for c in s)


def generated_strings(n, seed=1234):
    rng = random.Random(seed)
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "hello",
        "world",
        "tokenizer",
        "don",
        "it",
        "I",
        "we",
        "über",
        "naïve",
        "café",
        "résumé",
        "Straße",
        "日本",
        "東京",
        "привет",
        "Ελλάδα",
        "مرحبا",
        "שלום",
        "👍",
        "2024",
        "3.14159",
        "1,000,000",
        "v1.2.3",
        "0x1F",
        "__init__",
    ]
    out = []

    def rand_chars(k):
        pools = list(POOLS.values())
        return "".join(rng.choice(rng.choice(pools)) for _ in range(k))

    makers = [
        lambda: rng.choice(CODE),
        lambda: " ".join(rng.choice(words) for _ in range(rng.randint(1, 12))),
        lambda: "".join(rng.choice(words) + rng.choice(SPACES) for _ in range(rng.randint(1, 8))),
        lambda: "".join(rng.choice(SPACES) for _ in range(rng.randint(1, 10))),
        lambda: rng.choice(words) + "".join(rng.choice(SPACES) for _ in range(rng.randint(1, 6))) + rng.choice(words),
        lambda: (
            f"{rng.randint(0, 10 ** rng.randint(1, 12))}"
            + rng.choice(["", " ", ".", ",", "-", "/"])
            + f"{rng.randint(0, 9999):04d}"
        ),
        lambda: (
            f"{rng.randint(1900, 2100)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            f"T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
        ),
        lambda: (
            f"${rng.uniform(-1e6, 1e6):,.2f} and {rng.random():.10f} or {rng.randint(-999, 999)}e{rng.randint(-30, 30)}"
        ),
        lambda: rand_chars(rng.randint(1, 40)),
        lambda: "".join(rng.choice(POOLS[rng.choice(list(POOLS))]) for _ in range(rng.randint(1, 20))),
        lambda: (
            rng.choice(words) + rng.choice(CONTRACTIONS) + rng.choice(["", " ", "s", "ll", "t"]) + rng.choice(words)
        ),
        lambda: "".join(
            rng.choice(EMOJI_SEQS + list(POOLS["emoji"])) + rng.choice(["", " ", "\n"])
            for _ in range(rng.randint(1, 6))
        ),
        lambda: "".join(
            rng.choice(POOLS["ascii_word"] + "eao")
            + "".join(rng.choice(POOLS["marks"]) for _ in range(rng.randint(0, 4)))
            for _ in range(rng.randint(1, 10))
        ),
        lambda: rng.choice(POOLS["rtl"].split()) + " " + str(rng.randint(0, 999)) + " " + rng.choice(words) + "!",
        lambda: "".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(rng.randint(1, 15))),
        lambda: "".join(chr(rng.randint(0x1F300, 0x1FAFF)) for _ in range(rng.randint(1, 5))),
        lambda: "".join(
            chr(
                rng.choice(
                    [
                        rng.randint(0, 0x7F),
                        rng.randint(0x80, 0x7FF),
                        rng.randint(0x800, 0xD7FF),
                        rng.randint(0xE000, 0xFFFF),
                        rng.randint(0x10000, 0x10FFFF),
                    ]
                )
            )
            for _ in range(rng.randint(1, 20))
        ),
    ]
    while len(out) < n:
        s = rng.choice(makers)()
        if s and _assigned(s):
            out.append(s)
    return out


def prompt_slices(prompts, n, seed=99):
    """Random substrings of the prompts: every kind of piece boundary at the edges."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        p = rng.choice(prompts)
        a = rng.randint(0, max(0, len(p) - 1))
        out.append(p[a : a + rng.randint(1, 200)])
    return out


@pytest.fixture(scope="module")
def corpus():
    prompts = spec_bench_prompts()
    strings = prompts + prompt_slices(prompts, 600) + generated_strings(1600)
    strings += EDGE_CASES
    return strings


# ---------------------------------------------------------------------------------------------
# GGUF helpers
# ---------------------------------------------------------------------------------------------


def _contents(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def read_tokenizer_meta(path):
    r = gguf.GGUFReader(path)
    return {k: _contents(r, k) for k in r.fields if k.startswith("tokenizer.")}


def write_vocab_gguf(path, model, tokens, types, *, pre=None, merges=None, scores=None, extra=None):
    """A GGUF file with only tokenizer metadata (no tensors)."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    if scores is not None:
        w.add_token_scores(scores)
    if merges is not None:
        w.add_token_merges(merges)
    for key, (kind, value) in (extra or {}).items():
        getattr(w, {"u32": "add_uint32", "bool": "add_bool", "str": "add_string"}[kind])(key, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


def compare(vocab, ref_encode, strings, **kw):
    """Tokenize every string with both; return the mismatches."""
    bad = []
    for s in strings:
        ours = vocab.tokenize(s, add_special=False, **kw)
        ref = ref_encode(s)
        if ours != ref:
            bad.append((s, ours, ref))
    return bad


def report(bad, vocab, limit=5):
    lines = []
    for s, ours, ref in bad[:limit]:
        piece = lambda ids: [vocab.token_to_piece(i, True) for i in ids]  # noqa: E731
        lines.append(f"{s!r}\n  ours: {ours} {piece(ours)}\n  ref : {ref} {piece(ref)}")
    return f"{len(bad)} mismatches:\n" + "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# SmolLM2 against HF tokenizers built from the same GGUF
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smol(smollm2_path):
    return _core.Vocab.from_file(smollm2_path)


@pytest.fixture(scope="module")
def smol_meta(smollm2_path):
    return read_tokenizer_meta(smollm2_path)


def hf_from_gguf_meta(meta, pre_tokenizer, ignore_merges=False):
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta["tokenizer.ggml.token_type"]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens)
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    unk = meta.get("tokenizer.ggml.unknown_token_id")
    tok = Tokenizer(
        models.BPE(vocab, merges, ignore_merges=ignore_merges, unk_token=None if unk is None else tokens[unk])
    )
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])
    return tok


def smollm_pre():
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )


@pytest.fixture(scope="module")
def smol_ref(smol_meta):
    return hf_from_gguf_meta(smol_meta, smollm_pre())


def test_smollm2_metadata(smol):
    assert smol.model_name == "gpt2" and smol.pre == "smollm"
    assert smol.n_tokens == 49152
    assert (smol.bos, smol.eos) == (1, 2)
    assert smol.add_bos is False  # tokenizer.ggml.add_bos_token = false in the file
    assert smol.is_eog(2) and smol.is_eog(0) and not smol.is_eog(1) and not smol.is_eog(100)
    assert smol.eot == 2  # <|im_end|>
    assert smol.tokenize("hi", add_special=True) == smol.tokenize("hi", add_special=False)


def test_smollm2_vs_hf_tokenizers(smol, smol_ref, corpus):
    smol_ref.encode_special_tokens = True  # control-token text is plain text
    bad = compare(smol, lambda s: smol_ref.encode(s, add_special_tokens=False).ids, corpus, parse_special=False)
    print(f"smollm2 plain: {len(corpus)} strings compared, {len(bad)} mismatches")
    assert not bad, report(bad, smol)


def missing_bytes(vocab):
    """Bytes without a token in the vocabulary: tokenized as <unk>, which prints as nothing."""
    return {b for b in range(256) if vocab.tokenize(bytes([b]), add_special=False) == [vocab.unk]}


def test_smollm2_round_trip(smol, smol_ref, corpus):
    missing = missing_bytes(smol)
    n_exact = 0
    for s in corpus:
        ids = smol.tokenize(s, add_special=False, parse_special=False)
        b = s.encode("utf-8")
        assert smol.detokenize(ids) == bytes(c for c in b if c not in missing), s
        if not any(c in missing for c in b):
            n_exact += 1
            assert smol_ref.decode(ids, skip_special_tokens=False) == s
    assert n_exact > 0.9 * len(corpus)


def chat_strings(prompts):
    rng = random.Random(7)
    out = []
    for p in prompts[:200]:
        role = rng.choice(["user", "assistant", "system"])
        out.append(f"<|im_start|>{role}\n{p[:300]}<|im_end|>\n<|im_start|>assistant\n")
    out += [
        "<|im_start|><|im_end|>",
        "<|im_start|",
        "<|im_start|>>",
        "<<|im_end|>",
        "<|endoftext|>x",
        "a<|im_start|>b<|im_end|>c",
        "<|im_start|>system<|im_end|><|im_start|>",
        "<filename>a.py<file_sep>",
        "<reponame><repo_name>",
        "<jupyter_start><jupyter_text>",
        "text <|im_end|> 123<|im_end|>",
    ]
    return out


def test_smollm2_parse_special(smol, smol_ref):
    strings = chat_strings(spec_bench_prompts())
    smol_ref.encode_special_tokens = False
    bad = compare(smol, lambda s: smol_ref.encode(s, add_special_tokens=False).ids, strings, parse_special=True)
    assert not bad, report(bad, smol)
    smol_ref.encode_special_tokens = True
    bad = compare(smol, lambda s: smol_ref.encode(s, add_special_tokens=False).ids, strings, parse_special=False)
    assert not bad, report(bad, smol)

    ids = smol.tokenize("<|im_start|>user\nhi<|im_end|>", add_special=True, parse_special=True)
    assert ids[0] == 1 and ids[-1] == 2
    plain = smol.tokenize("<|im_start|>user", add_special=True, parse_special=False)
    assert 1 not in plain and len(plain) > 2
    # Control tokens print only on request; detokenize inverts either way.
    assert smol.token_to_piece(1) == b"" and smol.token_to_piece(1, special=True) == b"<|im_start|>"
    s = "<|im_start|>user\nhi<|im_end|>"
    assert smol.detokenize(smol.tokenize(s, True, True), special=True) == s.encode()
    assert smol.detokenize(smol.tokenize(s, True, True), special=False) == b"user\nhi"


def test_smollm2_bos_as_file_says(tmp_path, smol_meta):
    meta = smol_meta
    for add_bos in (True, False):
        p = write_vocab_gguf(
            tmp_path / f"bos{add_bos}.gguf",
            "gpt2",
            meta["tokenizer.ggml.tokens"],
            meta["tokenizer.ggml.token_type"],
            pre="smollm",
            merges=meta["tokenizer.ggml.merges"],
            extra={
                "tokenizer.ggml.bos_token_id": ("u32", 1),
                "tokenizer.ggml.eos_token_id": ("u32", 2),
                "tokenizer.ggml.add_bos_token": ("bool", add_bos),
            },
        )
        v = _core.Vocab.from_file(p)
        assert v.add_bos is add_bos
        ids = v.tokenize("Hello", add_special=True)
        assert (ids[0] == 1) is add_bos
        assert v.tokenize("Hello", add_special=False)[0] != 1


def test_smollm2_invalid_utf8_bytes(smol):
    rng = random.Random(5)
    samples = [
        b"\xff",
        b"\xc0\xaf",
        b"abc\x80def",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xe2\x82",
        b"12\xff34 \xfe x",
        "é".encode()[:1] + b" ok",
    ]
    samples += [bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 64))) for _ in range(300)]
    # Bytes without a token in this vocabulary (0x04, 0xFF, ...) become <unk>, which prints as
    # nothing; every other byte comes back.
    missing = missing_bytes(smol)
    assert 0xFF in missing and ord("a") not in missing and len(missing) < 32
    for b in samples:
        ids = smol.tokenize(b, add_special=False)
        assert smol.detokenize(ids) == bytes(c for c in b if c not in missing), b
        assert ids.count(smol.unk) == sum(c in missing for c in b)


def test_smollm2_errors(smol):
    n = smol.n_tokens
    with pytest.raises(apls.InvalidArgumentError, match=rf"token id {n} out of range \[0, {n}\)"):
        smol.detokenize([5, n])
    with pytest.raises(apls.InvalidArgumentError, match=r"token id -1 out of range"):
        smol.detokenize([-1])
    with pytest.raises(apls.InvalidArgumentError):
        smol.token_to_piece(10**12)
    assert not smol.is_eog(-5) and not smol.is_eog(n)


def test_smollm2_speed(smol):
    rng = random.Random(3)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 12))) for _ in range(10000)]
    text = " ".join(words) + " " + " ".join(spec_bench_prompts()[:20])
    t0 = time.perf_counter()
    ids = smol.tokenize(text, add_special=False)
    dt = time.perf_counter() - t0
    print(
        f"tokenized {len(text)} chars ({len(words)} random words + prompts) into {len(ids)} tokens in {dt * 1e3:.1f} ms"
    )
    assert dt < 1.0
    assert smol.detokenize(ids) == text.encode()


def test_utf8_stream_on_split_emoji(smol):
    s = "ok 😀👨‍👩‍👧 中文 é🇯🇵!"
    ids = smol.tokenize(s, add_special=False)
    pieces = [smol.token_to_piece(i) for i in ids]
    assert any(p and not _valid_utf8(p) for p in pieces), "expected tokens that split a character"
    st = _core.Utf8Stream()
    outs = [st.push(p) for p in pieces]
    assert all("\ufffd" not in o for o in outs)
    assert "".join(outs) + st.flush() == s


def _valid_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_utf8_stream_matches_python_decoder():
    rng = random.Random(11)
    pool = ["a", "é", "中", "😀", "\U0010ffff"]
    for _ in range(500):
        if rng.random() < 0.5:
            data = "".join(rng.choice(pool) for _ in range(rng.randint(0, 10))).encode()
        else:
            data = bytes(
                rng.choice([rng.randint(0, 255), 0x80, 0xBF, 0xE0, 0xED, 0xF0, 0xF4, 0xC2, 0xA0, 0x90])
                for _ in range(rng.randint(0, 16))
            )
        st = _core.Utf8Stream()
        out, i = "", 0
        while i < len(data):
            k = rng.randint(1, 4)
            out += st.push(data[i : i + k])
            i += k
        out += st.flush()
        assert out == data.decode("utf-8", "replace"), data


# ---------------------------------------------------------------------------------------------
# transformers loading the tokenizer from the GGUF file (optional reference)
# ---------------------------------------------------------------------------------------------


def test_smollm2_vs_transformers_gguf(smollm2_path, smol, corpus):
    """transformers building its tokenizer from the GGUF file itself (needs torch for its reader).

    Its GGUF conversion knows no `smollm` pre-tokenizer (it falls back to plain ByteLevel, without
    SmolLM2's individual-digit split) and sets no unknown token (bytes missing from the vocabulary
    are dropped, not <unk>), so only strings where neither matters are compared; the
    `tokenizers`-based test above covers the rest against the model's real configuration.
    """
    transformers = pytest.importorskip("transformers")
    p = Path(smollm2_path)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    except Exception as e:  # noqa: BLE001 - version-dependent GGUF support, optional torch
        pytest.skip(f"transformers cannot load this GGUF tokenizer: {e}")
    missing = missing_bytes(smol)
    strings = [
        s
        for s in corpus
        if not any(unicodedata.category(c).startswith("N") for c in s) and not any(b in missing for b in s.encode())
    ]
    assert len(strings) > 1000
    bad = compare(
        smol, lambda s: tok.encode(s, add_special_tokens=False, split_special_tokens=True), strings, parse_special=False
    )
    print(f"transformers: {len(strings)} strings compared, {len(bad)} mismatches")
    assert not bad, report(bad, smol)


# ---------------------------------------------------------------------------------------------
# Other pre-tokenizers: BPE vocabularies trained here
# ---------------------------------------------------------------------------------------------

PRE_CONFIGS = {
    "gpt-2": (lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), False),
    "default": (lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), False),
    "llama-bpe": (
        lambda: pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        ),
        True,
    ),
    "qwen2": (
        lambda: pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        ),
        False,
    ),
}


@pytest.mark.parametrize("pre", list(PRE_CONFIGS) + ["smollm"])
def test_pretokenizer_pieces(pre, corpus):
    """The pieces themselves (BPE can hide a wrong split when no merge crosses it)."""
    ref = smollm_pre() if pre == "smollm" else PRE_CONFIGS[pre][0]()
    bad = []
    for s in corpus:
        want = [s[a:b].encode() for _, (a, b) in ref.pre_tokenize_str(s)]
        got = _core._pretokenize(pre, s)
        if got != want:
            bad.append((s, got, want))
    print(f"{pre} pieces: {len(corpus)} strings compared, {len(bad)} mismatches")
    assert not bad, f"{len(bad)} mismatches, first: {bad[:3]}"


# Code points whose class changed after Unicode 14.0 (Python 3.11's unicodedata): letters of 15.0
# (CJK Extension H), 15.1 (CJK Extension I) and 16.0 (Cyrillic Tje, Garay), Garay digits (16.0),
# and letters of 17.0 (CJK Extension J, Sidetic), unassigned for `tokenizers` 0.23 (Unicode 16.0).
NEWER_UNICODE = [
    "a\U00031350b \U00031894\u80d6",
    "x \U0002ebf0\U0002ebf1 y",
    "\u1c89\u1c8a Tje",
    "ab\U00010d50\U00010d51 cd",
    "7\U00010d40\U00010d41 8",
    "q\U000323b0r \U00010940s",
    "\ue8be\u3276\ue0c0\ufb93\u32fd\U00031894\u80d6\ue211\u5a15",
]


@pytest.mark.parametrize("pre", list(PRE_CONFIGS) + ["smollm"])
def test_pretokenizer_follows_the_references_unicode_version(pre):
    """The class tables are Unicode 16.0, as in the reference tokenizers, whichever Python runs
    (on 3.12 the corpus above draws CJK Extension H letters, which 14.0 tables split apart)."""
    ref = smollm_pre() if pre == "smollm" else PRE_CONFIGS[pre][0]()
    for s in NEWER_UNICODE:
        assert _core._pretokenize(pre, s) == [s[a:b].encode() for _, (a, b) in ref.pre_tokenize_str(s)], s


@pytest.mark.parametrize("pre", list(PRE_CONFIGS) + ["smollm"])
def test_pretokenizer_covers_any_bytes(pre):
    """Invalid UTF-8 never crashes and every byte lands in exactly one non-empty piece."""
    rng = random.Random(21)
    for _ in range(500):
        b = bytes(
            rng.choice([rng.randint(0, 255), 0x20, 0x0A, 0x27, 0x31, 0x61, 0xE2, 0x80])
            for _ in range(rng.randint(0, 40))
        )
        pieces = _core._pretokenize(pre, b)
        assert b"".join(pieces) == b and all(pieces)


@pytest.mark.parametrize("pre", list(PRE_CONFIGS))
def test_trained_bpe_pretokenizers(tmp_path, pre, corpus):
    make_pre, ignore_merges = PRE_CONFIGS[pre]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = make_pre()
    trainer = trainers.BpeTrainer(
        vocab_size=3000,
        show_progress=False,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(spec_bench_prompts() + generated_strings(300, seed=77), trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = model["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    types = [3 if t == "<|endoftext|>" else 1 for t in tokens]
    path = write_vocab_gguf(
        tmp_path / f"{pre}.gguf",
        "gpt2",
        tokens,
        types,
        pre=pre,
        merges=merges,
        extra={"tokenizer.ggml.eos_token_id": ("u32", vocab["<|endoftext|>"])},
    )
    ours = _core.Vocab.from_file(path)
    assert ours.pre == pre and ours.eos == vocab["<|endoftext|>"] and ours.is_eog(ours.eos)

    ref = Tokenizer(models.BPE(vocab, [tuple(m.split(" ", 1)) for m in merges], ignore_merges=ignore_merges))
    ref.pre_tokenizer = make_pre()
    ref.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    ref.encode_special_tokens = True
    bad = compare(ours, lambda s: ref.encode(s, add_special_tokens=False).ids, corpus, parse_special=False)
    print(f"{pre}: {len(corpus)} strings compared, {len(bad)} mismatches")
    assert not bad, report(bad, ours)
    for s in corpus:
        assert ours.detokenize(ours.tokenize(s, False, False)) == s.encode()


# ---------------------------------------------------------------------------------------------
# SentencePiece BPE
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spm_pair(tmp_path_factory):
    spm = pytest.importorskip("sentencepiece")
    lines = []
    for p in spec_bench_prompts():
        lines += [ln for ln in p.split("\n") if ln.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="bpe",
        vocab_size=1000,
        byte_fallback=True,
        character_coverage=0.995,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        allow_whitespace_only_pieces=True,
        split_digits=True,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(
            2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 5 if sp.is_unused(i) else 1
        )
    path = write_vocab_gguf(
        tmp_path_factory.mktemp("spm") / "spm.gguf",
        "llama",
        tokens,
        types,
        pre="default",
        scores=scores,
        extra={
            "tokenizer.ggml.bos_token_id": ("u32", sp.bos_id()),
            "tokenizer.ggml.eos_token_id": ("u32", sp.eos_id()),
            "tokenizer.ggml.unknown_token_id": ("u32", sp.unk_id()),
        },
    )
    return sp, _core.Vocab.from_file(path)


def test_spm_vs_sentencepiece(spm_pair, corpus):
    sp, ours = spm_pair
    assert ours.model_name == "llama" and ours.add_bos and ours.add_space_prefix
    bad = compare(ours, lambda s: sp.encode(s), corpus, parse_special=False)
    print(f"spm: {len(corpus)} strings compared, {len(bad)} mismatches")
    assert not bad, report(bad, ours)
    for s in corpus:
        ids = ours.tokenize(s, add_special=False)
        assert ours.detokenize(ids) == s.encode(), s
        assert sp.decode(ids) == s


def test_spm_special_and_bytes(spm_pair):
    sp, ours = spm_pair
    ids = ours.tokenize("Hello world", add_special=True)
    assert ids[0] == sp.bos_id() and ids[1:] == sp.encode("Hello world")
    assert ours.tokenize("<s>hi", add_special=False, parse_special=True)[0] == sp.bos_id()
    assert sp.bos_id() not in ours.tokenize("<s>hi", add_special=False, parse_special=False)
    assert ours.detokenize(ours.tokenize("<s>hi", True, True), special=True) == b"<s><s>hi"
    # Invalid UTF-8 goes through byte fallback and comes back unchanged.
    for b in [b"\xff\xfe", b"a\x80b", b"\xe2\x82 x", b"\xf0\x9f\x98"]:
        assert ours.detokenize(ours.tokenize(b, add_special=False)) == b


# ---------------------------------------------------------------------------------------------
# Malformed or unsupported tokenizer metadata
# ---------------------------------------------------------------------------------------------


def test_load_errors(tmp_path):
    toks = ["a", "b", "ab"]
    p = write_vocab_gguf(tmp_path / "m.gguf", "bert", toks, [1, 1, 1])
    with pytest.raises(apls.UnsupportedError, match="tokenizer.ggml.model 'bert'"):
        _core.Vocab.from_file(p)
    p = write_vocab_gguf(tmp_path / "p.gguf", "gpt2", toks, [1, 1, 1], pre="no-such-pre", merges=["a b"])
    with pytest.raises(apls.UnsupportedError, match="tokenizer.ggml.pre 'no-such-pre'"):
        _core.Vocab.from_file(p)
    p = write_vocab_gguf(tmp_path / "t.gguf", "gpt2", toks, [1, 1], pre="gpt-2", merges=["a b"])
    with pytest.raises(apls.FormatError, match="tokenizer.ggml.token_type has 2 entries"):
        _core.Vocab.from_file(p)
    p = write_vocab_gguf(tmp_path / "s.gguf", "llama", toks, [1, 1, 1], scores=[0.0, 1.0])
    with pytest.raises(apls.FormatError, match="tokenizer.ggml.scores"):
        _core.Vocab.from_file(p)
    p = write_vocab_gguf(tmp_path / "g.gguf", "gpt2", toks, [1, 1, 1], pre="gpt-2", merges=["a c"])
    with pytest.raises(apls.FormatError, match="tokenizer.ggml.merges"):
        _core.Vocab.from_file(p)
    p = write_vocab_gguf(tmp_path / "n.gguf", "gpt2", toks, [1, 1, 1], pre="gpt-2")
    with pytest.raises(apls.FormatError, match="missing tokenizer.ggml.merges"):
        _core.Vocab.from_file(p)
    p = write_vocab_gguf(
        tmp_path / "b.gguf",
        "gpt2",
        toks,
        [1, 1, 1],
        pre="gpt-2",
        merges=["a b"],
        extra={"tokenizer.ggml.bos_token_id": ("u32", 3)},
    )
    with pytest.raises(apls.FormatError, match="bos_token_id = 3 out of range"):
        _core.Vocab.from_file(p)
    p = write_vocab_gguf(tmp_path / "y.gguf", "gpt2", toks, [1, 9, 1], pre="gpt-2", merges=["a b"])
    with pytest.raises(apls.FormatError, match=r"token_type\[1\] = 9"):
        _core.Vocab.from_file(p)
