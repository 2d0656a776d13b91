"""Run the real app under uvicorn on a loopback port, in a background thread, for tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from service.api.app import create_app
from service.config import Settings


def metric_samples(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``/metrics`` parsed by prometheus-client's own parser: sample name -> {sorted labels: value}.

    Every family name is a key too (empty when its samples carry a suffix, as counters' ``_total``
    do), so a test can ask whether a family is exported at all.
    """
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        out.setdefault(family.name, {})
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    app: FastAPI

    @property
    def engine(self):
        """The (supervised) engine the app serves with; tests inject faults into its inner engine."""
        return self.app.state.service.engine


@contextmanager
def live_server(settings: Settings, timeout: float = 120.0) -> Iterator[LiveServer]:
    """Start uvicorn with ``settings``; yield its URL and app once ``/ready`` says so."""
    port = free_port()
    settings = settings.model_copy(update={"host": "127.0.0.1", "port": port})
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    headers = {}
    if settings.api_key is not None:
        headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if not thread.is_alive():
                raise RuntimeError("server thread exited during start-up")
            try:
                if httpx.get(f"{url}/ready", headers=headers, timeout=2).status_code == 200:
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


@contextmanager
def running_server(settings: Settings, timeout: float = 120.0) -> Iterator[str]:
    """Start uvicorn with ``settings`` and yield its base URL once ``/ready`` says so."""
    with live_server(settings, timeout) as live:
        yield live.url
