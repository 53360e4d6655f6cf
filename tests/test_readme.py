"""The README's promises kept (a doc-test): its Python snippet runs as written, and so does every
`apls` command line of its bash blocks, with only the changes listed below to keep the run short.

How each command line is run (from a scratch directory holding `tests/` and a `plan.json`):
- as written, except that sizes are cut: at most 8 generated tokens (`-n`, `--max-tokens`), a
  32-token prompt and one repetition for `apls bench`, one prompt per group (`--limit`); a run
  past the context window keeps going past it in a 64-token window;
- `apls tune` is only parsed: its search times some sixty plans (minutes on 2 cores); the search
  itself is tested on a tiny model (test_speculative.py::test_offline_search_skips_the_redundant_layers),
  and `plan.json` here is a plan file of tools/plans/ standing in for its output;
- `apls chat` reads an empty standard input (it leaves at once, as after Ctrl-D);
- `apls serve` runs on a free port (`--port` added) until it answers `GET /v1/models` with the
  default model and `GET /health`, then is stopped (SIGTERM) and must shut down cleanly;
- without a GPU, `-d cuda` must fail with a message about CUDA; without llama-cpp-python,
  `--vs-llama-cpp` must fail saying to install it;
- `apls convert <repo id>` reads a tiny checkpoint placed under that id in a scratch Hugging Face
  cache (HF_HUB_OFFLINE=1: nothing is downloaded), and the `apls quantize` line after it
  quantizes the file it wrote.
The `pip install` steps of the quick start are what tools/test.sh does before running the tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import apls
from apls import _core
from apls.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SHORT = {"-n": 8, "--n-predict": 8, "--max-tokens": 8, "--limit": 1}
BENCH_SHORT = {"-p": 32, "--n-prompt": 32, "-n": 8, "--n-gen": 8, "-r": 1, "--reps": 1, "--limit": 1}

pytestmark = [
    pytest.mark.usefixtures("smollm2_path"),  # the default model must be installed
    # What the README runs, the other tests run under the sanitizers piece by piece; through
    # subprocesses with the sanitizers preloaded it would take most of that run's time.
    pytest.mark.skipif(bool(os.environ.get("APLS_SANITIZED")), reason="tools/test.sh runs it, unsanitized"),
]


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def readme_commands() -> list[list[str]]:
    """Every `apls ...` command of the README's bash blocks, as argv (comments dropped; the
    `apls` part of a `... && apls ...` line)."""
    out = []
    for block in blocks("bash"):
        for line in block.splitlines():
            for part in line.split("&&"):
                argv = shlex.split(part, comments=True)
                if argv and argv[0] == "apls":
                    out.append(argv)
    return out


def shortened(argv: list[str]) -> list[str]:
    """argv with the sizes cut as the module docstring says."""
    cuts = BENCH_SHORT if argv[1] == "bench" else SHORT
    if "--stream-past-window" in argv:  # keep going past a window, a smaller one
        cuts = {**cuts, "-c": 64, "--ctx-size": 64, "-n": 80, "--n-predict": 80}
    out = list(argv)
    for i, a in enumerate(out[:-1]):
        if a in cuts and out[i + 1].isdigit():
            out[i + 1] = str(min(int(out[i + 1]), cuts[a]))
    if argv[1] == "bench" and not {"-r", "--reps"} & set(argv) and "--speculative" not in argv:
        out[2:2] = ["-r", "1"]
    return out


def cli_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The apls this test imported (the installed package, or the source tree with APLS_EXT_DIR).
    env["PYTHONPATH"] = os.pathsep.join([str(Path(apls.__file__).parents[1]), env.get("PYTHONPATH", "")])
    env["HF_HOME"] = str(tmp / "hf")
    env["HF_HUB_OFFLINE"] = "1"
    return env


def fake_hub_checkpoint(tmp: Path, repo: str) -> None:
    """A tiny llama checkpoint with a BPE tokenizer, cached under `repo` as the hub lays it out."""
    from hf_tiny import llama_config, write_bpe_tokenizer, write_numpy_checkpoint

    snap = tmp / "hf" / "hub" / ("models--" + repo.replace("/", "--")) / "snapshots" / ("0" * 40)
    write_numpy_checkpoint(snap, llama_config(vocab_size=416))
    write_bpe_tokenizer(snap, "smollm", vocab_size=400)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0" * 40)


def serve_briefly(run: list[str], cwd: Path, env: dict[str, str]) -> None:
    """Start an `apls serve` line on a free port, check that it serves, stop it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "apls", *run[1:], "--port", str(port)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, f"{run} exited: {proc.communicate()[1][-2000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as r:
                    models = json.load(r)
                break
            except OSError:
                assert time.monotonic() < deadline, f"{run} did not answer within 300 s"
                time.sleep(0.5)
        assert [m["id"] for m in models["data"]] == ["SmolLM2-135M-Instruct.Q4_1"], models
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    # A graceful stop: uvicorn finishes its shutdown, then exits by the signal it got (as recent
    # versions do, so that a supervisor sees why it ended).
    said = f"{run}\n{err[-2000:]}"
    assert proc.returncode in (0, -signal.SIGTERM) and "Traceback" not in err, said
    assert "Application shutdown complete" in err, said


def test_python_snippet_runs_as_written(tmp_path):
    (snippet,) = [b for b in blocks("python") if b.startswith("import apls\n")]
    r = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout  # the first line's greedy answer
    assert "tau " in r.stdout and "'n_seq_used': 2" in r.stdout  # APLS stats, the forked cache


@pytest.mark.slow
def test_cli_lines_run_as_written(tmp_path):
    commands = readme_commands()
    assert len(commands) >= 15, commands  # the quick start and "Using it"
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    shutil.copy(ROOT / "tools" / "plans" / "smollm2-skip-attn-4-7.json", tmp_path / "plan.json")
    env = cli_env(tmp_path)
    no_gpu = _core.cuda_device_count() == 0
    no_llama_cpp = importlib.util.find_spec("llama_cpp") is None
    for argv in commands:
        if argv[1] == "tune":  # parsed only (see the module docstring)
            args = build_parser().parse_args(argv[1:])
            assert args.prompts and os.path.exists(ROOT / args.prompts), argv
            continue
        if argv[1] == "convert":
            fake_hub_checkpoint(tmp_path, argv[2])
        run = shortened(argv)
        if argv[1] == "serve":
            serve_briefly(run, tmp_path, env)
            continue
        r = subprocess.run(
            [sys.executable, "-m", "apls", *run[1:]],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
        )
        said = f"{run}\n{r.stderr[-2000:]}"
        assert "Traceback" not in r.stderr, said
        if no_gpu and "cuda" in run:
            assert r.returncode == 1 and "cuda" in r.stderr.lower(), said
        elif no_llama_cpp and "--vs-llama-cpp" in run:
            assert r.returncode == 1 and "llama-cpp-python" in r.stderr, said
        else:
            assert r.returncode == 0, said
            args = build_parser().parse_args(run[1:])
            if args.command == "run" and not args.chat:
                assert r.stdout.startswith(args.prompt), said  # the prompt echoed, then the text
    assert (tmp_path / "smol.gguf").exists() and (tmp_path / "smol-q4_k_m.gguf").exists()
    assert (tmp_path / "spec.json").exists()
