"""A deterministic corpus of malformed GGUF images, each with the error it must raise.

`cases()` returns a list of `(name, data, expected_message_substring)`: the APLS reader must
refuse `data` with apls.FormatError whose message contains the substring. `valid_images()`
returns well-formed images (seeds for a fuzzer). Everything is built here with `struct`, byte by
byte, so the corpus needs nothing but the standard library and is identical on every run.
"""

from __future__ import annotations

import struct

MAGIC = b"GGUF"

# GGUF metadata value type ids.
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
# ggml tensor type ids used here.
T_F32, T_F16, T_Q8_0, T_F64 = 0, 1, 8, 28


def s(text: str | bytes) -> bytes:
    """A GGUF string: u64 length + bytes."""
    b = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(b)) + b


def arr(elem_type: int, count: int, elems: bytes = b"") -> bytes:
    """An ARRAY payload: element type, count, already-encoded elements."""
    return struct.pack("<IQ", elem_type, count) + elems


def kv(key: str | bytes, vtype: int, payload: bytes) -> tuple:
    return (key, vtype, payload)


def kv_u32(key: str, v: int) -> tuple:
    return kv(key, U32, struct.pack("<I", v))


def kv_str(key: str, v: str) -> tuple:
    return kv(key, STRING, s(v))


def tensor(name: str, ne: list[int], ttype: int, offset: int) -> tuple:
    """A tensor info; dims are written as u64 (pass 2**64 - 5 for -5)."""
    return (name, ne, ttype, offset)


def image(kvs=(), tensors=(), data=b"", version=3, alignment=32, n_tensors=None, n_kv=None) -> bytes:
    """Header, metadata, tensor infos, padding to `alignment`, then `data` (no trailing pad)."""
    out = bytearray(MAGIC + struct.pack("<I", version))
    out += struct.pack("<QQ", len(tensors) if n_tensors is None else n_tensors, len(kvs) if n_kv is None else n_kv)
    for key, vtype, payload in kvs:
        out += s(key) + struct.pack("<I", vtype) + payload
    for name, ne, ttype, offset in tensors:
        out += s(name) + struct.pack("<I", len(ne))
        out += b"".join(struct.pack("<Q", d % 2**64) for d in ne)
        out += struct.pack("<IQ", ttype, offset)
    out += bytes(-len(out) % alignment)
    return bytes(out + data)


def _data(n: int) -> bytes:
    return bytes((i * 7 + 1) & 0xFF for i in range(n))


def two_tensors(**kw) -> bytes:
    """Valid: F32 'a' [4, 2] at 0 and Q8_0 'b' [32] at 32, in a 66-byte data section."""
    args = dict(
        kvs=[kv_str("general.architecture", "llama")],
        tensors=[tensor("a", [4, 2], T_F32, 0), tensor("b", [32], T_Q8_0, 32)],
        data=_data(66),
    )
    args.update(kw)
    return image(**args)


def _tensors_with(i: int, **change) -> list:
    ts = [list(t) for t in ([("a", [4, 2], T_F32, 0), ("b", [32], T_Q8_0, 32)])]
    fields = {"name": 0, "ne": 1, "type": 2, "offset": 3}
    for k, v in change.items():
        ts[i][fields[k]] = v
    return [tuple(t) for t in ts]


def _nested(depth: int) -> bytes:
    """`depth` arrays nested inside each other around one UINT8."""
    payload = arr(U8, 1, b"\x01")
    for _ in range(depth - 1):
        payload = arr(ARRAY, 1, payload)
    return payload


