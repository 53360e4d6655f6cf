"""The C++ GGUF reader (apls._core.gguf_read / gguf_tensor_data) against gguf-py.

Files are written with gguf.GGUFWriter and read back both by APLS and by gguf.GGUFReader; the
malformed corpus comes from tests/gguf_corpus.py.
"""

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
import apls  # noqa: E402
from apls import _core  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import gguf_corpus  # noqa: E402

GT = gguf.GGUFValueType
QT = gguf.GGMLQuantizationType

# key -> (writer method, value, type name APLS must report)
SCALARS = {
    "t.u8": ("add_uint8", 250, "UINT8"),
    "t.i8": ("add_int8", -128, "INT8"),
    "t.u16": ("add_uint16", 65535, "UINT16"),
    "t.i16": ("add_int16", -32768, "INT16"),
    "t.u32": ("add_uint32", 4294967295, "UINT32"),
    "t.i32": ("add_int32", -2147483648, "INT32"),
    "t.f32": ("add_float32", 3.140625, "FLOAT32"),
    "t.f32_inexact": ("add_float32", 0.1, "FLOAT32"),
    "t.u64": ("add_uint64", 2**64 - 1, "UINT64"),
    "t.i64": ("add_int64", -(2**63), "INT64"),
    "t.f64": ("add_float64", -1.2345678901234567e-300, "FLOAT64"),
    "t.bool_true": ("add_bool", True, "BOOL"),
    "t.bool_false": ("add_bool", False, "BOOL"),
    "t.str": ("add_string", "héllo, wörld ✓", "STRING"),
}
# key -> (value, sub_type or None, type name)
ARRAYS = {
    "a.u8": ([0, 1, 255], GT.UINT8, "ARRAY[UINT8]"),
    "a.i8": ([-1, 2], GT.INT8, "ARRAY[INT8]"),
    "a.u16": ([7, 65535], GT.UINT16, "ARRAY[UINT16]"),
    "a.i16": ([-7], GT.INT16, "ARRAY[INT16]"),
    "a.u32": ([1, 2, 3], GT.UINT32, "ARRAY[UINT32]"),
    "a.i32": ([-1, 0, 1], None, "ARRAY[INT32]"),
    "a.f32": ([0.5, -2.0, 0.1], None, "ARRAY[FLOAT32]"),
    "a.u64": ([2**63], GT.UINT64, "ARRAY[UINT64]"),
    "a.i64": ([-(2**62)], GT.INT64, "ARRAY[INT64]"),
    "a.f64": ([1e-310, 2.5], GT.FLOAT64, "ARRAY[FLOAT64]"),
    "a.bool": ([True, False, True], None, "ARRAY[BOOL]"),
    "a.str": (["a", "", "ünï", "tok en"], None, "ARRAY[STRING]"),
    "a.nested": ([[1, 2, 3], [4], [-5, 6]], None, "ARRAY[ARRAY]"),
    "a.nested_str": ([["x", "y"], ["z"]], None, "ARRAY[ARRAY]"),
    "a.nested3": ([[[1], [2, 3]], [[4]]], None, "ARRAY[ARRAY]"),
}


def f32(x):
    return float(np.float32(x))


def expected_value(key):
    """What APLS must return for `key`: the written value (FLOAT32 rounded to float32)."""
    if key in SCALARS:
        _, v, t = SCALARS[key]
        return f32(v) if t == "FLOAT32" else v
    v, _, t = ARRAYS[key]
    return [f32(x) for x in v] if t == "ARRAY[FLOAT32]" else v


def make_tensors():
    rng = np.random.default_rng(1234)
    q8 = rng.integers(0, 256, size=(3, 2 * 34), dtype=np.uint8)  # 3 rows of 64 Q8_0 elements
    q41 = rng.integers(0, 256, size=(2, 20), dtype=np.uint8)  # 2 rows of 32 Q4_1 elements
    return {
        "tok_embd.weight": (rng.standard_normal((5, 8)).astype(np.float32), None, "F32", [8, 5]),
        "norm.weight": (rng.standard_normal(7).astype(np.float16), None, "F16", [7]),
        "blk.0.attn_q.weight": (q8, QT.Q8_0, "Q8_0", [64, 3]),
        "blk.0.ffn.weight": (q41, QT.Q4_1, "Q4_1", [32, 2]),
        "pos.idx": (np.arange(-3, 3, dtype=np.int32).reshape(2, 1, 3), None, "I32", [3, 1, 2]),
        "cube.weight": (rng.standard_normal((2, 3, 4, 5)).astype(np.float32), None, "F32", [5, 4, 3, 2]),
    }


