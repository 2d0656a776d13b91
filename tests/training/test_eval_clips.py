"""training.eval.corrupt_utterances: the eval's clip set from any clean utterances (eval prompts or a tuning set)."""

from __future__ import annotations

import numpy as np

from simulation import resolve_scenarios
from training.config import EvalConfig
from training.eval import CLEAN, NOISE_ONLY, SILENT, corrupt_utterances
from training.sources import SAMPLE_RATE


def _utterances() -> list[tuple[str, str, np.ndarray]]:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    return [(f"u{i}", f"text {i}", (0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t)).astype(np.float32))
            for i in range(3)]


def test_every_scenario_corrupts_rotating_utterances_plus_clean_and_non_speech():
    cfg = EvalConfig(scenarios="singles", clips_per_scenario=2, noise_only_clips=2, silent_clips=2, seed=5)
    clips = corrupt_utterances(_utterances(), cfg)
    singles = resolve_scenarios("singles")
    by_kind = {kind: [c for c in clips if c["scenario"] == kind] for kind in (CLEAN, NOISE_ONLY, SILENT)}
    degraded = [c for c in clips if c["scenario"] not in by_kind]
    assert [c["id"] for c in by_kind[CLEAN]] == ["u0", "u1", "u2"]
    assert len(degraded) == 2 * len(singles) and {c["scenario"] for c in degraded} == set(singles)
    assert {c["id"].split("__")[0] for c in degraded} == {"u0", "u1", "u2"}  # the rotation reaches every utterance
    assert all(c["text"] == f"text {c['id'][1]}" and c["n_effects"] == 1 for c in degraded)
    assert len(by_kind[NOISE_ONLY]) == 2 and len(by_kind[SILENT]) == 2
    assert all(c["text"] == "" for c in by_kind[NOISE_ONLY] + by_kind[SILENT])


def test_the_seed_decides_the_clips():
    cfg = EvalConfig(scenarios="singles", clips_per_scenario=1, noise_only_clips=1, silent_clips=0, seed=5)
    first, again = corrupt_utterances(_utterances(), cfg), corrupt_utterances(_utterances(), cfg)
    other = corrupt_utterances(_utterances(), cfg.model_copy(update={"seed": 6}))
    assert all(np.array_equal(a["audio"], b["audio"]) and a["id"] == b["id"] for a, b in zip(first, again))
    assert any(not np.array_equal(a["audio"], b["audio"]) for a, b in zip(first, other) if a["scenario"] != CLEAN)