def valid_images() -> list[tuple[str, bytes]]:
    every = [
        kv("u8", U8, b"\xc8"),
        kv("i8", I8, struct.pack("<b", -5)),
        kv("u16", U16, struct.pack("<H", 65535)),
        kv("i16", I16, struct.pack("<h", -2)),
        kv_u32("u32", 7),
        kv("i32", I32, struct.pack("<i", -7)),
        kv("f32", F32, struct.pack("<f", 0.5)),
        kv("bool", BOOL, b"\x01"),
        kv_str("str", "text"),
        kv("u64", U64, struct.pack("<Q", 2**64 - 1)),
        kv("i64", I64, struct.pack("<q", -(2**63))),
        kv("f64", F64, struct.pack("<d", 1e300)),
        kv("strs", ARRAY, arr(STRING, 2, s("x") + s(""))),
        kv("nested", ARRAY, arr(ARRAY, 2, arr(I32, 1, struct.pack("<i", 3)) + arr(STRING, 1, s("y")))),
    ]
    return [
        ("two_tensors", two_tensors()),
        ("every_type_v3", image(kvs=every)),
        ("every_type_v2", image(kvs=every, version=2)),
        (
            "alignment_64",
            image(
                kvs=[kv_u32("general.alignment", 64)],
                tensors=[tensor("t", [16], T_F32, 0), tensor("u", [3], T_F16, 64)],
                data=_data(70),
                alignment=64,
            ),
        ),
    ]


