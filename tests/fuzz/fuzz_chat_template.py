"""Fuzz target (atheris, coverage-guided): a hostile chat template through apls.chat.render_chat.

Input: byte 0 picks the conversation and flags, the rest is the template (UTF-8, errors
replaced). Invariant: render_chat returns a string of at most MAX_RENDERED_CHARS characters or
raises ChatTemplateError, in bounded time; any other exception, a hang or a memory blow-up is a
finding.

    pip install atheris
    python tests/fuzz/fuzz_chat_template.py [libFuzzer flags] [corpus dirs]   # see tools/fuzz.sh

The module is loaded from python/apls/chat.py directly, so no built extension is needed.
"""

import importlib.util
import sys
import time
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import jinja2
    import jinja2.sandbox  # noqa: F401

    _spec = importlib.util.spec_from_file_location(
        "apls_chat", Path(__file__).resolve().parents[2] / "python" / "apls" / "chat.py"
    )
    chat = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(chat)

# A shorter time bound than the library default keeps slow inputs from eating the campaign; the
# mechanism under test is the same.
chat.MAX_RENDER_SECONDS = 0.5
SLACK_SECONDS = 1.5

CONVERSATIONS = [
    [{"role": "user", "content": "Hello"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "{{ 7 * 7 }} {% raw %}"},
    ],
    [],
    [{"role": "tool", "content": ""}, {"role": "user", "content": "x" * 1000}],
]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    flags = data[0]
    template = data[1:].decode("utf-8", "replace")
    messages = [dict(m) for m in CONVERSATIONS[flags % len(CONVERSATIONS)]]
    start = time.monotonic()
    try:
        out = chat.render_chat(
            template,
            messages,
            add_generation_prompt=bool(flags & 4),
            bos_token="<s>" if flags & 8 else "",
            eos_token="</s>",
        )
    except chat.ChatTemplateError as e:
        if not str(e):
            raise AssertionError("ChatTemplateError without a message") from e
    else:
        if not isinstance(out, str) or len(out) > chat.MAX_RENDERED_CHARS:
            raise AssertionError(f"render returned {type(out).__name__} of {len(out)} characters")
    elapsed = time.monotonic() - start
    if elapsed > chat.MAX_RENDER_SECONDS + SLACK_SECONDS:
        raise AssertionError(f"render took {elapsed:.2f} s, bound {chat.MAX_RENDER_SECONDS} s")


def main() -> None:
    sys.setrecursionlimit(1000)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
