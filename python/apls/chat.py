"""Chat templates: the model's `tokenizer.chat_template` rendered with jinja2, sandboxed and bounded.

A template comes from the model file, that is from whoever made the file, so rendering treats it
as hostile code. jinja2's immutable sandbox keeps it away from Python internals and from mutating
its inputs; on top of that, rendering here is bounded:

- time: a watchdog stops a render that runs longer than MAX_RENDER_SECONDS (loops with empty
  bodies included: the stop is an exception raised into the rendering thread between bytecodes);
- size: no string the template builds, and not the output, may exceed MAX_RENDERED_CHARS. The
  operations that can multiply a size in one step (`*`, `**`, `+`, `~`, `%`, the string methods
  and filters with a width or a replacement, joins, block captures) are checked *before* they
  run, so a one-line template cannot ask for gigabytes;
- depth: recursion (macros calling themselves) ends with Python's recursion limit.

Every failure is a ChatTemplateError whose message says what went wrong.
"""

from __future__ import annotations

import ctypes
import math
import re
import sys
import threading
from typing import Any, Callable, Literal

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Bounds for templates that come from untrusted files.
MAX_RENDERED_CHARS = 1 << 20  # the output, the template's source, and any string it builds
MAX_RENDER_SECONDS = 2.0  # real templates render in milliseconds


class ChatTemplateError(ValueError):
    """The model has no chat template, or its template failed to render."""


def _raise_exception(message):
    raise ChatTemplateError(f"chat template raised: {message}")


class _RenderTimeout(BaseException):
    """Raised into the rendering thread by the watchdog. A BaseException, so that no
    `except Exception` on the way (jinja2's or ours) swallows it."""


def _too_big(what: str, size: int) -> ChatTemplateError:
    return ChatTemplateError(f"chat template output exceeds {MAX_RENDERED_CHARS} characters ({what} would make {size})")


def _check_size(what: str, size: int) -> None:
    if size > MAX_RENDERED_CHARS:
        raise _too_big(what, size)


