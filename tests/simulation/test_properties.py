"""Property-based: any finite input, any scenario, any severity -> finite, in range, same length."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulation import resolve_scenarios, simulate

SCENARIOS = resolve_scenarios("all")


@settings(max_examples=40, deadline=None)
@given(
    scenario=st.sampled_from(SCENARIOS),
    severity=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 12000),
    level=st.sampled_from([0.0, 1e-6, 0.01, 0.5, 1.0]),
    sr=st.sampled_from([8000, 16000, 22050]),
)
def test_simulate_output_contract(scenario: str, severity: float, seed: int, n: int, level: float, sr: int) -> None:
    x = (level * np.clip(np.random.default_rng(seed).standard_normal(n), -1, 1)).astype(np.float32)
    y = simulate(x, sr, scenario, severity, seed).audio
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.all(np.isfinite(y)) and (n == 0 or np.max(np.abs(y)) <= 1.0)
