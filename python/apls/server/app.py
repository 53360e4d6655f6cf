"""The HTTP layer (FastAPI): validates requests, turns them into `GenRequest`s for the scheduler,
and streams back what it sends (SSE in OpenAI's chunk format). It never touches batching or the
KV cache; the scheduler's thread does, and talks to this layer only through Events.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..chat import ChatTemplateError
from . import protocol as P
from .job import Event, GenRequest
from .metrics import CONTENT_TYPE, Metrics
from .scheduler import PromptTooLong, QueueFull, Scheduler

STATIC = Path(__file__).parent / "static"
MAX_BODY_BYTES = 8 << 20
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "not_found_error",
    413: "invalid_request_error",
}


class ApiError(Exception):
    """An error answered with OpenAI's body: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None, headers=None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers

    def response(self) -> JSONResponse:
        type_ = _ERROR_TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return JSONResponse(P.error_body(self.message, type_, self.code, self.param), self.status, headers=self.headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """One line naming the first problem and where it is."""
    errs = exc.errors()
    if not errs:
        return "invalid request body", None
    e = errs[0]
    loc = [str(x) for x in e.get("loc", ()) if x != "body"]
    where = ".".join(loc) or None
    if e.get("type") == "json_invalid":
        return f"the body is not valid JSON: {e.get('ctx', {}).get('error', 'decode error')}", None
    more = f" (and {len(errs) - 1} more problems)" if len(errs) > 1 else ""
    return (f"{where}: {e.get('msg')}" if where else str(e.get("msg"))) + more, where


class _LimitBody:
    """Refuses request bodies over `limit` bytes with 413 and OpenAI's error body: at once when
    Content-Length says so, else when the streamed body passes the limit (plain ASGI)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = ApiError(413, f"the request body is larger than {self.limit} bytes", "body_too_large").response()
        declared = dict(scope.get("headers", ())).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            return await too_large(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # FastAPI passes an HTTPException raised while it reads the body
                    raise HTTPException(413, f"the request body is larger than {self.limit} bytes")
            return message

        await self.app(scope, counted, send)


class _CountRequests:
    """Counts requests by route and status (plain ASGI: it leaves streaming and disconnects to
    the app)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            self.metrics.requests.labels(getattr(route, "path", "other"), str(status)).inc()


class _Server:
    """What the endpoints share: the scheduler, the model's name, the metrics."""

    def __init__(self, scheduler: Scheduler, model_id: str, metrics: Metrics):
        self.scheduler = scheduler
        self.model = scheduler.model
        self.model_id = model_id
        self.metrics = metrics
        self.created = int(time.time())

    def check_model(self, name: str | None) -> None:
        if name is not None and name != self.model_id:
            raise ApiError(
                404,
                f"the model '{name}' does not exist (this server has '{self.model_id}')",
                "model_not_found",
                "model",
            )

    def chat_tokens(self, body: P.ChatCompletionRequest) -> list[int]:
        messages = [{"role": m.role if m.role != "developer" else "system", "content": m.text()} for m in body.messages]
        try:
            prompt = self.model.chat_prompt(messages)
        except ChatTemplateError as e:
            raise ApiError(400, f"the model's chat template refused the messages: {e}", param="messages") from e
        return self.model.tokenize(prompt, add_special=False, parse_special=True)

    def completion_tokens(self, body: P.CompletionRequest) -> list[int]:
        p = body.prompt
        if isinstance(p, list) and p and isinstance(p[0], int):
            return list(p)
        text = p[0] if isinstance(p, list) else p
        return self.model.tokenize(text, add_special=True, parse_special=False)

    def submit(self, tokens: list[int], body: P._Sampling, limit: int | None):
        """Hand the request to the scheduler; returns (handle, queue of its Events)."""
        req = GenRequest(
            prompt=tokens,
            max_tokens=limit if limit is not None else self.scheduler.n_ctx,
            sampling=body.sampling(default_seed=secrets.randbits(63)),
            stop=body.stop_list(),
            ignore_eos=body.ignore_eos,
        )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def sink(ev: Event) -> None:  # on the scheduler's thread
            try:
                loop.call_soon_threadsafe(queue.put_nowait, ev)
            except RuntimeError:  # the loop closed: the server is stopping
                pass

        try:
            return self.scheduler.submit(req, sink), queue
        except QueueFull as e:
            raise ApiError(503, str(e), "overloaded", headers={"Retry-After": str(e.retry_after)}) from e
        except PromptTooLong as e:
            raise ApiError(
                413,
                str(e),
                "context_length_exceeded",
                "messages" if isinstance(body, P.ChatCompletionRequest) else "prompt",
            ) from e
        except ValueError as e:
            raise ApiError(400, str(e)) from e

    async def generate(self, request: Request, body: P._Sampling, chat: bool):
        self.check_model(body.model)
        try:
            tokens = await run_in_threadpool(self.chat_tokens if chat else self.completion_tokens, body)
        except UnicodeError as e:  # lone surrogates (JSON allows them) are not text the tokenizer takes
            raise ApiError(
                400, f"the text is not valid Unicode: {e.reason}", param="messages" if chat else "prompt"
            ) from e
        handle, queue = self.submit(tokens, body, body.token_limit())
        env = P.Envelope(chat, self.model_id)
        if body.stream:
            return EventSourceResponse(_stream(env, handle, queue, body.include_usage()), sep="\n", ping=15)
        return await _collect(request, env, handle, queue)


async def _stream(env: P.Envelope, handle, queue: asyncio.Queue, include_usage: bool) -> AsyncIterator[str]:
    """The SSE data lines of a streamed response; ending early (the client left) cancels the
    request, which frees its slot at the scheduler's next step."""
    try:
        if env.chat:
            yield json.dumps(env.chunk("", first=True))
        while True:
            ev: Event = await queue.get()
            if ev.error is not None:
                yield json.dumps(P.error_body(ev.error, "server_error"))
                break
            if ev.text:
                yield json.dumps(env.chunk(ev.text))
            if ev.finish_reason is not None:
                yield json.dumps(env.chunk(None, ev.finish_reason, extra={"apls": P.apls_figures(ev.stats)}))
                if include_usage:
                    yield json.dumps(env.usage_chunk(ev.stats))
                break
        yield "[DONE]"
    finally:
        handle.cancel()


async def _collect(request: Request, env: P.Envelope, handle, queue: asyncio.Queue) -> JSONResponse | Response:
    """A whole response; the request is cancelled if the client goes away first."""
    parts: list[str] = []
    try:
        while True:
            try:
                ev: Event = await asyncio.wait_for(queue.get(), timeout=1.0)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    return Response(status_code=499)
                continue
            parts.append(ev.text)
            if ev.error is not None:
                raise ApiError(500, ev.error)
            if ev.finish_reason is not None:
                return JSONResponse(env.response("".join(parts), ev.finish_reason, ev.stats))
    finally:
        handle.cancel()


def create_app(
    scheduler: Scheduler,
    model_id: str,
    *,
    api_key: str | None = None,
    cors_origins: tuple[str, ...] = ("*",),
    metrics: Metrics | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The server's FastAPI app over a started scheduler."""
    metrics = metrics or Metrics()
    metrics.watch(scheduler)
    srv = _Server(scheduler, model_id, metrics)
    app = FastAPI(title="APLS", summary="OpenAI-compatible API of the APLS engine")
    app.state.server = srv
    app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["*"], allow_headers=["*"])

    def authorized(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            raise ApiError(401, "a valid API key is required (Authorization: Bearer KEY)", "invalid_api_key")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return ApiError(400, message, param=param).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        code = "body_too_large" if exc.status_code == 413 else None
        return ApiError(exc.status_code, message, code, headers=getattr(exc, "headers", None)).response()

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        return ApiError(500, f"internal error: {type(exc).__name__}").response()

    app.add_middleware(_LimitBody, limit=max_body_bytes)
    app.add_middleware(_CountRequests, metrics=metrics)

    guarded = [Depends(authorized)]

    @app.post("/v1/chat/completions", dependencies=guarded, responses={400: {"model": P.ErrorBody}})
    async def chat_completions(request: Request, body: P.ChatCompletionRequest):
        return await srv.generate(request, body, chat=True)

    @app.post("/v1/completions", dependencies=guarded, responses={400: {"model": P.ErrorBody}})
    async def completions(request: Request, body: P.CompletionRequest):
        return await srv.generate(request, body, chat=False)

    @app.get("/v1/models", dependencies=guarded)
    async def models():
        return P.models_list(model_id, srv.created)

    @app.get("/v1/models/{name}", dependencies=guarded)
    async def model_info(name: str):
        srv.check_model(name)
        return P.models_list(model_id, srv.created)["data"][0]

    @app.get("/health")
    async def health(audit: bool = False):
        snap = scheduler.snapshot
        body = {
            "status": "ok" if scheduler.alive else "error",
            "model": model_id,
            "slots_busy": snap.slots_busy,
            "slots_total": len(scheduler.slots.all),
            "queue": snap.waiting,
            "kv_blocks_used": snap.kv.get("blocks_used", 0),
            "kv_blocks_total": snap.kv.get("n_blocks", 0),
        }
        if audit and scheduler.alive:
            body["audit"] = await run_in_threadpool(scheduler.audit)
        return JSONResponse(body, 200 if scheduler.alive else 503)

    @app.get("/metrics", dependencies=guarded)
    async def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
