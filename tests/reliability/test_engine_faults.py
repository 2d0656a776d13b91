"""Engine faults inside a real loaded engine: one bad request fails alone, a broken engine restarts.

Faults are injected by replacing the loaded Transcriber's ``transcribe`` (the real model stays
loaded and decodes everything else), and, for restart tests, by gating the inner engine's ``start``.
A restart loads a fresh Transcriber, which drops the injected fault, as a real restart would.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.audio import decode_audio
from service.config import Settings
from service.engines.base import TranscriptionOptions, TranscriptionResult
from service.engines.factory import build_engine
from service.engines.supervisor import SupervisedEngine, is_out_of_memory
from service.errors import EngineFailure, EngineOutOfMemory, EngineRestarting
from tests.reliability.conftest import wait_for
from tests.server import live_server

pytestmark = pytest.mark.slow
OPTIONS = TranscriptionOptions(temperatures=(0.0,))


@pytest.fixture(scope="module")
def clips(librivox) -> list[np.ndarray]:
    return [decode_audio(p.read_bytes(), max_duration_s=60).samples for p, _ in librivox[:3]]


@pytest.fixture()
def settings(tiny_en_dir: Path, tmp_path: Path) -> Settings:
    return Settings(model=str(tiny_en_dir), home=tmp_path, threads=2, max_batch_size=8, batch_wait_ms=300,
                    engine_max_consecutive_failures=2, engine_restart_backoff_s=0.05)


def inject(engine: SupervisedEngine, poison_len: int | None, error: type[BaseException], times: int = 10**9,
           batch_sizes: list[int] | None = None) -> None:
    """Make the loaded transcriber raise ``error`` for batches holding a clip of ``poison_len`` samples
    (every batch when None), at most ``times`` times."""
    transcriber = engine.inner._transcriber
    original = transcriber.transcribe
    left = [times]

    def faulty(audios, options):
        if batch_sizes is not None:
            batch_sizes.append(len(audios))
        if left[0] > 0 and (poison_len is None or any(len(a) == poison_len for a in audios)):
            left[0] -= 1
            raise error("injected fault")
        return original(audios, options)

    transcriber.transcribe = faulty


def gate_start(engine: SupervisedEngine, gate: threading.Event, fail_first: int = 0) -> list[int]:
    """Hold the inner engine's restart until ``gate`` is set; fail its first ``fail_first`` starts."""
    original = engine.inner.start
    calls = [0]

    async def gated() -> None:
        calls[0] += 1
        await asyncio.to_thread(gate.wait)
        if calls[0] <= fail_first:
            raise RuntimeError("injected start failure")
        await original()

    engine.inner.start = gated
    return calls


async def until_ready(engine: SupervisedEngine, timeout: float = 120) -> None:
    async def poll() -> None:
        while not engine.ready:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(poll(), timeout)


@pytest.mark.parametrize("error", [ValueError, MemoryError])
def test_a_bad_request_fails_alone_in_its_batch(settings: Settings, clips, error) -> None:
    async def run() -> tuple[list, list[int], SupervisedEngine]:
        engine = SupervisedEngine(build_engine(settings), settings)
        await engine.start()
        sizes: list[int] = []
        poison = clips[0][:16001]
        inject(engine, len(poison), error, batch_sizes=sizes)
        try:
            outcomes = await asyncio.gather(
                *(engine.transcribe([a], [OPTIONS]) for a in [*clips, poison]), return_exceptions=True)
            if error is MemoryError:
                await until_ready(engine)
                after = await engine.transcribe([clips[1]], [OPTIONS])
                outcomes.append(after)
        finally:
            await engine.close()
        return outcomes, sizes, engine

    outcomes, sizes, engine = asyncio.run(run())
    assert max(sizes) > 1, "the poisoned request was never batched with others"
    *good, bad = outcomes[:4]
    for result in good:
        assert isinstance(result, list) and isinstance(result[0], TranscriptionResult), result
        assert len(result[0].text.split()) >= 3
    assert isinstance(bad, EngineFailure), bad
    if error is MemoryError:
        assert isinstance(bad, EngineOutOfMemory) and bad.status_code == 503
        assert int(bad.headers["Retry-After"]) >= 1
        assert engine.restarts == 1
        assert outcomes[4][0].text.strip()
    else:
        assert bad.status_code == 500 and bad.code == "engine_error" and bad.error_type == "server_error"
        assert engine.restarts == 0


