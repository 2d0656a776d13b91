"""The vLLM health gate: one slow poll from a busy server is not an outage (pure logic, no vLLM)."""

from __future__ import annotations

from service.engines.vllm_engine import HealthGate


def test_down_only_after_consecutive_failures_and_back_at_the_first_success() -> None:
    gate = HealthGate(3)
    assert [gate.observe(ok) for ok in (False, False, True, False, False)] == [True] * 5
    assert gate.observe(False) is False  # third failure in a row
    assert gate.observe(False) is False
    assert gate.observe(True) is True


def test_one_failure_is_enough_when_configured() -> None:
    gate = HealthGate(1)
    assert gate.observe(False) is False and gate.observe(True) is True
