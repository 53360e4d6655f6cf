"""Hostile chat templates: rendering is sandboxed and bounded, failures are clear errors.

A chat template is code that comes with a model file. These tests hand render_chat templates that
loop forever, build huge strings in one step or by doubling, recurse, reach for Python internals
or use undefined variables; each must end quickly with a ChatTemplateError that says why. The
fuzzer's inputs (tests/fuzz/corpus/fuzz_chat_template and regressions/) are replayed here too.
"""

import sys
import time
from pathlib import Path

import pytest

from apls import chat
from apls.chat import MAX_RENDERED_CHARS, ChatTemplateError, render_chat

MSGS = [{"role": "user", "content": "hi"}]
FUZZ = Path(__file__).parent / "fuzz"


@pytest.fixture
def short_deadline(monkeypatch):
    monkeypatch.setattr(chat, "MAX_RENDER_SECONDS", 0.3)
    return 0.3


def refused(template, match, messages=MSGS, bound_s=5.0):
    start = time.monotonic()
    with pytest.raises(ChatTemplateError, match=match):
        render_chat(template, messages)
    assert time.monotonic() - start < bound_s


def test_ordinary_templates_render_as_before():
    t = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] | trim }}{% endfor %}{{ '%3d' % 7 }}"
        "{{ '{:>4}'.format('x') }}{{ messages | map(attribute='content') | join(', ') | center(6) }}"
        "{% set ns = namespace(s='') %}{% for i in range(3) %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.s }}"
        "{{ ('a\nb') | indent(2) }}{{ 'abc'.replace('b', 'BB') }}{{ 2 ** 10 }}{{ [1, 2] + [3] }}"
    )
    assert render_chat(t, MSGS) == "<user>hi  7   x  hi  012a\n  baBBc1024[1, 2, 3]"


@pytest.mark.parametrize(
    "template",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% set s = 'x' * 1000000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    ],
    ids=["nested_range", "nested_string_loops", "exponential_macro"],
)
def test_endless_loops_stop_at_the_deadline(short_deadline, template):
    refused(template, "took longer than 0.3 s", bound_s=short_deadline + 1.0)


def test_deadline_leaves_no_pending_exception(short_deadline):
    with pytest.raises(ChatTemplateError):
        render_chat("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", MSGS)
    time.sleep(short_deadline + 0.2)  # a stray timeout would land in this thread now
    assert render_chat("{{ 1 + 1 }}", MSGS) == "2"


def test_a_swallowed_timeout_is_raised_again():
    """A timeout that lands where Python ignores exceptions (a weakref callback, a __del__) must
    not let the render run on: the watchdog raises it again until the render stops."""
    swallowed = 0
    start = time.monotonic()
    with pytest.raises(ChatTemplateError, match="took longer"):
        with chat._Watchdog(0.2):
            while True:
                try:
                    while time.monotonic() - start < 5.0:
                        pass
                    break
                except chat._RenderTimeout:
                    swallowed += 1
                    if swallowed > 1:
                        raise
    assert swallowed == 2 and time.monotonic() - start < 2.0
    time.sleep(0.2)  # and nothing fires after the watchdog has stopped


class _RaisesOnDel:
    def __init__(self, exc):
        self.exc = exc

    def __del__(self):
        raise self.exc


def test_a_swallowed_timeout_is_not_reported_and_other_unraisables_are():
    """While a watchdog runs, a _RenderTimeout that Python swallows in a __del__ is expected and
    not reported; any other swallowed exception still reaches the previous unraisable hook,
    which is back in place after the watchdog stops."""
    seen = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(u.exc_type)
    recorder = sys.unraisablehook
    try:
        with chat._Watchdog(60.0):
            _RaisesOnDel(chat._RenderTimeout())  # dropped at once: its __del__ raises
            _RaisesOnDel(ValueError("other"))
        assert seen == [ValueError]
        assert sys.unraisablehook is recorder
        _RaisesOnDel(chat._RenderTimeout())  # no watchdog: reported like any other
        assert seen == [ValueError, chat._RenderTimeout]
    finally:
        sys.unraisablehook = previous


