"""Engine supervision: a failed decode fails one request, a broken engine is restarted.

Works for any :class:`Engine` (embedded, vLLM, ...) because it only wraps the contract. What it
does, and why:

* An exception from decoding becomes an :class:`EngineFailure` (500, ``engine_error``) for that
  request alone: the client gets a clear error of its own kind instead of a generic 500, and the
  micro-batcher has already re-run the other requests of a failed batch one by one.
* An out-of-memory (``MemoryError``, ``torch.OutOfMemoryError``, CUDA "out of memory") is fatal:
  the engine's state can no longer be trusted, so it answers :class:`EngineOutOfMemory` (503 with
  Retry-After) and the engine is restarted. So is a run of ``engine_max_consecutive_failures``
  failed requests with no success between them.
* While restarting, :attr:`ready` is false (``/ready`` answers 503, load balancers stop sending
  work) and new requests get :class:`EngineRestarting` (503 with Retry-After) instead of queueing.
  Requests already inside the engine get ``engine_restart_drain_s`` to finish first. The restart
  is ``close()`` then ``start()``, retried with exponential backoff until it works.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from service.config import Settings
from service.engines.base import Engine, ModelInfo, TranscriptionOptions, TranscriptionResult
from service.errors import EngineFailure, EngineOutOfMemory, EngineRestarting, ServiceError

log = logging.getLogger(__name__)


def is_out_of_memory(exc: BaseException) -> bool:
    """True when ``exc`` or anything in its cause/context chain is an out-of-memory error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MemoryError) or type(current).__name__ == "OutOfMemoryError":
            return True
        if isinstance(current, RuntimeError) and "out of memory" in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False


def root_cause(exc: BaseException) -> BaseException:
    """The original exception behind an :class:`EngineFailure` wrapper, for messages and logs."""
    return exc.__cause__ if isinstance(exc, EngineFailure) and exc.__cause__ is not None else exc


class SupervisedEngine(Engine):
    """Delegates to ``inner``; turns decode failures into clear errors and restarts a broken engine."""

    def __init__(self, inner: Engine, settings: Settings,
                 on_ready_change: Callable[[bool], Any] | None = None) -> None:
        self.inner = inner
        self._settings = settings
        self._on_ready_change = on_ready_change
        self._restart_task: asyncio.Task | None = None
        self._closed = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.consecutive_failures = 0
        self.restarts = 0
        self.failures = 0

    # -- the Engine contract -------------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        return self.inner.info

    @property
    def ready(self) -> bool:
        return not self.restarting and not self._closed and self.inner.ready

    @property
    def restarting(self) -> bool:
        return self._restart_task is not None and not self._restart_task.done()

    @property
    def batch_observer(self) -> Callable[[int], None] | None:  # type: ignore[override]
        return getattr(self.inner, "batch_observer", None)

    @batch_observer.setter
    def batch_observer(self, value: Callable[[int], None] | None) -> None:
        self.inner.batch_observer = value

    @property
    def vocabulary(self) -> Any:
        """The inner engine's vocabulary; while it restarts, a 503 with Retry-After (not a bare 503)."""
        if self.restarting:
            raise EngineRestarting("The engine failed and is restarting; retry shortly.",
                                   headers={"Retry-After": str(self._retry_after())})
        return self.inner.vocabulary

    def __getattr__(self, name: str) -> Any:
        # Engine-specific extras (vocabulary, load_seconds, ...) come from the inner engine.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def start(self) -> None:
        self._closed = False
        await self.inner.start()
        self._notify()

    async def close(self) -> None:
        self._closed = True
        if self._restart_task is not None:
            self._restart_task.cancel()
            await asyncio.gather(self._restart_task, return_exceptions=True)
            self._restart_task = None
        await self.inner.close()
        self._notify()

    def queue_depth(self) -> int:
        return self.inner.queue_depth()

    async def transcribe(self, audios: list[np.ndarray],
                         options: list[TranscriptionOptions]) -> list[TranscriptionResult]:
        if self.restarting:
            raise EngineRestarting("The engine failed and is restarting; retry shortly.",
                                   headers={"Retry-After": str(self._retry_after())})
        self._in_flight += 1
        self._idle.clear()
        try:
            results = await self.inner.transcribe(audios, options)
        except EngineFailure as exc:
            raise self._failed(exc) from root_cause(exc)
        except ServiceError:
            raise  # the client's fault, overload or shutdown: not an engine failure
        except Exception as exc:
            raise self._failed(exc) from exc
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        self.consecutive_failures = 0
        return results

    # -- failure handling ----------------------------------------------------------------------------
    def _failed(self, exc: BaseException) -> EngineFailure:
        """Count the failure, start a restart if the engine looks broken, and say what happened."""
        cause = root_cause(exc)
        self.failures += 1
        self.consecutive_failures += 1
        fatal = is_out_of_memory(exc)
        limit = self._settings.engine_max_consecutive_failures
        log.error("engine failure (%s, %d in a row)%s", type(cause).__name__, self.consecutive_failures,
                  ": fatal" if fatal else "", exc_info=cause)
        if fatal or self.consecutive_failures >= limit:
            reason = "out of memory" if fatal else f"{self.consecutive_failures} failures in a row"
            self._schedule_restart(reason)
        if fatal:
            return EngineOutOfMemory("The engine ran out of memory on this request and is restarting; "
                                     "retry shortly, or send shorter audio.",
                                     headers={"Retry-After": str(self._retry_after())})
        if isinstance(exc, EngineFailure) and exc.__cause__ is None:
            return exc
        return EngineFailure(f"Decoding failed inside the engine ({type(cause).__name__}); this request "
                             "was not transcribed. Other requests are not affected.")

    def _retry_after(self) -> int:
        return max(self._settings.retry_after_s, int(self._settings.engine_restart_backoff_s) + 1)

    def _schedule_restart(self, reason: str) -> None:
        if self.restarting or self._closed:
            return
        log.warning("restarting the engine: %s", reason)
        self._restart_task = asyncio.get_running_loop().create_task(self._restart(), name="engine-restart")
        self._notify()

    async def _restart(self) -> None:
        """Let in-flight requests finish (bounded), then close and start again with backoff."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=self._settings.engine_restart_drain_s)
        except TimeoutError:
            log.warning("engine restart: %d requests still in flight after %.0f s; they will fail",
                        self._in_flight, self._settings.engine_restart_drain_s)
        delay = self._settings.engine_restart_backoff_s
        while not self._closed:
            try:
                await self.inner.close()
            except Exception:
                log.exception("engine restart: close failed (starting anyway)")
            try:
                await self.inner.start()
            except Exception:
                log.exception("engine restart failed; next try in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.engine_restart_max_backoff_s)
                continue
            break
        self.restarts += 1
        self.consecutive_failures = 0
        log.warning("engine restarted (%d restarts so far)", self.restarts)
        # The task is still "running" while this runs; report ready once it has finished.
        asyncio.get_running_loop().call_soon(self._notify)

    def _notify(self) -> None:
        if self._on_ready_change is not None:
            self._on_ready_change(self.ready)
