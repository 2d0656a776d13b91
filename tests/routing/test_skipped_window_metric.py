"""`megaasr_skipped_windows_total`: what each transcription left unanswered, by path and by the rule that did it."""

from __future__ import annotations

from prometheus_client import generate_latest

from service.api.state import ServiceState
from service.config import Settings
from service.engines.base import TranscriptionResult
from service.engines.embedded import EmbeddedEngine
from service.metrics import Metrics


def _result(adapter: str, **extras: int) -> TranscriptionResult:
    return TranscriptionResult(text="", segments=[], language="en", duration=3.0, adapter=adapter, extras=extras)


def test_skipped_windows_are_counted_by_adapter_and_reason(tmp_path) -> None:
    metrics = Metrics()
    state = ServiceState(Settings(home=tmp_path), EmbeddedEngine(tmp_path / "none", "idle", Settings(home=tmp_path)),
                         metrics)
    state.observe_transcription(_result("robust", dropped_windows=1, no_speech_gated_windows=2), 1.0)
    state.observe_transcription(_result("robust", dropped_windows=0, no_speech_gated_windows=1), 1.0)
    state.observe_transcription(_result("base", dropped_windows=3), 1.0)
    state.observe_transcription(_result("base"), 1.0)  # an engine that reports nothing (vLLM: dropped_windows only)
    text = generate_latest(metrics.registry).decode()
    assert 'megaasr_skipped_windows_total{adapter="robust",reason="no_speech_gate"} 3.0' in text
    assert 'megaasr_skipped_windows_total{adapter="robust",reason="guard"} 1.0' in text
    assert 'megaasr_skipped_windows_total{adapter="base",reason="guard"} 3.0' in text
    assert 'adapter="base",reason="no_speech_gate"' not in text
