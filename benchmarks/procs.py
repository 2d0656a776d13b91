"""Processes the benchmarks drive: engine workers (in-process latency), HTTP servers, RSS sampling.

Why separate processes: each system's peak RSS must be its own, and ours and faster-whisper must
never compute at the same time (they take turns, A/B/A/B, so load from other work on a shared
machine hits both alike).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import psutil

from benchmarks.fw_server import GREEDY, Decoding

ROOT = Path(__file__).resolve().parents[1]


class PeakRss:
    """Samples the resident memory of a process and its children every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self._proc = psutil.Process(pid)
        self._interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                total = self._proc.memory_info().rss
                total += sum(c.memory_info().rss for c in self._proc.children(recursive=True))
            except psutil.Error:
                return
            self.peak = max(self.peak, total)
            self._stop.wait(self._interval)

    def stop(self) -> int:
        """Stop sampling; return the peak in bytes."""
        self._stop.set()
        self._thread.join(timeout=2)
        return self.peak


# -- in-process engines in worker processes -----------------------------------------------------
@dataclass(frozen=True)
class EngineSpec:
    """What a worker loads: ``kind`` "ours" (HF folder) or "faster-whisper" (CT2 folder)."""

    kind: str
    model_dir: str
    compute_type: str
    threads: int
    language: str | None = "en"
    decoding: Decoding = GREEDY


def _worker(spec: EngineSpec, conn) -> None:
    """Load one engine, then answer ``audio -> (text, wall_s, cpu_s)`` until told to stop."""
    if spec.kind == "ours":
        from service.config import Settings
        from service.engines.base import TranscriptionOptions
        from service.engines.embedded import load_transcriber

        # Every other engine setting (e.g. MEGAASR_TRIM_PADDING) comes from the environment, as in serve.
        transcriber = load_transcriber(Path(spec.model_dir), Settings(threads=spec.threads,
                                                                      compute_type=spec.compute_type))
        options = TranscriptionOptions(language=spec.language, beam_size=spec.decoding.beam_size,
                                       best_of=spec.decoding.best_of)

        def run(audio: np.ndarray) -> str:
            return transcriber.transcribe([audio], [options])[0].text
    else:
        from faster_whisper import WhisperModel

        from benchmarks.fw_server import transcribe_options

        model = WhisperModel(spec.model_dir, device="cpu", compute_type=spec.compute_type,
                             cpu_threads=spec.threads)
        kwargs = transcribe_options(spec.language, spec.decoding)

        def run(audio: np.ndarray) -> str:
            segments, _ = model.transcribe(audio, **kwargs)
            return "".join(s.text for s in segments).strip()
    conn.send(("ready", os.getpid()))
    while True:
        audio = conn.recv()
        if audio is None:
            return
        wall, cpu = time.perf_counter(), time.process_time()
        text = run(audio)
        conn.send((text, time.perf_counter() - wall, time.process_time() - cpu))


class EngineWorker:
    """A loaded engine in its own process; ``transcribe`` is synchronous and timed inside it."""

    def __init__(self, spec: EngineSpec) -> None:
        ctx = mp.get_context("spawn")
        self.spec = spec
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker, args=(spec, child), daemon=True)
        self._proc.start()
        status, pid = self._conn.recv()
        assert status == "ready"
        self.rss = PeakRss(pid)

    def transcribe(self, audio: np.ndarray) -> tuple[str, float, float]:
        self._conn.send(audio)
        return self._conn.recv()

    def close(self) -> int:
        """Stop the worker; return its peak RSS in bytes."""
        peak = self.rss.stop()
        self._conn.send(None)
        self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.kill()
        return peak


# -- HTTP servers -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server subprocess, ready when ``ready_path`` answers 200; RSS sampled from then on."""

    def __init__(self, name: str, command: list[str], port: int, env: dict[str, str] | None = None,
                 ready_path: str = "/ready", timeout_s: float = 300.0, log: Path | None = None) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 (lives as long as the server)
        self._proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})},
                                      stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{name} server exited with {self._proc.returncode} (log: {log})")
            try:
                if httpx.get(self.url + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise TimeoutError(f"{name} server not ready after {timeout_s} s (log: {log})")
            time.sleep(0.5)
        self.rss = PeakRss(self._proc.pid)

    def close(self) -> int:
        """Terminate the server; return its peak RSS in bytes (0 if it never became ready)."""
        peak = self.rss.stop() if hasattr(self, "rss") else 0
        self._proc.terminate()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        if hasattr(self._log, "close"):
            self._log.close()
        return peak


def our_server(model: str, compute_type: str, threads: int, port: int, log: Path | None,
               extra_env: dict[str, str] | None = None, decoding: Decoding = GREEDY) -> Server:
    """``megaasr serve`` with the given model, compute type, threads and decoding (everything else default)."""
    command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--model", model,
               "--threads", str(threads), "--compute-type", compute_type, *decoding.flags()]
    return Server("ours", command, port, env=extra_env, log=log)


def fw_server(ct2_dir: Path, compute_type: str, threads: int, port: int, log: Path | None,
              decoding: Decoding = GREEDY) -> Server:
    """The minimal faster-whisper server of :mod:`benchmarks.fw_server`."""
    command = [sys.executable, "-m", "benchmarks.fw_server", "--model-dir", str(ct2_dir), "--port", str(port),
               "--threads", str(threads), "--compute-type", compute_type, *decoding.flags()]
    return Server("faster-whisper", command, port, log=log)
