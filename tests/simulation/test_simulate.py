"""``simulate`` end to end: every scenario, every severity, every length, determinism, records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simulation import resolve_scenarios, simulate
from simulation.primitives import measure_loudness
from simulation.severity import map_severity

from .conftest import speech_like

SCENARIOS = resolve_scenarios("all")
SR = 16000


@pytest.fixture(scope="module")
def inputs(speech) -> dict[str, np.ndarray]:
    audio, sr = speech
    assert sr == SR
    ten = np.tile(audio, 2)[: 10 * SR]
    return {"0.2s": audio[SR: SR + SR // 5], "1s": audio[SR: 2 * SR], "10s": ten,
            "silence": np.zeros(SR, np.float32)}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_every_severity_every_length(scenario: str, inputs) -> None:
    for label, x in inputs.items():
        for m in (0.0, 0.5, 1.0):
            r = simulate(x, SR, scenario, m, seed=7)
            y = r.audio
            assert y.dtype == np.float32 and y.shape == x.shape, (label, m)
            assert np.all(np.isfinite(y)), (label, m)
            assert np.max(np.abs(y), initial=0.0) <= 1.0, (label, m)
            assert len(r.steps) == len(r.record()["steps"])


def test_same_seed_bit_identical_other_seed_different(speech) -> None:
    audio, sr = speech
    x = audio[: 3 * sr]
    for scenario in SCENARIOS:
        a = simulate(x, sr, scenario, None, seed=11).audio
        b = simulate(x, sr, scenario, None, seed=11).audio
        c = simulate(x, sr, scenario, None, seed=12).audio
        assert a.tobytes() == b.tobytes(), scenario
        assert not np.array_equal(a, c), scenario


def test_seed_changes_random_steps_at_fixed_severity(speech) -> None:
    audio, sr = speech
    x = audio[: 2 * sr]
    for scenario in ("noise", "stutter", "crosstalk", "far_field_noise"):
        assert not np.array_equal(simulate(x, sr, scenario, 0.5, 1).audio, simulate(x, sr, scenario, 0.5, 2).audio)


@pytest.mark.parametrize("scenario", resolve_scenarios("singles"))
def test_single_effects_land_on_their_loudness_target(speech, scenario: str) -> None:
    audio, sr = speech
    for m in (0.0, 1.0):
        r = simulate(audio, sr, scenario, m, seed=3)
        target = r.steps[-1]["params"]["target_lufs"]
        assert r.steps[-1]["primitive"] == "change_volume"
        if r.peak_gain_db == 0.0:
            assert abs(measure_loudness(r.audio, sr) - target) <= 0.5


def test_noise_scenario_reports_achieved_snr(speech) -> None:
    audio, sr = speech
    for m, target in ((0.0, 10.0), (0.5, 2.5), (1.0, -5.0)):
        r = simulate(audio, sr, "noise", m, seed=5)
        assert abs(r.achieved_snr_db - target) <= 0.5


def test_record_is_json_and_has_the_paper_fields(speech) -> None:
    audio, sr = speech
    rec = simulate(audio[:sr], sr, "far_field_crosstalk", 0.25, seed=1).record()
    json.dumps(rec)
    for key in ("combination", "source_scenes", "aug_params_m", "global_severity", "seed", "steps"):
        assert key in rec
    assert rec["source_scenes"] == ["far_field", "crosstalk"]
    assert all("params" in s and "measured" in s for s in rec["steps"])


def test_severity_drawn_from_seed_uses_the_mapping(speech) -> None:
    audio, sr = speech
    r = simulate(audio[:sr], sr, "noise", None, seed=4, severity_mapping="square")
    assert r.severity_mapping == "square" and 0.0 <= r.severity <= 1.0
    assert map_severity(0.5, "sqrt") == pytest.approx(np.sqrt(0.5))
    assert map_severity(0.5, "gaussian_mid") == pytest.approx(0.5)
    assert map_severity(0.0, "gaussian_mid") == 0.0


def test_eight_khz_input_runs_every_scenario() -> None:
    x, _ = speech_like(1.0, 8000)
    for scenario in SCENARIOS:
        y = simulate(x, 8000, scenario, 1.0, seed=0).audio
        assert len(y) == len(x) and np.all(np.isfinite(y))


def test_room_reverb_engine(speech) -> None:
    audio, sr = speech
    r = simulate(audio[: 2 * sr], sr, "far_field_noise", 0.5, seed=0, reverb_engine="room")
    assert r.steps[0]["measured"]["engine"] == "room" and "rt60_s" in r.steps[0]["params"]
    assert np.max(np.abs(r.audio)) <= 1.0


def test_bad_arguments_raise_value_error(speech) -> None:
    audio, sr = speech
    with pytest.raises(ValueError, match="severity"):
        simulate(audio, sr, "noise", 1.5)
    with pytest.raises(ValueError, match="seed"):
        simulate(audio, sr, "noise", 0.5, seed=-1)
    with pytest.raises(ValueError, match="unknown scenario"):
        simulate(audio, sr, "hurricane", 0.5)
    with pytest.raises(ValueError, match="NaN"):
        simulate(np.full(100, np.nan, np.float32), sr, "noise", 0.5)
    with pytest.raises(ValueError, match="reverb_engine"):
        simulate(audio, sr, "noise", 0.5, reverb_engine="cathedral")
