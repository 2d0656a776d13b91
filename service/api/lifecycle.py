"""Graceful shutdown: SIGTERM drains in-flight work, bounded by ``drain_grace_s``.

Why not uvicorn's own shutdown: on SIGTERM uvicorn closes its listening socket at once, so a load
balancer that has not yet seen the pod leave gets "connection refused" instead of an answer it can
act on, and ``/ready`` never turns false. The order here (issue #9 §5) is:

1. ``/ready`` answers 503 at once (``ServiceState.draining``), so readiness probes take the pod out;
2. new work is answered **503 with Retry-After** in the OpenAI error format (non-GET requests
   here; transcriptions also in ``ServiceState.transcribe``), new realtime sessions close 1013;
   GETs (``/health``, ``/metrics``, job status, ``/v1/models``) keep working;
3. in-flight requests and realtime sessions may finish, for at most ``drain_grace_s``;
4. when the grace period ends, realtime sessions still open are closed with **1001 (going away)**,
   requests still running are answered 503 ``shutting_down`` if nothing was sent yet;
5. then uvicorn shuts down as usual (lifespan: stress jobs marked interrupted, engine closed).

A second SIGTERM or SIGINT skips the rest of the drain. ``megaasr serve`` runs :func:`serve`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)

#: Probes and scrapes: never refused while draining and not counted as work to wait for.
EXEMPT_PATHS = frozenset({"/health", "/ready", "/metrics"})
#: Close code for realtime sessions still open when the grace period ends (RFC 6455: going away).
CLOSE_GOING_AWAY = 1001
#: Bound on uvicorn's own wait once the drain is over (idle keep-alive connections, stragglers).
AFTER_DRAIN_TIMEOUT_S = 5


class Drain:
    """Drain state shared by the HTTP middleware, the realtime endpoint and the server."""

    def __init__(self, grace_s: float, retry_after_s: int) -> None:
        self.grace_s = grace_s
        self.retry_after_s = retry_after_s
        self.draining = False
        self.in_flight = 0
        self._expired: asyncio.Event | None = None

    @property
    def expired(self) -> asyncio.Event:
        """Set when the grace period is over: whatever still runs must end now."""
        if self._expired is None:
            self._expired = asyncio.Event()
        return self._expired

    async def run(self, app: FastAPI) -> None:
        """Refuse new work, wait for in-flight work (at most ``grace_s``), then end what remains."""
        loop = asyncio.get_running_loop()
        state = getattr(app.state, "service", None)
        self.draining = True
        if state is not None:
            state.draining = True

        def sessions() -> int:
            return int(getattr(state, "realtime_sessions", 0) or 0)

        log.info("draining: %d request(s) and %d realtime session(s) in flight; grace %.0f s",
                 self.in_flight, sessions(), self.grace_s)
        deadline = loop.time() + self.grace_s
        while (self.in_flight or sessions()) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.in_flight or sessions():
            log.warning("drain grace of %.0f s is over: closing %d realtime session(s) (1001), ending %d "
                        "request(s) with 503", self.grace_s, sessions(), self.in_flight)
            self.expired.set()
            end = loop.time() + 3
            while (self.in_flight or sessions()) and loop.time() < end:
                await asyncio.sleep(0.05)
        else:
            log.info("drained: nothing in flight")

    async def wait_expired_or(self, awaitable: Any) -> Any:
        """Await ``awaitable``; if the grace period ends first, cancel it and raise :class:`DrainExpired`."""
        task = asyncio.ensure_future(awaitable)
        expiry = asyncio.ensure_future(self.expired.wait())
        try:
            done, _ = await asyncio.wait({task, expiry}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            expiry.cancel()
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise DrainExpired()


class DrainExpired(Exception):
    """The drain grace period ended while this request or session was still running."""


def _error_body(message: str, code: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "server_error", "param": None,
                                 "code": code}}).encode()


class DrainMiddleware:
    """Counts in-flight HTTP requests; while draining, refuses new non-GET work with 503."""

    def __init__(self, app: Any, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        drain = self.drain
        if drain.draining and scope.get("method") not in ("GET", "HEAD", "OPTIONS"):
            await _send_503(send, "The service is shutting down; retry on another instance.", drain.retry_after_s)
            return
        started = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        drain.in_flight += 1
        try:
            await drain.wait_expired_or(self.app(scope, receive, tracking_send))
        except DrainExpired:
            if not started:
                await _send_503(send, "The service shut down before this request finished; retry.",
                                drain.retry_after_s, code="shutting_down")
        finally:
            drain.in_flight -= 1


async def _send_503(send: Any, message: str, retry_after_s: int, code: str = "unavailable") -> None:
    body = _error_body(message, code)
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(retry_after_s).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class DrainingServer(uvicorn.Server):
    """uvicorn, but the first SIGTERM/SIGINT drains (see the module docstring) before shutting down."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, drain: Drain) -> None:
        super().__init__(config)
        self._app = app
        self._drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task | None = None

    async def startup(self, sockets: list | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = self._drain_task is None and not self.should_exit
        if first and self._loop is not None and self.started and sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.call_soon_threadsafe(self._begin_drain, sig)
            return
        super().handle_exit(sig, frame)  # not serving yet, or a second signal: stop now

    def _begin_drain(self, sig: int) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain_then_exit(sig), name="drain")

    async def _drain_then_exit(self, sig: int) -> None:
        try:
            await self._drain.run(self._app)
        except Exception:
            log.exception("drain failed; shutting down now")
        super().handle_exit(sig, None)


def install(app: FastAPI, grace_s: float, retry_after_s: int) -> Drain:
    """Attach the drain state and its middleware to ``app`` (``create_app`` calls this)."""
    drain = Drain(grace_s, retry_after_s)
    app.state.drain = drain
    app.add_middleware(DrainMiddleware, drain=drain)
    return drain


def serve(app: FastAPI, host: str, port: int, log_level: str = "info") -> None:
    """Run ``app`` under uvicorn with the drain-on-SIGTERM shutdown."""
    drain: Drain = app.state.drain
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            timeout_graceful_shutdown=AFTER_DRAIN_TIMEOUT_S)
    server = DrainingServer(config, app, drain)
    try:
        server.run()
    except SystemExit:
        # uvicorn exits with 3 when start-up fails; end with the reason on one line (the traceback
        # above it is uvicorn's log), so `docker logs` and CI show what to fix last.
        error = getattr(app.state, "start_error", None)
        if server.started or error is None:
            raise
        raise SystemExit(f"megaasr: cannot start: {error}") from None
    if not server.started:
        raise SystemExit(3)
