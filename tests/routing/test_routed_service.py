"""The service with the shipped checkpoint: both models loaded, auto routing on the trained router.

Real uvicorn on loopback, real tiny.en weights, the committed robust LoRA and router (slow tier).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from service.config import Settings
from service.engines.base import TranscriptionOptions
from service.engines.embedded import EmbeddedEngine
from service.models.bundle import load_bundle
from tests.routing.test_router_units import SHIPPED
from tests.server import metric_samples, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def routed_server(tiny_en_dir: Path, tmp_path_factory) -> Iterator[str]:
    settings = Settings(model=str(tiny_en_dir), checkpoint=SHIPPED, home=tmp_path_factory.mktemp("home"),
                        threads=2, max_batch_size=4, batch_wait_ms=50)
    with running_server(settings) as url:
        yield url


def _post(url: str, path: Path, router: str) -> httpx.Response:
    with path.open("rb") as f:
        return httpx.post(f"{url}/v1/audio/transcriptions", timeout=120,
                          files={"file": (path.name, f, "audio/wav")},
                          data={"model": "whisper-1", "response_format": "verbose_json", "router": router})


def _samples(url: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return metric_samples(url).get(name, {})


def test_models_list_both_paths_and_a_trained_router(routed_server: str) -> None:
    card = httpx.get(f"{routed_server}/v1/models").json()["data"][0]
    assert card["adapters"] == ["base", "robust"]
    assert card["router"].startswith(f"trained: threshold {load_bundle(SHIPPED).router_threshold:.3f}")


def test_each_router_mode_reaches_its_path_and_reports_it(routed_server: str, librivox) -> None:
    path, reference = librivox[0]
    before = _samples(routed_server, "megaasr_router_decisions_total")
    base, robust, auto = (_post(routed_server, path, mode) for mode in ("base", "robust", "auto"))
    assert all(r.status_code == 200 for r in (base, robust, auto)), [r.text for r in (base, robust, auto)]
    assert base.json()["router"]["adapter"] == "base" and base.json()["router"].get("p_degraded") is None
    assert robust.json()["router"]["adapter"] == "robust"
    route = auto.json()["router"]
    assert route["mode"] == "auto" and 0.0 < route["p_degraded"] < 1.0
    assert route["adapter"] == ("robust" if route["p_degraded"] >= load_bundle(SHIPPED).router_threshold else "base")
    for body in (base, robust, auto):
        assert len(body.json()["text"].split()) >= 0.8 * len(reference.split())
    after = _samples(routed_server, "megaasr_router_decisions_total")
    key = (("adapter", route["adapter"]), ("mode", "auto"))
    assert after[key] == before.get(key, 0.0) + 1
    histogram = _samples(routed_server, "megaasr_router_p_degraded_count")
    assert histogram[()] >= 1


def test_batch_sizes_reach_the_metrics(routed_server: str, librivox) -> None:
    before = _samples(routed_server, "megaasr_batch_size_count").get((), 0.0)
    _post(routed_server, librivox[1][0], "base")
    assert _samples(routed_server, "megaasr_batch_size_count")[()] == before + 1


def _adapter_merged(engine: EmbeddedEngine, name: str) -> bool:
    """The adapter was really merged: a LoRA-targeted weight differs between the base and robust models."""
    base_w = dict(engine._transcriber.runner.model.named_parameters())[name]
    robust_w = dict(engine._robust.runner.model.named_parameters())[name]
    return not torch.equal(base_w, robust_w)


def test_a_mixed_batch_decodes_each_request_on_its_own_model(tiny_en_dir: Path, librivox) -> None:
    """Base and robust requests batched together give what each model gives alone."""
    import asyncio

    import soundfile as sf
    import soxr

    x, sr = sf.read(librivox[2][0], dtype="float32")
    audio = soxr.resample(x, sr, 16000).astype(np.float32)
    seeded = [TranscriptionOptions(language="en", adapter=a, seed=1) for a in ("base", "robust")]

    async def run() -> None:
        settings = Settings(threads=2, max_batch_size=8, batch_wait_ms=200)
        engine = EmbeddedEngine(tiny_en_dir, "tiny", settings, robust=load_bundle(SHIPPED))
        await engine.start()
        try:
            sizes: list[int] = []
            engine.batch_observer = sizes.append
            together = await engine.transcribe([audio, audio], seeded)
            assert sizes == [2]  # one micro-batch held both
            alone = [(await engine.transcribe([audio], [o]))[0] for o in seeded]
            assert [r.adapter for r in together] == ["base", "robust"]
            assert [r.text for r in together] == [r.text for r in alone]
            assert engine.info.adapters == ("base", "robust")
            assert _adapter_merged(engine, "model.encoder.layers.3.fc1.weight")
        finally:
            await engine.close()

    asyncio.run(run())


def test_the_whisper_base_bundle_serves_its_adapter_on_whisper_base(base_dir: Path, librivox) -> None:
    """The second shipped bundle (issue 6's "base too") loads on its own base model and transcribes real speech."""
    import asyncio

    import soundfile as sf
    import soxr

    from service.scoring import score
    from tests.routing.test_router_units import SHIPPED_BASE

    path, reference = librivox[2]
    x, sr = sf.read(path, dtype="float32")
    audio = soxr.resample(x, sr, 16000).astype(np.float32)
    bundle = load_bundle(SHIPPED_BASE)
    assert bundle.base_model == "whisper-base"

    async def run() -> None:
        engine = EmbeddedEngine(base_dir, "base", Settings(threads=2), robust=bundle)
        await engine.start()
        try:
            robust = (await engine.transcribe([audio], [TranscriptionOptions(language="en", adapter="robust",
                                                                             seed=1)]))[0]
            assert robust.adapter == "robust"
            assert score(reference, robust.text).wer < 0.25, robust.text
            assert _adapter_merged(engine, "model.encoder.layers.5.fc1.weight")  # the top block: Phases I and III
        finally:
            await engine.close()

    asyncio.run(run())
