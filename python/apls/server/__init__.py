"""`apls serve`: an OpenAI-compatible HTTP server with continuous batching and APLS per request.

Needs the `server` extra (`pip install 'apls[server]'`: FastAPI, uvicorn, sse-starlette,
prometheus-client). Layout: `app` (HTTP), `protocol` (the API's shapes), `scheduler` (the
engine's thread: continuous batching), `slots` (KV cache sequences, prefix sharing), `job`
(one request's state), `speculation` and `drafter` (drafts and when they pay), `metrics`,
`static/` (the chat page). See docs/SERVER.md.
"""

from __future__ import annotations

import logging
from pathlib import Path


def serve(
    model_path: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    n_slots: int = 4,
    n_ctx: int = 0,
    n_batch: int = 256,
    n_threads: int = 0,
    device: str = "auto",
    speculative: bool = False,
    draft_threshold: float | None = None,
    api_key: str | None = None,
    max_queue: int = 64,
    alias: str | None = None,
    cors_origins: tuple[str, ...] = ("*",),
    log_level: str = "info",
) -> None:
    """Load the model and serve it until interrupted."""
    import uvicorn

    from ..model import Model
    from .app import create_app
    from .scheduler import Scheduler

    model = Model(model_path, n_threads=n_threads, device=device)
    scheduler = Scheduler(
        model,
        n_slots=n_slots,
        n_ctx=n_ctx,
        n_batch=n_batch,
        n_threads=n_threads,
        max_queue=max_queue,
        speculative=speculative,
        draft_threshold=draft_threshold,
    )
    model_id = alias or Path(model_path).stem
    app = create_app(scheduler, model_id, api_key=api_key, cors_origins=cors_origins)
    logging.getLogger("apls.server").info(
        "model %s on %s, %d slots x %d tokens, speculative %s",
        model_id,
        model.device,
        n_slots,
        scheduler.n_ctx,
        speculative,
    )
    scheduler.start()
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        scheduler.stop()
