"""The OpenAI-compatible endpoint against a real uvicorn server with the real tiny.en model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from service.scoring import corpus_score

pytestmark = pytest.mark.slow


def model_id(server: str) -> str:
    return httpx.get(f"{server}/v1/models").json()["data"][0]["id"]


def test_openai_client_transcribes_real_speech(server: str, librivox: list[tuple[Path, str]],
                                               clean_wer_bound: float) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused")
    pairs = []
    for path, ref in librivox:
        with open(path, "rb") as fh:
            result = client.audio.transcriptions.create(model=model_id(server), file=fh)
        pairs.append((ref, result.text))
    assert corpus_score(pairs).wer <= clean_wer_bound


def test_openai_client_verbose_json_and_alias(server: str, librivox: list[tuple[Path, str]]) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused")
    path, _ = librivox[0]
    with open(path, "rb") as fh:
        result = client.audio.transcriptions.create(model="whisper-1", file=fh, response_format="verbose_json",
                                                    timestamp_granularities=["segment"])
    assert result.language == "english"
    assert result.duration == pytest.approx(7.1, abs=0.05)
    assert result.segments and result.segments[0].start >= 0
    assert result.segments[-1].end <= result.duration + 0.01
    assert "dashwood" in result.text.lower()


def test_openai_client_streaming(server: str, librivox: list[tuple[Path, str]]) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused")
    path, _ = librivox[1]
    with open(path, "rb") as fh:
        events = list(client.audio.transcriptions.create(model=model_id(server), file=fh, stream=True))
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and "transcript.text.delta" in kinds
    deltas = "".join(e.delta for e in events if e.type == "transcript.text.delta")
    assert deltas.strip() == events[-1].text.strip()
    assert "young man" in events[-1].text.lower()


@pytest.mark.parametrize("fmt,check", [
    ("text", lambda body: "dashwood" in body.lower()),
    ("srt", lambda body: body.startswith("1\n00:00:0") and " --> " in body),
    ("vtt", lambda body: body.startswith("WEBVTT\n\n00:00:0")),
    ("json", lambda body: "dashwood" in json.loads(body)["text"].lower()),
])
def test_response_formats(server: str, librivox, fmt: str, check) -> None:
    path, _ = librivox[0]
    r = httpx.post(f"{server}/v1/audio/transcriptions", data={"model": model_id(server), "response_format": fmt},
                   files={"file": ("a.wav", path.read_bytes())}, timeout=60)
    assert r.status_code == 200, r.text
    assert check(r.text)


def test_any_rate_and_channels(server: str, librivox) -> None:
    path, _ = librivox[1]
    x, sr = sf.read(path, dtype="float32")
    import soxr

    y = soxr.resample(x, sr, 44_100)
    stereo = np.stack([y, y], axis=1)
    buf = io.BytesIO()
    sf.write(buf, stereo, 44_100, format="OGG", subtype="VORBIS")
    r = httpx.post(f"{server}/v1/audio/transcriptions", data={"model": model_id(server)},
                   files={"file": ("a.ogg", buf.getvalue())}, timeout=60)
    assert r.status_code == 200, r.text
    assert "young man" in r.json()["text"].lower()


def test_models_health_ready(server: str) -> None:
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server}/ready").json() == {"ready": True}
    data = httpx.get(f"{server}/v1/models").json()
    assert data["object"] == "list" and data["data"][0]["object"] == "model"
    assert httpx.get(f"{server}/docs").status_code == 200
    assert httpx.get(f"{server}/openapi.json").json()["paths"]["/v1/audio/transcriptions"]


def test_without_a_checkpoint_routing_says_so(server: str, librivox) -> None:
    """No robust model: /v1/models says routing is off, auto means base, robust is a clear 400."""
    card = httpx.get(f"{server}/v1/models").json()["data"][0]
    assert card["adapters"] == ["base"] and card["router"].startswith("untrained: no --checkpoint")
    path = librivox[0][0]
    for mode, status in (("auto", 200), ("robust", 400)):
        with path.open("rb") as f:
            r = httpx.post(f"{server}/v1/audio/transcriptions", timeout=120, files={"file": (path.name, f)},
                           data={"model": "whisper-1", "response_format": "verbose_json", "router": mode})
        assert r.status_code == status, r.text
        if status == 200:
            assert r.json()["router"]["adapter"] == "base" and r.json()["router"].get("p_degraded") is None
        else:
            assert r.json()["error"]["code"] == "adapter_not_loaded"
