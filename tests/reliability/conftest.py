"""Fixtures for the reliability tests: an in-process server whose app (and engine) the test can reach."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI

from service.api.app import create_app
from service.config import Settings
from tests.server import free_port


@dataclass
class LiveServer:
    url: str
    app: FastAPI

    @property
    def engine(self):
        """The supervised engine the app serves with (faults are injected into its inner engine)."""
        return self.app.state.service.engine


@contextmanager
def live_server(settings: Settings, timeout: float = 120.0) -> Iterator[LiveServer]:
    """Like tests.server.running_server, but hands back the app so a test can reach its engine."""
    port = free_port()
    settings = settings.model_copy(update={"host": "127.0.0.1", "port": port})
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if not thread.is_alive():
                raise RuntimeError("server thread exited during start-up")
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("server did not become ready")
            time.sleep(0.2)
        yield LiveServer(url, app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return bool(value)
        time.sleep(interval)