def write_model(path, alignment=None):
    w = gguf.GGUFWriter(str(path), arch="testarch")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, (method, value, _) in SCALARS.items():
        getattr(w, method)(key, value)
    for key, (value, sub, _) in ARRAYS.items():
        w.add_key_value(key, value, GT.ARRAY, sub_type=sub)
    for name, (arr, raw, _, _) in make_tensors().items():
        w.add_tensor(name, arr, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


def reader_type_name(field):
    t = field.types
    return f"ARRAY[{t[1].name}]" if t[0] == GT.ARRAY else t[0].name


def flatten(v):
    if isinstance(v, list):
        return [y for x in v for y in flatten(x)]
    return [v]


def compare_with_reader(path, info):
    """APLS's view of `path` must equal gguf.GGUFReader's, field by field and byte by byte."""
    r = gguf.GGUFReader(path)
    assert info["version"] == r.fields["GGUF.version"].contents()
    assert info["alignment"] == r.alignment
    assert info["data_offset"] == r.data_offset
    fields = {k: f for k, f in r.fields.items() if not k.startswith("GGUF.")}
    assert list(info["metadata"]) == list(fields)  # same keys, same order
    for key, field in fields.items():
        assert info["metadata_types"][key] == reader_type_name(field), key
        ours = info["metadata"][key]
        theirs = field.contents()
        if field.types[0] == GT.ARRAY and len(field.types) > 2:
            ours = flatten(ours)  # gguf-py flattens nested arrays
        assert ours == theirs, key
    assert [t["name"] for t in info["tensors"]] == [t.name for t in r.tensors]
    for ours, theirs in zip(info["tensors"], r.tensors):
        assert ours["shape"] == [int(d) for d in theirs.shape], ours["name"]
        assert ours["type"] == theirs.tensor_type.name
        assert ours["offset"] == theirs.data_offset - r.data_offset
        assert ours["n_bytes"] == theirs.n_bytes
        assert ours["offset"] % info["alignment"] == 0
        data = _core.gguf_tensor_data(path, ours["name"])
        assert data.dtype == np.uint8 and data.shape == (theirs.n_bytes,)
        assert data.tobytes() == theirs.data.tobytes(), ours["name"]
    return r


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("gguf") / "every.gguf")


def test_metadata_matches_what_was_written(model_file):
    info = _core.gguf_read(model_file)
    assert info["version"] == 3 and info["alignment"] == 32
    meta, types = info["metadata"], info["metadata_types"]
    assert meta["general.architecture"] == "testarch" and types["general.architecture"] == "STRING"
    for key in list(SCALARS) + list(ARRAYS):
        got, want = meta[key], expected_value(key)
        assert got == want and type(got) is type(want), key
        assert types[key] == (SCALARS.get(key) or ARRAYS[key])[-1], key
    assert type(meta["t.bool_true"]) is bool and type(meta["a.bool"][0]) is bool


def test_tensors_match_what_was_written(model_file):
    info = _core.gguf_read(model_file)
    written = make_tensors()
    assert [t["name"] for t in info["tensors"]] == list(written)
    for t in info["tensors"]:
        arr, _, tname, ne = written[t["name"]]
        assert t["type"] == tname and t["shape"] == ne and t["n_bytes"] == arr.nbytes
        assert _core.gguf_tensor_data(model_file, t["name"]).tobytes() == arr.tobytes()
    # The data section starts aligned and tensors follow each other, padded to the alignment.
    assert info["data_offset"] % 32 == 0
    offsets = [t["offset"] for t in info["tensors"]]
    assert offsets[0] == 0 and offsets == sorted(offsets)


def test_matches_gguf_reader(model_file):
    compare_with_reader(model_file, _core.gguf_read(model_file))


def test_read_without_mmap_is_identical(model_file):
    assert _core.gguf_read(model_file, use_mmap=False) == _core.gguf_read(model_file)
    for t in _core.gguf_read(model_file)["tensors"]:
        a = _core.gguf_tensor_data(model_file, t["name"], use_mmap=False)
        assert np.array_equal(a, _core.gguf_tensor_data(model_file, t["name"]))


