"""The OpenAI HTTP API's shapes: request models (validated strictly: a field of the wrong type is
an error, not converted), response and stream-chunk builders, and the error body
{"error": {"message", "type", "param", "code"}}.

Sampling fields follow OpenAI's names and ranges; top_k, min_p, repeat_penalty and ignore_eos are
llama.cpp's extensions. Absent sampling fields take the engine's defaults (llama.cpp's:
temperature 0.8, top_k 40, top_p 0.95, min_p 0.05), as `apls run` does.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..generate import SamplingParams
from .job import Stats

_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)

MAX_STOP = 16  # stop strings per request (OpenAI allows 4)


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorInfo


class StreamOptions(BaseModel):
    model_config = _config
    include_usage: bool = False


class _Sampling(BaseModel):
    """Fields common to both endpoints."""

    model_config = _config
    model: str | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    min_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    repeat_penalty: Annotated[float, Field(gt=0.0, le=10.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    seed: int | None = None
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1, le=1)] = 1
    ignore_eos: bool = False
    user: str | None = None

    def sampling(self, default_seed: int) -> SamplingParams:
        d = SamplingParams()
        return SamplingParams(
            temperature=d.temperature if self.temperature is None else self.temperature,
            top_k=d.top_k if self.top_k is None else self.top_k,
            top_p=d.top_p if self.top_p is None else self.top_p,
            min_p=d.min_p if self.min_p is None else self.min_p,
            repeat_penalty=d.repeat_penalty if self.repeat_penalty is None else self.repeat_penalty,
            frequency_penalty=self.frequency_penalty or 0.0,
            presence_penalty=self.presence_penalty or 0.0,
            seed=(default_seed if self.seed is None else self.seed) & 0xFFFFFFFFFFFFFFFF,
        )

    def stop_list(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class TextPart(BaseModel):
    model_config = _config
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = _config
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class ResponseFormat(BaseModel):
    model_config = _config
    type: Literal["text"]  # JSON modes are not supported


class ChatCompletionRequest(_Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: Literal[False] | None = None  # log probabilities are not supported
    tools: Annotated[list[Any], Field(max_length=0)] | None = None  # nor tool calls
    response_format: ResponseFormat | None = None

    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Sampling):
    prompt: (
        str
        | Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
        | Annotated[list[str], Field(min_length=1, max_length=1)]
    )
    echo: Literal[False] = False  # not supported
    suffix: None = None
    logprobs: None = None
    best_of: Annotated[int, Field(ge=1, le=1)] | None = None

    def token_limit(self) -> int | None:
        return 16 if self.max_tokens is None else self.max_tokens  # OpenAI's default for completions


# ---- responses ------------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(stats: Stats) -> dict:
    return {
        "prompt_tokens": stats.n_prompt,
        "completion_tokens": stats.n_generated,
        "total_tokens": stats.n_prompt + stats.n_generated,
        "prompt_tokens_details": {"cached_tokens": stats.n_prompt_cached},
    }


def apls_figures(stats: Stats) -> dict:
    """The server's own figures of a finished request (an extension field, "apls")."""
    return {
        "tokens_per_second": round(stats.tokens_per_second, 2),
        "time_to_first_token_s": round(stats.t_first_token_s, 4),
        "queued_s": round(stats.t_queued_s, 4),
        "tau": round(stats.tau, 3),
        "acceptance": round(stats.acceptance, 3),
        "drafted_tokens": stats.n_drafted,
        "accepted_tokens": stats.n_accepted,
    }


class Envelope:
    """id, creation time and model of one response, shared by its chunks."""

    def __init__(self, chat: bool, model: str):
        self.chat = chat
        self.id = new_id("chatcmpl" if chat else "cmpl")
        self.created = int(time.time())
        self.model = model

    def _base(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, "system_fingerprint": None}

    def _choice(self, text: str | None, finish_reason: str | None, first: bool = False) -> dict:
        if self.chat:
            delta: dict = {} if text is None else {"content": text}
            if first:
                delta = {"role": "assistant", "content": text or ""}
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}

    def chunk(
        self, text: str | None, finish_reason: str | None = None, first: bool = False, extra: dict | None = None
    ) -> dict:
        out = self._base("chat.completion.chunk" if self.chat else "text_completion")
        out["choices"] = [self._choice(text, finish_reason, first)]
        if extra:
            out.update(extra)
        return out

    def usage_chunk(self, stats: Stats) -> dict:
        out = self._base("chat.completion.chunk" if self.chat else "text_completion")
        out["choices"] = []
        out["usage"] = usage(stats)
        return out

    def response(self, text: str, finish_reason: str, stats: Stats) -> dict:
        out = self._base("chat.completion" if self.chat else "text_completion")
        if self.chat:
            msg = {"role": "assistant", "content": text, "refusal": None}
            out["choices"] = [{"index": 0, "message": msg, "logprobs": None, "finish_reason": finish_reason}]
        else:
            out["choices"] = [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}]
        out["usage"] = usage(stats)
        out["apls"] = apls_figures(stats)
        return out


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def models_list(model_id: str, created: int) -> dict:
    return {"object": "list", "data": [{"id": model_id, "object": "model", "created": created, "owned_by": "apls"}]}
