"""A real uvicorn server with the tiny.en model and small stress limits, plus job helpers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.config import Settings
from tests.server import running_server

#: Small enough that a too-big request is easy to build, big enough for every test's job.
MAX_CELLS = 12
MAX_AUDIO_S = 10.0


@pytest.fixture(scope="session")
def stress_settings(tiny_en_dir: Path, tmp_path_factory) -> Settings:
    return Settings(model=str(tiny_en_dir), home=tmp_path_factory.mktemp("stress_home"), threads=2,
                    max_batch_size=4, batch_wait_ms=20, max_queue=8, stress_max_jobs=1,
                    stress_max_cells=MAX_CELLS, stress_max_audio_s=MAX_AUDIO_S, stress_concurrency=2)


@pytest.fixture(scope="session")
def stress_server(stress_settings: Settings) -> Iterator[str]:
    with running_server(stress_settings) as url:
        yield url


@pytest.fixture(scope="session")
def speech(librivox: list[tuple[Path, str]]) -> tuple[bytes, str]:
    """The shortest LibriVox utterance (3 s, 'he was not an ill disposed young man') and its text."""
    path, text = min(librivox, key=lambda pair: pair[0].stat().st_size)
    return path.read_bytes(), text


@pytest.fixture
def jobs(stress_server: str) -> Iterator[list[str]]:
    """Ids of jobs a test starts; any still running afterwards is cancelled (the server allows one)."""
    ids: list[str] = []
    yield ids
    for job_id in ids:
        job = httpx.get(f"{stress_server}/v1/stress/{job_id}", timeout=30)
        if job.status_code == 200 and job.json()["status"] in ("queued", "running"):
            httpx.delete(f"{stress_server}/v1/stress/{job_id}", timeout=60)


def start_job(server: str, audio: bytes, ids: list[str] | None = None, **fields) -> httpx.Response:
    r = httpx.post(f"{server}/v1/stress", data=fields, files={"file": ("speech.wav", audio)}, timeout=60)
    if r.status_code == 202 and ids is not None:
        ids.append(r.json()["id"])
    return r


def wait_for(server: str, job_id: str, timeout: float = 300.0) -> tuple[dict, list[int]]:
    """Poll until the job ends; also return every ``done`` count seen on the way."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{server}/v1/stress/{job_id}", timeout=30).json()
        seen.append(job["progress"]["done"])
        if job["status"] not in ("queued", "running"):
            return job, seen
        assert time.monotonic() < deadline, f"job still {job['status']} after {timeout} s"
        time.sleep(0.2)