@pytest.mark.parametrize("alignment", [1, 8, 64, 256])
def test_custom_alignment(tmp_path, alignment):
    path = write_model(tmp_path / f"align{alignment}.gguf", alignment=alignment)
    info = _core.gguf_read(path)
    assert info["alignment"] == alignment and info["metadata"]["general.alignment"] == alignment
    compare_with_reader(path, info)


def test_version_2(tmp_path):
    data = bytearray(Path(write_model(tmp_path / "v3.gguf")).read_bytes())
    data[4:8] = struct.pack("<I", 2)  # v2 and v3 share the little-endian layout
    path = tmp_path / "v2.gguf"
    path.write_bytes(data)
    v2, v3 = _core.gguf_read(str(path)), _core.gguf_read(str(tmp_path / "v3.gguf"))
    assert v2["version"] == 2 and {**v2, "version": 3} == v3
    compare_with_reader(str(path), v2)


def test_undecodable_strings(tmp_path):
    """Invalid UTF-8 values come back as bytes; keys and names stay str (surrogate-escaped)."""
    c = gguf_corpus
    data = c.image(
        kvs=[
            c.kv("bad\xff".encode("latin-1"), c.STRING, c.s(b"\xff\xfeok")),
            c.kv("toks", c.ARRAY, c.arr(c.STRING, 2, c.s(b"fine") + c.s(b"\xc3"))),
        ]
    )
    path = tmp_path / "utf8.gguf"
    path.write_bytes(data)
    meta = _core.gguf_read(str(path))["metadata"]
    key = b"bad\xff".decode("utf-8", "surrogateescape")
    assert meta == {key: b"\xff\xfeok", "toks": ["fine", b"\xc3"]}


@pytest.mark.parametrize("name,data", gguf_corpus.valid_images(), ids=[n for n, _ in gguf_corpus.valid_images()])
def test_corpus_seeds_are_valid(tmp_path, name, data):
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(data)
    info = _core.gguf_read(str(path))
    assert info["version"] in (2, 3)
    if name == "every_type_v3":
        assert info["metadata"]["nested"] == [[3], ["y"]]
        assert info["metadata_types"]["nested"] == "ARRAY[ARRAY]"


CASES = gguf_corpus.cases()


@pytest.mark.parametrize("name,data,expect", CASES, ids=[c[0] for c in CASES])
def test_malformed_corpus_is_refused(tmp_path, name, data, expect):
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(data)
    for use_mmap in (True, False):
        with pytest.raises(apls.FormatError) as e:
            _core.gguf_read(str(path), use_mmap=use_mmap)
        assert expect in str(e.value)


def test_corpus_is_deterministic():
    assert gguf_corpus.cases() == CASES
    assert len({name for name, _, _ in CASES}) == len(CASES)


def test_every_truncation_of_a_written_file_is_refused(tmp_path, model_file):
    data = Path(model_file).read_bytes()
    # The writer pads after the last tensor; cut that off so the file ends at the last byte used.
    info = _core.gguf_read(model_file)
    end = info["data_offset"] + max(t["offset"] + t["n_bytes"] for t in info["tensors"])
    data = data[:end]
    path = tmp_path / "cut.gguf"
    path.write_bytes(data)
    _core.gguf_read(str(path))
    for n in range(0, len(data), 7):
        path.write_bytes(data[:n])
        with pytest.raises(apls.FormatError):
            _core.gguf_read(str(path))


def test_file_errors(tmp_path, model_file):
    with pytest.raises(apls.FileError) as e:
        _core.gguf_read(str(tmp_path / "missing.gguf"))
    assert "cannot open" in str(e.value) and isinstance(e.value, OSError)
    with pytest.raises(apls.FileError):
        _core.gguf_read(str(tmp_path))
    with pytest.raises(apls.InvalidArgumentError) as e:
        _core.gguf_tensor_data(model_file, "no.such.tensor")
    assert "no.such.tensor" in str(e.value)


def test_real_model_matches_gguf_reader(smollm2_path):
    info = _core.gguf_read(smollm2_path)
    r = compare_with_reader(smollm2_path, info)
    assert info["metadata"]["general.architecture"] == "llama"
    assert len(info["tensors"]) == len(r.tensors) > 0
    assert {t["type"] for t in info["tensors"]} >= {"Q4_1"}
    assert len(info["metadata"]["tokenizer.ggml.tokens"]) == 49152
