"""Decode settings the vLLM engine cannot honour stop the service at start-up, before any vLLM call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.config import Settings
from service.engines.vllm_engine import VllmEngine, VllmStartError


@pytest.mark.parametrize(("setting", "flag"), [("beam_size", "--beam-size 1"), ("best_of", "--best-of 1")])
def test_beam_and_best_of_above_one_are_start_up_errors(setting: str, flag: str, tmp_path: Path) -> None:
    settings = Settings(engine="vllm", vllm_url="http://127.0.0.1:9/v1", **{setting: 5})
    engine = VllmEngine(tmp_path, "whisper-tiny.en", settings)
    with pytest.raises(VllmStartError, match=flag):
        asyncio.run(engine.start())


def test_a_bundles_no_speech_gate_is_announced_as_not_applied(tmp_path: Path, caplog) -> None:
    """vLLM reports no no-speech probability, so the engine says at start that the bundle's gate is off there."""
    from dataclasses import replace

    from service.models.bundle import load_bundle

    shipped = load_bundle(Path(__file__).resolve().parents[2] / "checkpoints" / "whisper-base-robust")
    settings = Settings(engine="vllm", vllm_url="http://127.0.0.1:9/v1")
    with caplog.at_level("WARNING", logger="service.engines.vllm_engine"):
        VllmEngine(tmp_path, "whisper-base", settings, robust=replace(shipped, robust_no_speech_gate=None))
    assert "robust_no_speech_gate" not in caplog.text
    with caplog.at_level("WARNING", logger="service.engines.vllm_engine"):
        VllmEngine(tmp_path, "whisper-base", settings, robust=shipped)
    assert shipped.robust_no_speech_gate is not None
    assert "robust_no_speech_gate (0.7) is not applied by the vLLM engine" in caplog.text

