"""A full disk while writing stress clips or simulation output: a clear error, nothing half-written
reported as done, and a clean resume once there is space again.

The disk is a real small tmpfs when this process may mount one (root in a container with
CAP_SYS_ADMIN; the kernel then answers ENOSPC itself); elsewhere every write through the writers'
``open``/``os.fdopen`` counts against a byte quota and raises ENOSPC when it is used up.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import httpx
import pytest
import soundfile as sf

import service.stress.store as store_module
import simulation.builder as builder_module
from service.config import Settings
from simulation.builder import BuildConfig, DiskFull, build_dataset
from tests.reliability.conftest import wait_for
from tests.server import live_server


class SmallDisk:
    """A folder with little space: ``grow()`` makes room again (remount, or a bigger quota)."""

    def __init__(self, path: Path, size: int, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path, self.size, self.monkeypatch = path, size, monkeypatch
        self.mounted = False
        self.used = 0

    def __enter__(self) -> Self:
        self.path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)],
                               check=False, capture_output=True)
            self.mounted = r.returncode == 0
        if not self.mounted:
            self._patch()
        return self

    def grow(self, size: int) -> None:
        self.size = size
        if self.mounted:
            subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def __exit__(self, *exc) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)

    # -- the fallback: a byte quota on the writers' file objects -------------------------------------
    def _patch(self) -> None:
        disk = self

        class Quota:
            def __init__(self, fh) -> None:
                self._fh = fh

            def write(self, data) -> int:
                if disk.used + len(data) > disk.size:
                    raise OSError(errno.ENOSPC, "No space left on device")
                disk.used += len(data)
                return self._fh.write(data)

            def writelines(self, chunks) -> None:
                for chunk in chunks:
                    self.write(chunk)

            def __getattr__(self, name):
                return getattr(self._fh, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self._fh.close()

        real_fdopen, real_open = os.fdopen, builtins.open

        def fdopen(fd, *a, **k):
            return Quota(real_fdopen(fd, *a, **k))

        def open_(file, mode="r", *a, **k):
            fh = real_open(file, mode, *a, **k)
            return Quota(fh) if str(file).startswith(str(disk.path)) and "w" in mode else fh

        self.monkeypatch.setattr(store_module.os, "fdopen", fdopen)
        self.monkeypatch.setattr(builder_module, "open", open_, raising=False)


@pytest.fixture()
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmallDisk]:
    with SmallDisk(tmp_path / f"disk-{uuid.uuid4().hex[:6]}", 2**20, monkeypatch) as disk:
        yield disk


def tmp_leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.tmp")]


# -- the dataset builder ---------------------------------------------------------------------------
@pytest.fixture()
def manifest(tmp_path: Path, librivox) -> Path:
    rows = [json.dumps({"path": str(path), "text": text}) for path, text in librivox[:4]] * 2
    path = tmp_path / "clean.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_builder_disk_full_stops_clearly_and_resumes(manifest: Path, small_disk: SmallDisk, tmp_path: Path) -> None:
    config = {"seed": 7, "scenarios": ["noise", "far_field", "distortion"], "shard_size": 2}
    reference = build_dataset(manifest, tmp_path / "reference", BuildConfig(**config), progress=False,
                              log=lambda m: None)
    assert reference.complete and reference.rows == 8
    small_disk.grow(400_000)
    out = small_disk.path / "dataset"
    with pytest.raises(DiskFull) as full:
        build_dataset(manifest, out, BuildConfig(**config), progress=False, log=lambda m: None)
    assert full.value.errno == errno.ENOSPC and "run the same command again" in str(full.value)
    assert not (out / "manifest.jsonl").exists()
    assert not tmp_leftovers(out)
    committed = sorted((out / "shards").glob("shard-*.jsonl"))
    assert len(committed) < reference.shards_total
    for shard in committed:  # every committed row is complete and its audio decodes
        for line in shard.read_text().splitlines():
            row = json.loads(line)
            assert sf.info(str(out / row["audio_path"])).frames > 0
    small_disk.grow(64 * 2**20)
    resumed = build_dataset(manifest, out, BuildConfig(**config), progress=False, log=lambda m: None)
    assert resumed.complete and resumed.shards_done_before == len(committed)
    assert (out / "manifest.jsonl").read_text() == (tmp_path / "reference" / "manifest.jsonl").read_text()


# -- stress jobs -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_stress_job_on_a_full_disk_fails_clearly_and_the_next_job_runs(
        tiny_en_dir: Path, small_disk: SmallDisk, librivox) -> None:
    small_disk.grow(300_000)
    settings = Settings(model=str(tiny_en_dir), home=small_disk.path, threads=2)
    clip = librivox[0][0].read_bytes()
    with live_server(settings) as live:
        r = httpx.post(f"{live.url}/v1/stress", files={"file": ("a.wav", clip)}, timeout=120,
                       data={"scenarios": "noise,far_field,distortion", "severities": "0.25,0.5,0.75,1.0",
                             "router": "base"})
        assert r.status_code == 202, r.text
        job_url = f"{live.url}{r.json()['status_url']}"
        assert wait_for(lambda: httpx.get(job_url).json()["status"] not in ("queued", "running"), timeout=300)
        job = httpx.get(job_url).json()
        assert job["status"] == "failed", job["status"]
        assert "disk is full" in job["error"]
        job_dir = small_disk.path / "stress" / job["id"]
        assert not tmp_leftovers(small_disk.path)
        on_disk = json.loads((job_dir / "job.json").read_text())  # complete JSON, never a torn file
        assert on_disk["status"] != "completed"
        for cell in job["results"]:  # every listed result has its whole clip
            wav = httpx.get(f"{live.url}{cell['clip_url']}")
            assert wav.status_code == 200 and sf.info(io.BytesIO(wav.content)).frames > 0
        assert httpx.delete(job_url).status_code == 200  # frees the space
        small_disk.grow(64 * 2**20)
        r = httpx.post(f"{live.url}/v1/stress", files={"file": ("a.wav", clip)}, timeout=120,
                       data={"scenarios": "noise", "severities": "0.5", "router": "base"})
        assert r.status_code == 202, r.text
        next_url = f"{live.url}{r.json()['status_url']}"
        assert wait_for(lambda: httpx.get(next_url).json()["status"] not in ("queued", "running"), timeout=300)
        assert httpx.get(next_url).json()["status"] == "completed"