def _sized(value: Any, _memo: dict[int, int] | None = None, _depth: int = 0) -> int:
    """The characters a value can turn into when rendered: the length of a string, and for a
    list, tuple or dict its length plus the sizes of its items (shared items counted each time
    they occur, as their text would be; each computed once). Other values count 0."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if not isinstance(value, (list, tuple, dict)):
        return 0
    memo = {} if _memo is None else _memo
    key = id(value)
    if key not in memo:
        if _depth > 16:
            memo[key] = MAX_RENDERED_CHARS + 1  # nesting that deep is not a chat prompt
        else:
            items = list(value.items()) if isinstance(value, dict) else value
            total = len(items)
            for item in items:
                for part in item if isinstance(value, dict) else (item,):
                    total += _sized(part, memo, _depth + 1)
                if total > MAX_RENDERED_CHARS:
                    break
            memo[key] = total
    return memo[key]


def _check_ints(what: str, args, kwargs) -> None:
    """Integers handed to a function or filter (widths, counts) are at most MAX_RENDERED_CHARS."""
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > MAX_RENDERED_CHARS:
            shown = str(a) if a.bit_length() <= 64 else f"of {a.bit_length()} bits"
            raise ChatTemplateError(
                f"chat template failed: integer argument {shown} to {what} is too large (limit {MAX_RENDERED_CHARS})"
            )


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d*)(?:\.(\d*))?")
_BRACE_FIELD = re.compile(r"\{[^{}]*\}")
_NUMBER = re.compile(r"\d+")


def _format_width_budget(fmt: str, args=(), kwargs=None) -> int:
    """A bound on the characters a %- or {}-format string can add through widths and precisions:
    those written in its fields, plus every integer argument (a `*` or nested `{}` width)."""
    nums = []
    for m in _PERCENT_SPEC.finditer(fmt):
        nums += [m.group(1), m.group(2)]
    for m in _BRACE_FIELD.finditer(fmt):
        nums += _NUMBER.findall(m.group(0))
    total = sum(int(n) if len(n) <= 12 else MAX_RENDERED_CHARS + 1 for n in nums if n)
    values = list(args) + list((kwargs or {}).values())
    return (
        total
        + sum(max(a, 0) for a in values if isinstance(a, int) and not isinstance(a, bool))
        + sum(_sized(a) for a in values)
    )


def _join_size(sep: str, items) -> int:
    if not isinstance(items, (list, tuple)):
        return 0  # lazy sequences: checked on the result
    return len(sep) * max(len(items) - 1, 0) + sum(len(x) if isinstance(x, str) else 0 for x in items)


def _replace_size(s: str, old: str, new: str, count: Any = None) -> int:
    n = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        n = min(n, count)
    return len(s) + n * max(len(new) - len(old), 0)


def _str_method_size(s: str, name: str, args, kwargs) -> int:
    """Estimated result length of str method `name` on s, for the methods that can amplify."""
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        return _replace_size(s, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count"))
    if name == "join" and args:
        return _join_size(s, args[0])
    if name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        return len(s) + s.count("\t") * (tab if isinstance(tab, int) else 8)
    if name in ("format", "format_map"):
        return len(s) + _format_width_budget(s, args, kwargs)
    return 0


# Filters that can make their output much larger than their input, with a size estimate made
# before they run; every other filter is checked on its result.
def _indent_size(s, width=4, first=False, blank=False, *rest, **kw) -> int:
    w = len(width) if isinstance(width, str) else (width if isinstance(width, int) else 0)
    return len(str(s)) + (str(s).count("\n") + 1) * max(w, 0)


def _wordwrap_size(s, width=79, break_long_words=True, wrapstring=None, *rest, **kw) -> int:
    wrap = kw.get("wrapstring", wrapstring) or "\n"
    w = width if isinstance(width, int) and width > 0 else 1
    return len(str(s)) * 2 + (len(str(s)) // w + 1) * (len(wrap) if isinstance(wrap, str) else 1)


_FILTER_SIZE: dict[str, Callable[..., int]] = {
    "indent": _indent_size,
    "wordwrap": _wordwrap_size,
    "replace": lambda s, old="", new="", count=None, *r, **k: (
        _replace_size(str(s), str(old), str(new), count) if isinstance(s, str) else 0
    ),
    "join": lambda value, d="", *r, **k: _join_size(d if isinstance(d, str) else "", value),
    "format": lambda value, *args, **kw: (
        len(value) + _format_width_budget(value, args, kw) if isinstance(value, str) else 0
    ),
}


def _bounded_filter(name: str, f):
    estimate = _FILTER_SIZE.get(name)

    def run(*args, **kwargs):
        plain = [
            a for a in args if not isinstance(a, (jinja2.runtime.Context, jinja2.nodes.EvalContext, jinja2.Environment))
        ]
        _check_ints(f"filter '{name}'", plain, kwargs)
        if estimate is not None and plain:
            try:
                size = estimate(*plain, **kwargs)
            except TypeError:
                size = 0  # wrong arguments: the filter itself reports them
            _check_size(f"filter '{name}'", size)
        out = f(*args, **kwargs)
        _check_size(f"filter '{name}'", _sized(out))
        return out

    # jinja2 passes the context / eval context / environment to filters marked for it.
    if hasattr(f, "jinja_pass_arg"):
        run.jinja_pass_arg = f.jinja_pass_arg  # type: ignore[attr-defined]  # jinja2's marker attribute
    return run


def _bounded_join(seq) -> str:
    """The `~` operator (jinja2's str_join), size-checked before joining."""
    parts = [x if isinstance(x, str) else str(x) for x in seq]
    _check_size("'~'", sum(len(p) for p in parts))
    return "".join(parts)


def _bounded_markup_join(seq):
    parts = list(seq)
    _check_size("'~'", sum(len(p) if isinstance(p, str) else 0 for p in parts))
    return jinja2.runtime.markup_join(parts)


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox with size checks on every operation that can multiply a size."""

    intercepted_binops = frozenset(["*", "**", "+", "%"])

    def __init__(self, **kw):
        super().__init__(**kw)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        # lipsum(n) builds n paragraphs word by word: no chat template needs it.
        self.globals.pop("lipsum", None)

    def concat(self, seq) -> str:  # block captures ({% set x %}...{% endset %}), macro bodies
        parts = list(seq)
        _check_size("a block", sum(len(p) if isinstance(p, str) else 0 for p in parts))
        return "".join(parts)

    def call_binop(self, context, operator, left, right):
        if operator == "*":
            seq, n = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(n, int) and not isinstance(n, bool) and _sized(seq):
                _check_size("'*'", len(seq) * max(n, 0))
            elif isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > 1 << 16:
                raise ChatTemplateError("chat template failed: product of integers too large")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                digits = right * math.log10(abs(left))
                if digits > 4096:
                    raise ChatTemplateError(
                        f"chat template failed: {left} ** {right} is too large (about {digits:.0f} digits)"
                    )
        elif operator == "+":
            _check_size("'+'", _sized(left) + _sized(right))
        elif operator == "%" and isinstance(left, str):
            _check_size("'%'", len(left) + _format_width_budget(left, right if isinstance(right, tuple) else (right,)))
        out = super().call_binop(context, operator, left, right)
        _check_size(f"'{operator}'", _sized(out))
        return out

    def call(__self, __context, __obj, *args, **kwargs):
        if __obj is not jinja2.sandbox.safe_range:  # range has its own, tighter cap (MAX_RANGE)
            _check_ints(getattr(__obj, "__name__", "a function"), args, kwargs)
        target = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner, name = getattr(target, "__self__", None), getattr(target, "__name__", "")
        if isinstance(owner, str):
            _check_size(f"str.{name}", _str_method_size(owner, name, args, kwargs))
        out = super().call(__context, __obj, *args, **kwargs)
        _check_size(getattr(__obj, "__name__", "a call"), _sized(out))
        return out


def _set_async_exc(thread_id: int, exc) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


class _QuietTimeouts:
    """While any watchdog runs, sys.unraisablehook drops a _RenderTimeout that Python swallowed
    (it is expected: the watchdog fires again) and passes every other unraisable exception to
    the hook that was there before. Process-wide, so counted: the first watchdog installs it,
    the last one restores the previous hook (unless someone replaced ours meanwhile)."""

    lock = threading.Lock()
    users = 0
    previous: Callable[[Any], object] | None = None

    @classmethod
    def hook(cls, unraisable) -> None:
        if unraisable.exc_type is _RenderTimeout:
            return
        (cls.previous or sys.__unraisablehook__)(unraisable)

    @classmethod
    def enter(cls) -> None:
        with cls.lock:
            if cls.users == 0:
                cls.previous = sys.unraisablehook
                sys.unraisablehook = cls.hook
            cls.users += 1

    @classmethod
    def exit(cls) -> None:
        with cls.lock:
            cls.users -= 1
            if cls.users == 0:
                if sys.unraisablehook == cls.hook:
                    sys.unraisablehook = cls.previous or sys.__unraisablehook__
                cls.previous = None


class _Watchdog:
    """Raises _RenderTimeout into the current thread after `seconds`, unless stopped first, and
    again every REFIRE_SECONDS until stopped: an asynchronous exception that lands in a weakref
    callback or a __del__ is swallowed there ("Exception ignored"), and the render would go on.
    Those swallowed ones are not reported (_QuietTimeouts)."""

    REFIRE_SECONDS = 0.05

    def __init__(self, seconds: float):
        self.thread_id = threading.get_ident()
        self.lock = threading.Lock()
        self.done = False
        self.fired = False
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True

    def _fire(self) -> None:
        with self.lock:
            if not self.done:
                self.fired = True
                _set_async_exc(self.thread_id, _RenderTimeout)
                self.timer = threading.Timer(self.REFIRE_SECONDS, self._fire)
                self.timer.daemon = True
                self.timer.start()

    def __enter__(self):
        _QuietTimeouts.enter()
        self.timer.start()
        return self

    def __exit__(self, *exc) -> Literal[False]:
        while True:  # the timeout may land anywhere here, even while we stop the watchdog
            try:
                with self.lock:
                    self.done = True  # no more firing (a pending timer finds done)
                    self.timer.cancel()
                    if self.fired:
                        _set_async_exc(self.thread_id, None)  # drop it if still pending
                break
            except _RenderTimeout:
                continue
        _QuietTimeouts.exit()
        if self.fired:
            raise ChatTemplateError(f"chat template rendering took longer than {MAX_RENDER_SECONDS} s")
        return False


def _render(
    template: str, messages, add_generation_prompt: bool, bos_token: str, eos_token: str, extra: dict[str, Any]
) -> str:
    env = _BoundedEnvironment(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.Undefined)
    env.globals["raise_exception"] = _raise_exception
    tmpl = env.from_string(template)
    # The `~` operator compiles to a call of str_join / markup_join looked up in the template's
    # module globals (shared by its blocks and macros); point those at the checked versions.
    g = tmpl.root_render_func.__globals__
    g["str_join"], g["markup_join"] = _bounded_join, _bounded_markup_join
    pieces, size = [], 0
    for piece in tmpl.generate(
        messages=messages,
        add_generation_prompt=add_generation_prompt,
        bos_token=bos_token,
        eos_token=eos_token,
        **extra,
    ):
        size += len(piece)
        if size > MAX_RENDERED_CHARS:
            raise ChatTemplateError(f"chat template output exceeds {MAX_RENDERED_CHARS} characters")
        pieces.append(piece)
    return "".join(pieces)


def render_chat(
    template: str | None,
    messages: list[dict[str, str]],
    *,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    **extra,
) -> str:
    """Render `messages` with a Hugging Face-style chat template.

    The standard variables are provided: `messages`, `add_generation_prompt`, `bos_token`,
    `eos_token` (and `raise_exception`, as Hugging Face does). Rendering runs in jinja2's
    immutable sandbox with the bounds of this module (time, size, depth); undefined variables
    render as empty, using an attribute of one is an error.

    Returns:
        the prompt text.
    Raises:
        ChatTemplateError: no template, a template syntax error, a template that raised, failed or
        recursed too deeply, output (or any string it builds) over MAX_RENDERED_CHARS, or a render
        longer than MAX_RENDER_SECONDS.
    """
    if not template:
        raise ChatTemplateError(
            "this model has no chat template (tokenizer.chat_template is absent); use generate() with a plain prompt"
        )
    if len(template) > MAX_RENDERED_CHARS:
        raise ChatTemplateError(f"chat template of {len(template)} characters is too long (limit {MAX_RENDERED_CHARS})")
    for m in messages:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ChatTemplateError(f"each message must be a dict with 'role' and 'content', got {m!r}")
    try:
        with _Watchdog(MAX_RENDER_SECONDS):
            try:
                return _render(template, messages, add_generation_prompt, bos_token, eos_token, extra)
            except _RenderTimeout:
                pass  # __exit__ raises the ChatTemplateError
        raise AssertionError("unreachable")  # pragma: no cover
    except ChatTemplateError:
        raise
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"chat template failed: {e}") from e
    except RecursionError as e:
        raise ChatTemplateError("chat template recursed too deeply") from e
    except MemoryError as e:
        raise ChatTemplateError("chat template ran out of memory") from e
    except Exception as e:  # templates can fail like any code: every failure is the template's
        raise ChatTemplateError(f"chat template failed: {type(e).__name__}: {e}") from e