def test_out_of_memory_marks_not_ready_restarts_and_serves_again(settings: Settings, clips) -> None:
    async def run() -> None:
        engine = SupervisedEngine(build_engine(settings), settings)
        states: list[bool] = []
        engine._on_ready_change = states.append
        await engine.start()
        first = engine.inner._transcriber
        inject(engine, None, MemoryError, times=1)
        gate = threading.Event()
        gate_start(engine, gate)
        try:
            with pytest.raises(EngineOutOfMemory):
                await engine.transcribe([clips[0]], [OPTIONS])
            assert not engine.ready and engine.restarting
            with pytest.raises(EngineRestarting) as waiting:
                await engine.transcribe([clips[1]], [OPTIONS])
            assert waiting.value.status_code == 503 and int(waiting.value.headers["Retry-After"]) >= 1
            gate.set()
            await until_ready(engine)
            assert engine.inner._transcriber is not first
            result = await engine.transcribe([clips[1]], [OPTIONS])
            assert result[0].text.strip()
            assert engine.restarts == 1 and engine.consecutive_failures == 0
            await asyncio.sleep(0)
            assert states[0] is True and False in states and states[-1] is True
        finally:
            gate.set()
            await engine.close()

    asyncio.run(run())


def test_repeated_failures_restart_with_backoff_until_start_works(settings: Settings, clips) -> None:
    async def run() -> None:
        engine = SupervisedEngine(build_engine(settings), settings)
        await engine.start()
        inject(engine, None, ValueError)  # every decode fails until the engine is rebuilt
        gate = threading.Event()
        gate.set()
        calls = gate_start(engine, gate, fail_first=2)
        try:
            for _ in range(settings.engine_max_consecutive_failures):
                with pytest.raises(EngineFailure) as failed:
                    await engine.transcribe([clips[0]], [OPTIONS])
                assert failed.value.status_code == 500
            assert engine.restarting
            await until_ready(engine)
            assert calls[0] == 3  # two failed starts, retried with backoff, then a good one
            result = await engine.transcribe([clips[2]], [OPTIONS])
            assert result[0].text.strip()
        finally:
            await engine.close()

    asyncio.run(run())


def test_out_of_memory_detection() -> None:
    class OutOfMemoryError(RuntimeError):  # the name torch.OutOfMemoryError has
        pass

    wrapped = EngineFailure("x")
    wrapped.__cause__ = OutOfMemoryError("CUDA")
    assert is_out_of_memory(wrapped)
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(ValueError("shape mismatch"))
    assert not is_out_of_memory(EngineFailure("Decoding failed: ValueError"))


def test_api_out_of_memory_is_a_clear_503_and_ready_follows_the_engine(settings: Settings, librivox) -> None:
    content = librivox[1][0].read_bytes()
    with live_server(settings) as live:
        engine: SupervisedEngine = live.engine
        inject(engine, None, MemoryError, times=1)
        gate = threading.Event()
        gate_start(engine, gate)
        try:
            r = httpx.post(f"{live.url}/v1/audio/transcriptions", data={"model": "whisper-1"},
                           files={"file": ("a.wav", content)}, timeout=120)
            assert r.status_code == 503, r.text
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["error"] == {"message": r.json()["error"]["message"], "type": "server_error",
                                         "param": None, "code": "engine_out_of_memory"}
            assert httpx.get(f"{live.url}/ready").status_code == 503
            assert "megaasr_engine_ready 0.0" in httpx.get(f"{live.url}/metrics").text
            again = httpx.post(f"{live.url}/v1/audio/transcriptions", data={"model": "whisper-1"},
                               files={"file": ("a.wav", content)}, timeout=120)
            assert again.status_code == 503 and "Retry-After" in again.headers
        finally:
            gate.set()
        assert wait_for(lambda: httpx.get(f"{live.url}/ready").status_code == 200, timeout=120)
        assert "megaasr_engine_ready 1.0" in httpx.get(f"{live.url}/metrics").text
        ok = httpx.post(f"{live.url}/v1/audio/transcriptions", data={"model": "whisper-1"},
                        files={"file": ("a.wav", content)}, timeout=120)
        assert ok.status_code == 200 and ok.json()["text"].strip()