def cases() -> list[tuple[str, bytes, str]]:
    base = two_tensors()
    out: list[tuple[str, bytes, str]] = []

    def add(name: str, data: bytes, expect: str) -> None:
        out.append((name, data, expect))

    # Header.
    add("empty", b"", "truncated file")
    add("magic_only", MAGIC, "truncated file")
    add("bad_magic", b"GGUG" + base[4:], "bad magic")
    add("version_0", two_tensors(version=0), "unsupported GGUF version 0")
    add("version_1", two_tensors(version=1), "unsupported GGUF version 1")
    add("version_4", two_tensors(version=4), "unsupported GGUF version 4")
    add("big_endian_v3", two_tensors(version=0x03000000), "big-endian GGUF is not supported")
    add("big_endian_v2", two_tensors(version=0x02000000), "big-endian GGUF is not supported")
    add("truncated_header", base[:20], "truncated file")
    add("truncated_data", base[:-1], "past the end of the data section")
    add("truncated_before_data", base[: len(base) - 66 - 1], "truncated file")

    # Absurd counts: refused before anything is allocated for them.
    add("tensor_count_2p40", two_tensors(n_tensors=2**40), "tensor count 1099511627776 is absurd")
    add("kv_count_2p40", two_tensors(n_kv=2**40), "metadata count 1099511627776 is absurd")
    add("kv_count_max", two_tensors(n_kv=2**64 - 1), "metadata count 18446744073709551615 is absurd")
    for et, tname in ((U8, "UINT8"), (U64, "UINT64"), (STRING, "STRING"), (ARRAY, "ARRAY")):
        add(
            f"array_2p40_{tname}",
            image(kvs=[kv("big", ARRAY, arr(et, 2**40))]),
            f"array of 1099511627776 {tname} elements at key 'big' runs past the end",
        )
    add(
        "string_10GB",
        image(kvs=[kv("s", STRING, struct.pack("<Q", 10 * 10**9) + b"ab")]),
        "string length 10000000000 past the end of the file at key 's'",
    )
    add(
        "string_len_max",
        image(kvs=[kv("s", STRING, struct.pack("<Q", 2**64 - 1))]),
        "string length 18446744073709551615 past the end of the file at key 's'",
    )
    add(
        "key_len_past_end",
        MAGIC + struct.pack("<IQQQ", 3, 0, 1, 2**62) + b"k" * 16,
        "string length 4611686018427387904 past the end of the file of metadata entry 0",
    )
    add(
        "array_string_past_end",
        image(kvs=[kv("toks", ARRAY, arr(STRING, 2, s("ok") + struct.pack("<Q", 1000)))]),
        "string length 1000 past the end of the file at key 'toks'",
    )

    # Metadata.
    add("unknown_value_type", image(kvs=[kv("k", 13, b"\0" * 8)]), "unknown metadata value type 13 at key 'k'")
    add(
        "unknown_array_elem_type",
        image(kvs=[kv("k", ARRAY, arr(99, 0))]),
        "unknown metadata value type 99 in array at key 'k'",
    )
    add("duplicate_key", image(kvs=[kv_u32("k", 1), kv_str("x", "y"), kv_str("k", "z")]), "duplicate key 'k'")
    add("bad_bool", image(kvs=[kv("flag", BOOL, b"\x02")]), "bad bool value 2 at key 'flag'")
    add("nested_too_deep", image(kvs=[kv("deep", ARRAY, _nested(9))]), "arrays nested deeper than 8 at key 'deep'")
    add(
        "nested_very_deep",
        image(kvs=[kv("deep", ARRAY, struct.pack("<IQ", ARRAY, 1) * 100000)]),
        "arrays nested deeper than 8 at key 'deep'",
    )

    # Alignment.
    arch = kv_str("general.architecture", "llama")
    add("alignment_zero", two_tensors(kvs=[arch, kv_u32("general.alignment", 0)]), "bad alignment 0")
    add(
        "alignment_24",
        two_tensors(kvs=[arch, kv_u32("general.alignment", 24)]),
        "bad alignment 24: general.alignment must be a nonzero power of two",
    )
    add(
        "alignment_u64",
        two_tensors(kvs=[arch, kv("general.alignment", U64, struct.pack("<Q", 32))]),
        "bad alignment: general.alignment has type UINT64",
    )

    # Tensor infos.
    t = _tensors_with
    add("n_dims_5", two_tensors(tensors=t(1, ne=[32, 1, 1, 1, 1])), "tensor 'b' has 5 dimensions (at most 4)")
    add("negative_dim", two_tensors(tensors=t(0, ne=[4, -5])), "tensor 'a' has negative dimension ne[1] = -5")
    add("dim_overflow_u64", two_tensors(tensors=t(0, ne=[2**32, 2**32, 2])), "tensor 'a' dimension overflow")
    add("dim_overflow_i64", two_tensors(tensors=t(0, ne=[2**62, 2])), "tensor 'a' dimension overflow")
    add("byte_size_overflow", two_tensors(tensors=t(0, ne=[2**62], type=T_F64)), "tensor 'a' dimension overflow")
    add("unknown_tensor_type", two_tensors(tensors=t(0, type=77)), "tensor 'a' has unknown type 77")
    add("block_size", two_tensors(tensors=t(1, ne=[33])), "tensor 'b' ne[0] not a multiple of the block size")
    add("block_size_rows", two_tensors(tensors=t(1, ne=[16, 2])), "tensor 'b' ne[0] not a multiple of the block size")
    add("duplicate_tensor", two_tensors(tensors=t(1, name="a")), "duplicate tensor name 'a'")
    add("tensor_name_too_long", two_tensors(tensors=t(1, name="n" * 65)), "name too long")
    add("offset_unaligned", two_tensors(tensors=t(1, offset=33)), "tensor 'b' offset not aligned")
    add(
        "data_past_end",
        two_tensors(tensors=t(1, offset=64)),
        "tensor 'b' data [64, 64+34) past the end of the data section (66 bytes)",
    )
    add("data_offset_overflow", two_tensors(tensors=t(1, offset=2**64 - 32)), "tensor 'b' data [")
    add(
        "tensor_2p60_elements",
        two_tensors(tensors=t(0, ne=[2**60])),
        "tensor 'a' data [0, 0+4611686018427387904) past the end of the data section",
    )
    add("overlap", two_tensors(tensors=t(1, offset=0)), "tensors 'a' and 'b' overlap")
    add(
        "overlap_not_adjacent",
        image(
            tensors=[
                tensor("big", [40], T_F32, 0),
                tensor("x", [2], T_F32, 32),
                tensor("y", [2], T_F32, 128),
                tensor("z", [2], T_F32, 96),
            ],
            data=_data(200),
        ),
        "tensors 'big' and 'x' overlap",
    )
    return out


if __name__ == "__main__":
    for name, data, expect in cases():
        print(f"{name:28s} {len(data):6d} bytes  {expect}")
