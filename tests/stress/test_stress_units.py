"""Fast tests without a model: request parsing, atomic persistence and restart, retention, report
escaping, and the robust/routed paths with a stub engine that has a robust adapter."""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.state import ServiceState
from service.config import Settings
from service.engines.base import Engine, ModelInfo, TranscriptionOptions, TranscriptionResult
from service.engines.embedded import EmbeddedEngine
from service.errors import InvalidRequest
from service.metrics import Metrics
from service.stress.jobs import StressJobs
from service.stress.plan import check_job_size, parse_scenarios, parse_severities, severity_key
from service.stress.report import render_report
from service.stress.schemas import Progress, StressJob, StressRequestEcho
from service.stress.store import JobStore


def echo(**overrides) -> StressRequestEcho:
    fields = {"scenarios": ["noise"], "severities": [0.5], "seed": 0, "model": "m", "router": "auto",
              "paths": ["base"], "language": None, "audio_duration_s": 1.0, "filename": "a.wav",
              "reference_source": "user"}
    return StressRequestEcho(**{**fields, **overrides})


def job(job_id: str = "stress_" + "a" * 32, status: str = "running", **overrides) -> StressJob:
    return StressJob(id=job_id, status=status, created_at=time.time(), progress=Progress(done=0, total=1),
                     request=echo(), report_url=f"/v1/stress/{job_id}/report.html", **overrides)


# -- parsing -------------------------------------------------------------------------------------
def test_scenarios_accept_groups_aliases_commas_and_repeats() -> None:
    assert len(parse_scenarios(None)) == 54
    assert parse_scenarios(["doubles"])[:1] == ["barrier_crosstalk"]
    assert parse_scenarios(["echo, obstructed", "noise", "strong_echo"]) == ["strong_echo", "barrier",
                                                                             "noise"]
    with pytest.raises(InvalidRequest, match="thunder"):
        parse_scenarios(["noise,thunder"])


def test_severities_default_dedupe_and_bounds() -> None:
    assert parse_severities(None) == [0.25, 0.5, 0.75, 1.0]
    assert parse_severities(["1", "0.5,1.0", " 0.50 "]) == [1.0, 0.5]
    for bad in ("-0.1", "1.01", "inf", "x"):
        with pytest.raises(InvalidRequest):
            parse_severities([bad])
    assert [severity_key(s) for s in (0.25, 1.0, 0.0, 0.333333)] == ["0.25", "1", "0", "0.333333"]


def test_job_size_limit_names_the_limit() -> None:
    check_job_size(["a"] * 3, [0.5] * 4, 12)
    with pytest.raises(InvalidRequest, match="limit of 11 cells"):
        check_job_size(["a"] * 3, [0.5] * 4, 11)


# -- persistence ---------------------------------------------------------------------------------
def test_store_round_trip_and_garbage_is_cleaned(tmp_path) -> None:
    store = JobStore(tmp_path)
    j = job()
    store.save_job(j.id, j.model_dump_json().encode())
    store.save_clip(j.id, "noise", 0.5, b"RIFF")
    assert store.clip_path(j.id, "noise", 0.5).read_bytes() == b"RIFF"
    (tmp_path / j.id / ".job.json.123.tmp").write_text("half")  # a write cut short by a crash
    broken = tmp_path / ("stress_" + "b" * 32)
    broken.mkdir()
    (broken / "job.json").write_text('{"id": "stress_')  # never renamed into place in practice
    loaded = store.load_all()
    assert [x.id for x in loaded] == [j.id] and loaded[0] == j
    assert not (tmp_path / j.id / ".job.json.123.tmp").exists() and not broken.exists()
    with pytest.raises(ValueError):
        store.job_dir("../../etc")


def _manager(tmp_path, **settings) -> StressJobs:
    s = Settings(home=tmp_path, **settings)
    # The job manager never decodes here: an engine that is built but never started is enough.
    idle_engine = EmbeddedEngine(tmp_path / "no-model", "idle", s)
    return StressJobs(ServiceState(s, engine=idle_engine, metrics=Metrics()))


