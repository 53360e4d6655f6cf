"""`apls info`: what a GGUF file holds, read with the engine's own validating reader."""

from __future__ import annotations

from collections import Counter

from . import _core


def _short(v, limit=80) -> str:
    if isinstance(v, list):
        return f"[{len(v)} items]"
    s = repr(v) if not isinstance(v, str) else v
    s = s.replace("\n", "\\n")
    return s if len(s) <= limit else s[: limit - 3] + "..."


def describe(path: str) -> str:
    """A human-readable summary of a GGUF file. Raises apls.FormatError / FileError on bad files."""
    g = _core.gguf_read(path)
    lines = [
        f"file: {path}",
        f"GGUF version {g['version']}, alignment {g['alignment']}, "
        f"{len(g['metadata'])} metadata keys, {len(g['tensors'])} tensors",
        "",
    ]
    md = g["metadata"]
    arch = md.get("general.architecture", "?")
    lines.append(f"architecture: {arch}   name: {md.get('general.name', '?')}")
    n_params = 0
    n_bytes = 0
    types: Counter[str] = Counter()
    for t in g["tensors"]:
        n = 1
        for d in t["shape"]:
            n *= d
        n_params += n
        n_bytes += t["n_bytes"]
        types[t["type"]] += 1
    lines.append(
        f"parameters: {n_params / 1e6:.1f} M   size: {n_bytes / 2**20:.1f} MiB "
        f"({8 * n_bytes / max(n_params, 1):.2f} bits/weight)"
    )
    lines.append("tensor types: " + ", ".join(f"{k} x{v}" for k, v in types.most_common()))
    lines.append("")
    lines.append("metadata:")
    for k, v in md.items():
        lines.append(f"  {k} = {_short(v)}")
    return "\n".join(lines)
