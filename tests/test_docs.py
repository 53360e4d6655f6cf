"""The documentation points at files that exist: every relative link of README.md and docs/*.md,
and every repository path written in code spans (`cpp/src/gguf.*`, `tools/test.sh`,
`forward_llama.cpp`) names a file or directory of the repository (globs must match one).
Data file names in commands (`--json out.json`) are the command's own and are not checked."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP = ("cpp/", "python/", "tests/", "tools/", "docs/", "examples/", "cmake/", "third_party/", ".ci/")
SUFFIXES = (".md", ".py", ".sh", ".c", ".cpp", ".h", ".hpp", ".cu", ".cuh", ".inc", ".json", ".jsonl", ".toml", ".txt")
FILE_NAMES = {
    p.name for p in ROOT.rglob("*") if not ({".git", "build", "__pycache__"} & set(p.relative_to(ROOT).parts))
}


def referenced(doc: Path):
    """(path, base directory) pairs a document refers to."""
    text = doc.read_text(encoding="utf-8")
    for m in re.finditer(r"\]\(([^)\s]+)\)", text):  # markdown links, relative to the document
        target = m.group(1).split("#")[0]
        if target and "://" not in target and not target.startswith("mailto:"):
            yield target, doc.parent
    for m in re.finditer(r"`([^`\n]+)`", text):  # code spans: repository paths and file names
        for word in re.split(r"[\s,;:()=]+", m.group(1)):
            word = word.rstrip(".")
            if "<" in word or "$" in word or word.startswith(("-", "build", "/")):
                continue  # placeholders, variables, flags, build outputs, absolute paths (a machine's)
            if word.startswith(TOP) or (word.endswith(SUFFIXES) and re.fullmatch(r"[\w./*-]+", word)):
                yield word, ROOT


CODE = (".md", ".py", ".sh", ".c", ".cpp", ".h", ".hpp", ".cu", ".cuh", ".inc")


def missing(path: str, base: Path) -> bool:
    # Paths are relative to the base, or to cpp/src as the engine's includes write them ("cpu/ops.h").
    bases = [base, ROOT / "cpp" / "src"] if base == ROOT else [base]
    if any(c in path for c in "*?["):
        return not any(list(b.glob(path)) for b in bases)
    if "/" not in path.rstrip("/"):  # a bare name: a source file anywhere in the repository (data
        return path.endswith(CODE) and path not in FILE_NAMES  # names are a command's own files)
    return not any((b / path).exists() for b in bases)


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_documented_paths_exist(doc):
    bad = sorted({p for p, base in referenced(doc) if missing(p, base)})
    assert not bad, f"{doc.relative_to(ROOT)} names files that do not exist: {bad}"
