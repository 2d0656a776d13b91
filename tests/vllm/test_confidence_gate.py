"""The bundle's confidence gate on vLLM's segments (pure parsing of a verbose_json body, no vLLM)."""

from __future__ import annotations

import logging
from pathlib import Path

from service.config import Settings
from service.engines.base import TranscriptionOptions
from service.engines.vllm_engine import VllmEngine
from service.models.bundle import Bundle


def _engine(gate: float | None) -> VllmEngine:
    bundle = Bundle(Path("/b"), "whisper-tiny.en", Path("/b/adapter"), None, None, 0.5, None, gate)
    return VllmEngine(Path("/m"), "whisper-tiny.en", Settings(), robust=bundle)


BODY = {"language": "en", "segments": [
    {"start": 0.0, "end": 2.0, "text": " Please hold.", "avg_logprob": -0.4, "compression_ratio": 1.0},
    {"start": 2.0, "end": 4.0, "text": " The conference is now.", "avg_logprob": -1.7, "compression_ratio": 1.1}]}


def test_robust_segments_below_the_gate_are_dropped_and_counted() -> None:
    result = _engine(-1.0)._result(BODY, TranscriptionOptions(adapter="robust"), 4.0, "en")
    assert result.text == "Please hold." and result.extras["dropped_windows"] == 1


def test_the_base_path_and_a_bundle_without_a_gate_keep_every_segment() -> None:
    both = "Please hold. The conference is now."
    assert _engine(-1.0)._result(BODY, TranscriptionOptions(adapter="base"), 4.0, "en").text == both
    assert _engine(None)._result(BODY, TranscriptionOptions(adapter="robust"), 4.0, "en").text == both


def test_a_segment_without_avg_logprob_is_kept_and_said_once(caplog) -> None:
    body = {"segments": [{**s, "avg_logprob": None} for s in BODY["segments"]]}
    engine = _engine(-1.0)
    with caplog.at_level(logging.WARNING, logger="service.engines.vllm_engine"):
        result = engine._result(body, TranscriptionOptions(adapter="robust"), 4.0, "en")
    assert result.text == "Please hold. The conference is now."
    assert sum("cannot be applied" in r.message for r in caplog.records) == 1
