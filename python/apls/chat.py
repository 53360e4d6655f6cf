"""Chat templates: the model's `tokenizer.chat_template` rendered with jinja2, sandboxed."""
from __future__ import annotations

from typing import Dict, List, Optional

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Bounds for templates that come from untrusted files.
MAX_RENDERED_CHARS = 1 << 20


class ChatTemplateError(ValueError):
    """The model has no chat template, or its template failed to render."""


def _raise_exception(message):
    raise ChatTemplateError(f"chat template raised: {message}")


def render_chat(template: Optional[str], messages: List[Dict[str, str]], *, add_generation_prompt: bool = True,
                bos_token: str = "", eos_token: str = "", **extra) -> str:
    """Render `messages` with a Hugging Face-style chat template.

    The standard variables are provided: `messages`, `add_generation_prompt`, `bos_token`,
    `eos_token` (and `raise_exception`, as Hugging Face does). Rendering runs in jinja2's
    immutable sandbox; undefined variables render as empty, output is capped.

    Returns:
        the prompt text.
    Raises:
        ChatTemplateError: no template, a template syntax error, a template that raised, or output
        over the size cap.
    """
    if not template:
        raise ChatTemplateError("this model has no chat template (tokenizer.chat_template is absent); "
                                "use generate() with a plain prompt")
    for m in messages:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ChatTemplateError(f"each message must be a dict with 'role' and 'content', got {m!r}")
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.Undefined)
    env.globals["raise_exception"] = _raise_exception
    try:
        tmpl = env.from_string(template)
        pieces, size = [], 0
        for piece in tmpl.generate(messages=messages, add_generation_prompt=add_generation_prompt,
                                   bos_token=bos_token, eos_token=eos_token, **extra):
            size += len(piece)
            if size > MAX_RENDERED_CHARS:
                raise ChatTemplateError(f"chat template output exceeds {MAX_RENDERED_CHARS} characters")
            pieces.append(piece)
        return "".join(pieces)
    except ChatTemplateError:
        raise
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"chat template failed: {e}") from e
    except RecursionError as e:
        raise ChatTemplateError("chat template recursed too deeply") from e
    except (OverflowError, TypeError, ValueError, AttributeError, KeyError, IndexError, ZeroDivisionError) as e:
        # The sandbox refuses huge ranges (OverflowError); templates can fail like any code.
        raise ChatTemplateError(f"chat template failed: {type(e).__name__}: {e}") from e
