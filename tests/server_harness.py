"""A running `apls serve` for tests: the scheduler and app in this process, uvicorn on a
loopback port of its own in a thread."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass

import httpx


@dataclass
class Running:
    url: str  # http://127.0.0.1:PORT
    scheduler: object
    model: object
    model_id: str

    def client(self, **kw):
        """The official OpenAI client for this server."""
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key=kw.pop("api_key", "none"), max_retries=0, **kw)

    def wait_idle(self, timeout: float = 10.0) -> dict:
        """Wait until no request runs or waits; returns the audit of the KV cache."""
        deadline = time.monotonic() + timeout
        while True:
            snap = self.scheduler.snapshot
            if snap.slots_busy == 0 and snap.waiting == 0:
                return self.scheduler.audit()
            if time.monotonic() > deadline:
                raise AssertionError(f"the server is still busy after {timeout} s: {snap}")
            time.sleep(0.02)


@contextlib.contextmanager
def serve_app(app):
    """Serve a FastAPI app on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    import uvicorn

    # Port 0: the system picks a free one (uvicorn's own listening socket: TCP_NODELAY is set on
    # its connections, which a socket handed in with sockets= did not get here: 40 ms a request).
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def running_server(model, model_id: str = "smollm2", api_key: str | None = None, **scheduler_kw):
    """A scheduler over `model` and the app over it, served on loopback."""
    from apls.server.app import create_app
    from apls.server.scheduler import Scheduler

    scheduler = Scheduler(model, **scheduler_kw)
    scheduler.start()
    try:
        app = create_app(scheduler, model_id, api_key=api_key)
        with serve_app(app) as url:
            httpx.get(url + "/health", timeout=10).raise_for_status()
            yield Running(url, scheduler, model, model_id)
    finally:
        scheduler.stop()