@pytest.mark.parametrize(
    "template,what",
    [
        ("{{ 'x' * 10**9 }}", "'\\*' would make 1000000000"),
        ("{{ ['x' * 1000] * 10**6 }}", "'\\*' would make"),
        ("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "'~'"),
        ("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "'\\+'"),
        (
            "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set t %}{{ ns.s }}{{ ns.s }}{% endset %}"
            "{% set ns.s = t %}{% endfor %}",
            "a block",
        ),
        ("{{ ('a\n' * 500000) | indent(1000000) }}", "filter 'indent'"),
        ("{{ ('a\n' * 500000) | indent('x' * 1000) }}", "filter 'indent'"),
        ("{{ '%0999999999d' % 1 }}", "'%'"),
        ("{{ '%*d' % (999999, 1) * 1000 }}", "'\\*'"),
        ("{{ '{:>999999999}'.format(1) }}", "str.format"),
        ("{{ '%0999999999d' | format(1) }}", "filter 'format'"),
        ("{{ ('x' * 1000000).replace('', 'yyyyyyyyyy') }}", "str.replace"),
        ("{{ ('x' * 1000000) | replace('x', 'yy') }}", "filter 'replace'"),
        ("{{ ['x' * 1000000] * 2 }}", "'\\*' would make"),
        ("{% set inner = ['x' * 1000] * 1000 %}{{ [inner] * 1000 }}", "'\\*' would make"),
        ("{{ ('x' * 1000) | list | join('-' * 2000) }}", "filter 'join' would make"),
        ("{{ ('x' * 1000000) | list }}", "filter 'list' would make"),
        ("{{ ('\t' * 1000000).expandtabs(1000) }}", "str.expandtabs"),
        ("{{ ('x' * 100) | wordwrap(1, wrapstring='y' * 1000000) }}", "filter 'wordwrap'"),
        ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "exceeds"),
    ],
    ids=lambda v: v if len(v) < 30 else None,
)
def test_size_amplifiers_are_refused_before_they_run(template, what):
    refused(template, f"{what}", bound_s=5.0)


@pytest.mark.parametrize(
    "template,match",
    [
        ("{{ 'x' | center(10**9) }}", "integer argument 1000000000 to filter 'center' is too large"),
        ("{{ 'x'.ljust(10**9) }}", "integer argument 1000000000 to ljust is too large"),
        ("{{ 10 ** 100000000 }}", "is too large \\(about 100000000 digits\\)"),
        (
            "{% set ns = namespace(x=3) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}",
            "product of integers too large",
        ),
        ("{{ range(10**9) | list }}", "too large|MAX_RANGE"),
    ],
    ids=["center", "ljust", "pow", "squaring", "range"],
)
def test_huge_numbers_are_refused(template, match):
    refused(template, match)


@pytest.mark.parametrize(
    "template,match",
    [
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursed too deeply"),
        ("{{ foo.bar }}", "'foo' is undefined"),
        ("{% for %}", "chat template failed: Expected an expression"),
        ("{{ raise_exception('no system role') }}", "chat template raised: no system role"),
        ("{{ ''.__class__.__mro__ }}", "unsafe"),
        ("{{ messages.append(1) }}", "unsafe|not safely callable"),
        ("{{ messages[0]['content'] / 0 }}", "TypeError"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ lipsum(100000) }}", "'lipsum' is undefined"),
        ("x" * (MAX_RENDERED_CHARS + 1), "is too long"),
    ],
    ids=[
        "recursion",
        "undefined_attr",
        "syntax",
        "raise",
        "internals",
        "mutation",
        "type",
        "zerodiv",
        "lipsum",
        "long",
    ],
)
def test_failures_are_clear_errors(template, match):
    refused(template, match)


def test_undefined_variables_render_empty():
    assert render_chat("[{{ nothing }}]", MSGS) == "[]"


def test_output_at_the_limit_is_fine():
    assert len(render_chat(f"{{{{ 'x' * {MAX_RENDERED_CHARS} }}}}", MSGS)) == MAX_RENDERED_CHARS


def _fuzz_inputs():
    files = []
    for d in ("corpus", "regressions"):
        p = FUZZ / d / "fuzz_chat_template"
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.is_file())
    return files


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jinja2 on escapes in fuzzed templates
def test_fuzz_inputs_render_or_fail_cleanly(short_deadline):
    """The fuzzer's invariant on its corpus and on every input that once broke it (one test:
    the corpus has about a thousand small templates)."""
    files = _fuzz_inputs()
    assert len(files) > 100
    broken = []
    for path in files:
        data = path.read_bytes()
        if not data:
            continue
        start = time.monotonic()
        try:
            out = render_chat(data[1:].decode("utf-8", "replace"), MSGS, add_generation_prompt=bool(data[0] & 4))
            ok = isinstance(out, str) and len(out) <= MAX_RENDERED_CHARS
        except ChatTemplateError as e:
            ok = bool(str(e))
        if not ok or time.monotonic() - start > short_deadline + 1.5:
            broken.append(path.name)
    assert not broken, broken
