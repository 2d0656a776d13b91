"""What only the vLLM engine does: routing to the robust vLLM model, vLLM's limits, fail-fast start-up."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.server import free_port, running_server
from tests.vllm.conftest import BASE_NAME, VllmServer, vllm_settings

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


def transcribe(url: str, path: Path, **fields) -> httpx.Response:
    with path.open("rb") as f:
        return httpx.post(f"{url}/v1/audio/transcriptions", timeout=120, files={"file": (path.name, f)},
                          data={"model": "whisper-1", "response_format": "verbose_json", **fields})


def test_routed_requests_reach_the_robust_vllm_model(routed_server: str, vllm_servers: dict[str, VllmServer],
                                                     librivox) -> None:
    """router=robust is decoded by the second vLLM server (the merged robust checkpoint), router=base
    by the first: proved by each server's own request counter, not by our service's word."""
    base, robust = vllm_servers["base"], vllm_servers["robust"]
    card = httpx.get(f"{routed_server}/v1/models").json()["data"][0]
    assert card["adapters"] == ["base", "robust"], card
    path, _ref = librivox[0]

    before = base.successes(), robust.successes()
    r = transcribe(routed_server, path, router="robust")
    assert r.status_code == 200, r.text
    assert r.json()["router"]["adapter"] == "robust"
    assert "dashwood" in r.json()["text"].lower()
    assert robust.successes() == before[1] + 1 and base.successes() == before[0]

    before = base.successes(), robust.successes()
    r = transcribe(routed_server, path, router="base")
    assert r.status_code == 200 and r.json()["router"]["adapter"] == "base", r.text
    assert base.successes() == before[0] + 1 and robust.successes() == before[1]


def test_router_auto_uses_the_bundle_router(routed_server: str, librivox) -> None:
    """router=auto runs the committed router network in our service and reports p_degraded."""
    r = transcribe(routed_server, librivox[1][0], router="auto")
    assert r.status_code == 200, r.text
    route = r.json()["router"]
    assert route["mode"] == "auto" and 0.0 <= route["p_degraded"] <= 1.0
    assert route["adapter"] in ("base", "robust")


def test_segments_without_no_speech_prob_and_long_audio_chunked_by_vllm(vllm_servers, tiny_en_dir: Path,
                                                                        tmp_path: Path, librivox) -> None:
    """Audio over 30 s is cut by vLLM itself: segments come back in order, offset past 30 s; vLLM has no
    no_speech_prob, so the field is left out rather than invented."""
    settings = vllm_settings(tiny_en_dir, tmp_path, vllm_servers["base"], max_batch_size=2)
    clips = [sf.read(p, dtype="float32")[0] for p, _ in librivox]
    audio = np.concatenate(clips * 2)  # ~50 s
    buf = io.BytesIO()
    sf.write(buf, audio, 16000, format="WAV")
    with running_server(settings) as url:
        r = httpx.post(f"{url}/v1/audio/transcriptions", timeout=300, files={"file": ("long.wav", buf.getvalue())},
                       data={"model": "whisper-1", "response_format": "verbose_json"})
    assert r.status_code == 200, r.text
    body = r.json()
    segs = body["segments"]
    assert body["duration"] == pytest.approx(len(audio) / 16000, abs=0.01)
    assert segs[-1]["end"] > 30 and segs[-1]["end"] <= body["duration"] + 0.01
    assert all(a["start"] <= b["start"] for a, b in itertools.pairwise(segs))
    assert all("no_speech_prob" not in s for s in segs)
    assert body["text"].lower().count("dashwood") == 2


def test_audio_over_the_vllm_limit_is_a_clear_400(vllm_servers, tiny_en_dir: Path, tmp_path: Path) -> None:
    settings = vllm_settings(tiny_en_dir, tmp_path, vllm_servers["base"], vllm_max_audio_s=5.0)
    quiet = (np.random.default_rng(0).standard_normal(16000 * 6) * 0.05).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, quiet, 16000, format="WAV")
    with running_server(settings) as url:
        r = httpx.post(f"{url}/v1/audio/transcriptions", timeout=60, files={"file": ("a.wav", buf.getvalue())},
                       data={"model": "whisper-1"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "audio_too_long" and "vLLM engine accepts at most 5 s" in err["message"]


def test_word_timestamps_are_refused(server: str, librivox) -> None:
    r = transcribe(server, librivox[0][0], **{"timestamp_granularities[]": "word"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_granularity", r.text


def test_prompt_is_accepted_and_keeps_the_transcript(server: str, librivox) -> None:
    """A prompt goes to vLLM as <|startofprev|> context (deploy/vllm-plugin) and breaks nothing."""
    path, _ref = librivox[0]
    r = transcribe(server, path, prompt="Mr. John Dashwood, prudently.")
    assert r.status_code == 200, r.text
    assert "dashwood" in r.json()["text"].lower()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # uvicorn's exit(3)
def test_start_fails_fast_when_the_served_name_is_wrong(vllm_servers, tiny_en_dir: Path, tmp_path: Path) -> None:
    settings = vllm_settings(tiny_en_dir, tmp_path, vllm_servers["base"], vllm_served_model="whisper-large-v9")
    started = time.monotonic()
    with pytest.raises(RuntimeError), running_server(settings, timeout=60):
        pass
    assert time.monotonic() - started < 30


def test_cli_start_names_what_to_start_when_vllm_is_absent(tiny_en_dir: Path, tmp_path: Path) -> None:
    """No vLLM on the port: `megaasr serve --engine vllm` exits after the start-up timeout and says what to do."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--engine", "vllm", "--model",
                           str(tiny_en_dir), "--home", str(tmp_path), "--port", str(free_port()),
                           "--vllm-url", dead, "--vllm-startup-timeout-s", "3"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert time.monotonic() - started < 60
    last = proc.stderr.strip().splitlines()[-1]  # the reason is the last line, after uvicorn's traceback
    assert last.startswith(f"megaasr: cannot start: No vLLM server answered at {dead} within 3 s"), proc.stderr[-3000:]
    assert "scripts/setup_vllm.sh" in last


def test_cli_names_the_served_models_when_ours_is_missing(vllm_servers, tiny_en_dir: Path, tmp_path: Path) -> None:
    base = vllm_servers["base"]
    proc = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--engine", "vllm", "--model",
                           str(tiny_en_dir), "--home", str(tmp_path), "--port", str(free_port()),
                           "--vllm-url", base.url, "--vllm-robust-model", "nope-robust"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"serves ['{BASE_NAME}'], not the robust model 'nope-robust'" in proc.stderr, proc.stderr[-3000:]