def test_a_job_running_at_a_crash_is_interrupted_on_start(tmp_path) -> None:
    running = job()
    JobStore(tmp_path / "stress").save_job(running.id, running.model_dump_json().encode())

    async def go() -> StressJob:
        manager = _manager(tmp_path)
        await manager.start()
        try:
            return manager.get(running.id)
        finally:
            await manager.close()

    loaded = asyncio.run(go())
    assert loaded.status == "interrupted" and loaded.finished_at is not None and "partial" in loaded.error
    on_disk = JobStore(tmp_path / "stress").load_all()[0]
    assert on_disk.status == "interrupted"


def test_retention_by_age_and_count(tmp_path) -> None:
    store = JobStore(tmp_path / "stress")
    now = time.time()
    ages = {"c" * 32: 10_000, "d" * 32: 50, "e" * 32: 40, "f" * 32: 30}
    for suffix, age in ages.items():
        j = job("stress_" + suffix, status="completed", finished_at=now - age)
        store.save_job(j.id, j.model_dump_json().encode())

    async def go() -> list[str]:
        manager = _manager(tmp_path, stress_retention_s=3600, stress_max_stored_jobs=2)
        await manager.start()
        await manager.close()
        return sorted(manager._jobs)

    assert asyncio.run(go()) == ["stress_" + "e" * 32, "stress_" + "f" * 32]
    kept = ["stress_" + "e" * 32, "stress_" + "f" * 32]
    assert sorted(p.name for p in (tmp_path / "stress").iterdir()) == kept


# -- report --------------------------------------------------------------------------------------
def test_report_escapes_user_and_model_text() -> None:
    evil = "<script>alert('x')</script>"
    j = job(reference=evil, error=evil)
    j.request.filename = evil
    page = render_report(j)
    assert "<script>" not in page and "&lt;script&gt;" in page


# -- robust and routed paths with a stub engine --------------------------------------------------
class StubEngine(Engine):
    """Answers instantly; the robust adapter hears the words, the base model only half of them."""

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(id="stub", path="/stub", multilingual=False, adapters=("base", "robust"))

    @property
    def ready(self) -> bool:
        return True

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def transcribe(self, audios: list[np.ndarray],
                         options: list[TranscriptionOptions]) -> list[TranscriptionResult]:
        words = "alpha bravo charlie delta"
        return [TranscriptionResult(text=words if o.adapter == "robust" else "alpha bravo", segments=[],
                                    language="en", duration=len(a) / 16000, adapter=o.adapter)
                for a, o in zip(audios, options)]


def _wav(seconds: float = 1.0) -> bytes:
    t = np.arange(int(16000 * seconds)) / 16000
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


def test_robust_and_routed_paths_are_compared(tmp_path) -> None:
    app = create_app(Settings(home=tmp_path), engine=StubEngine())
    with TestClient(app) as client:
        fields = {"scenarios": "noise", "severities": "0.5", "reference": "alpha bravo charlie delta"}
        r = client.post("/v1/stress", data=fields, files={"file": ("a.wav", _wav())})
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 30
        while (body := client.get(f"/v1/stress/{r.json()['id']}").json())["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert body["status"] == "completed", body["error"]
        assert body["request"]["paths"] == ["base", "robust", "routed"]
        cell = body["results"][0]["paths"]
        assert cell["base"]["wer"] == 0.5 and cell["robust"]["wer"] == 0.0
        assert cell["base"]["omission"] and not cell["robust"]["omission"]
        assert cell["robust"]["router"]["adapter"] == "robust" and cell["routed"]["router"]["mode"] == "auto"
        wer = body["summary"]["scenarios"][0]["wer"]
        assert wer == {"base": 0.5, "robust": 0.0, "routed": cell["routed"]["wer"]}
        only_base = client.post("/v1/stress", files={"file": ("a.wav", _wav())},
                                data={"scenarios": "noise", "severities": "0.5", "router": "base"})
        assert only_base.status_code == 202
        assert client.get(f"/v1/stress/{only_base.json()['id']}").json()["request"]["paths"] == ["base"]
        assert "WER robust" in client.get(f"/v1/stress/{r.json()['id']}/report.html").text
