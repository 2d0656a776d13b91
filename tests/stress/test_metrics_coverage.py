"""Every metric issue 5 names is exported and moves after real traffic of each kind.

One file transcription, one realtime session streamed at real-time pace, one stress job, then
``/metrics`` is parsed with prometheus-client's own parser.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.server import metric_samples
from tests.streaming.test_realtime_ws import pcm24k, stream_utterances
from tests.stress.conftest import start_job, wait_for

pytestmark = pytest.mark.slow

#: metric family (as the parser names it) -> the sample that must be positive after the traffic
MOVING = {
    "megaasr_requests": "megaasr_requests_total",
    "megaasr_request_latency_seconds": "megaasr_request_latency_seconds_count",
    "megaasr_audio_seconds": "megaasr_audio_seconds_total",
    "megaasr_real_time_factor": "megaasr_real_time_factor_count",
    "megaasr_batch_size": "megaasr_batch_size_count",
    "megaasr_router_decisions": "megaasr_router_decisions_total",
    "megaasr_websocket_sessions": "megaasr_websocket_sessions_total",
    "megaasr_partial_latency_seconds": "megaasr_partial_latency_seconds_count",
    "megaasr_stress_jobs": "megaasr_stress_jobs_total",
    "megaasr_stress_wer": "megaasr_stress_wer",
    "megaasr_model_load_seconds": "megaasr_model_load_seconds",
    "megaasr_engine_ready": "megaasr_engine_ready",
}
#: gauges that exist and may legitimately read zero when idle
PRESENT = ("megaasr_queue_depth", "megaasr_websocket_sessions_active")


def _scrape(url: str) -> dict[str, float]:
    """Every sample name and family name, summed over labels."""
    return {name: sum(values.values()) for name, values in metric_samples(url).items()}


def test_every_named_metric_moves(stress_server: str, speech, jobs, librivox: list[tuple[Path, str]]) -> None:
    audio, text = speech
    before = _scrape(stress_server)
    r = httpx.post(f"{stress_server}/v1/audio/transcriptions", files={"file": ("a.wav", audio)},
                   data={"model": "whisper-1"}, timeout=120)
    assert r.status_code == 200, r.text
    ws_url = stress_server.replace("http://", "ws://") + "/v1/realtime"
    events = asyncio.run(stream_utterances(ws_url, [pcm24k(librivox[0][0])]))
    assert any(e["type"].endswith("transcription.delta") for _, e in events)
    job = start_job(stress_server, audio, jobs, reference=text, scenarios="noise", severities="0.5")
    assert job.status_code == 202, job.text
    assert wait_for(stress_server, job.json()["id"])[0]["status"] == "completed"

    after = _scrape(stress_server)
    for family in PRESENT:
        assert family in after, f"{family} is not exported"
    for family, sample in MOVING.items():
        assert family in after, f"{family} is not exported"
        assert after.get(sample, 0.0) > 0, f"{sample} did not move"
    for counter in ("megaasr_requests_total", "megaasr_audio_seconds_total", "megaasr_batch_size_count",
                    "megaasr_websocket_sessions_total", "megaasr_stress_jobs_total"):
        assert after[counter] > before.get(counter, 0.0), counter
