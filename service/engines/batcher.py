"""A bounded micro-batching queue in front of a synchronous batch function.

Concurrent requests are gathered for up to ``max_wait_ms`` or ``max_batch`` items, whichever comes
first, and handed to one worker thread (torch already uses every core inside one call, so more
threads would only fight). The queue is bounded: when full, :class:`Overloaded` is raised at once
instead of letting memory grow. A request whose caller has gone away (cancelled future) is skipped.
When a batch fails, each of its requests is decoded again on its own, so one bad request fails
alone and the others are still answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from service.errors import EngineFailure, Overloaded, Unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Item(Generic[T]):
    payload: T
    future: asyncio.Future
    enqueued: float


class MicroBatcher(Generic[T, R]):
    def __init__(self, fn: Callable[[list[T]], list[R]], *, max_batch: int, max_wait_ms: float,
                 max_queue: int, retry_after_s: int = 1,
                 on_batch: Callable[[int, float], Any] | None = None) -> None:
        self._fn = fn
        self._max_batch = max_batch
        self._max_wait = max_wait_ms / 1000.0
        self._retry_after = retry_after_s
        self._queue: asyncio.Queue[_Item[T]] = asyncio.Queue(maxsize=max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._worker: asyncio.Task | None = None
        self._on_batch = on_batch
        self.in_flight = 0
        self._current: list[_Item[T]] = []

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def submit(self, payload: T) -> R:
        if self._worker is None:
            raise Unavailable("The engine is not started.")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Item(payload, future, time.monotonic()))
        except asyncio.QueueFull:
            raise Overloaded("The transcription queue is full; retry shortly.",
                             headers={"Retry-After": str(self._retry_after)}) from None
        return await future

    def depth(self) -> int:
        return self._queue.qsize() + self.in_flight

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        for item in self._current:  # the batch being decoded when the worker was cancelled
            if not item.future.done():
                item.future.set_exception(Unavailable("The engine is shutting down."))
        self._current = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(Unavailable("The engine is shutting down."))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            deadline = loop.time() + self._max_wait
            while len(batch) < self._max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except TimeoutError:
                    break
            batch = [item for item in batch if not item.future.done()]
            if not batch:
                continue
            self.in_flight = len(batch)
            self._current = batch
            started = time.monotonic()
            try:
                await self._decode(loop, batch)
            finally:
                self.in_flight = 0
                self._current = []
            if self._on_batch is not None:
                self._on_batch(len(batch), time.monotonic() - started)

    async def _decode(self, loop: asyncio.AbstractEventLoop, batch: list[_Item[T]]) -> None:
        """Decode ``batch``; if it fails, decode its items one by one so only the bad ones fail."""
        try:
            results = await loop.run_in_executor(self._executor, self._fn, [i.payload for i in batch])
            if len(results) != len(batch):  # a short answer would leave requests waiting forever
                raise RuntimeError(f"the engine returned {len(results)} results for {len(batch)} inputs")
        except Exception as exc:  # one failed batch must not kill the worker or other batches
            if len(batch) > 1:
                log.warning("engine batch of %d failed (%s: %s); decoding its items one by one",
                            len(batch), type(exc).__name__, exc)
                for item in batch:
                    if not item.future.done():
                        await self._decode(loop, [item])
                return
            log.exception("engine decode failed")
            error = EngineFailure(f"Decoding failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc  # the supervisor tells fatal errors (out of memory) from others
            if not batch[0].future.done():
                batch[0].future.set_exception(error)
        else:
            for item, result in zip(batch, results):
                if not item.future.done():
                    item.future.set_result(result)
