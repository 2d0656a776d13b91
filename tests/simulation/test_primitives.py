"""Measured behaviour of the eight primitives (issue #4 §3)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sp_signal

from simulation import levels, primitives, reverb
from simulation.noise_bank import coloured_noise

from .conftest import speech_like

SR = 16000


def band_power_db(x: np.ndarray, sr: int, low: float, high: float) -> float:
    f, p = sp_signal.welch(x.astype(np.float64), sr, nperseg=2048)
    band = (f >= low) & (f <= high)
    return float(10 * np.log10(np.mean(p[band]) + 1e-30))


# ------------------------------------------------------------------ noise at a target SNR
@pytest.mark.parametrize("colour", ["white", "pink", "brown"])
@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 5.0, 10.0])
def test_achieved_snr_on_ground_truth_speech_frames(colour: str, snr_db: float) -> None:
    clean, active = speech_like(4.0, SR, seed=3)
    noise = coloured_noise(colour, 3 * SR, np.random.default_rng(1))  # shorter than speech: tiled
    out = primitives.add_noise(clean, SR, noise, snr_db)
    added = out.audio.astype(np.float64) - clean
    measured = 10 * np.log10(np.mean(clean[active].astype(np.float64) ** 2) / np.mean(added[active] ** 2))
    assert abs(measured - snr_db) <= 0.5
    assert abs(out.measured["achieved_snr_db"] - snr_db) <= 0.5


def test_snr_on_real_speech_and_real_noise(speech, tmp_path) -> None:
    audio, sr = speech
    clip = coloured_noise("pink", sr, np.random.default_rng(0))
    out = primitives.add_noise(audio, sr, clip, 0.0)
    snr = levels.snr_on_active_frames(audio, out.audio - audio, sr)
    assert abs(snr - 0.0) <= 0.5
    # Power over whole utterance would overstate the noise: the active-frame SNR is the higher one.
    whole = 10 * np.log10(np.mean(audio**2) / np.mean((out.audio - audio) ** 2))
    assert whole < snr


def test_noise_on_digital_silence_is_defined() -> None:
    out = primitives.add_noise(np.zeros(SR, np.float32), SR, coloured_noise("white", SR, np.random.default_rng(0)), 5)
    assert out.measured["achieved_snr_db"] is None
    rms_db = 10 * np.log10(np.mean(out.audio.astype(np.float64) ** 2))
    assert abs(rms_db - (primitives.SILENCE_REFERENCE_DBFS - 5)) < 0.5


def test_noise_validation_names_the_parameter() -> None:
    x = np.zeros(100, np.float32)
    with pytest.raises(ValueError, match="snr_db"):
        primitives.add_noise(x, SR, x, float("nan"))
    with pytest.raises(ValueError, match="wet"):
        primitives.add_noise(x, SR, x, 0.0, wet=1.5)
    with pytest.raises(ValueError, match="1-D"):
        primitives.add_noise(np.zeros((2, 10), np.float32), SR, x, 0.0)


# ------------------------------------------------------------------ loudness
@pytest.mark.parametrize("target", [-38.0, -30.0, -23.0, -15.0])
def test_loudness_reaches_target_within_half_lu(speech, target: float) -> None:
    import pyloudnorm

    audio, sr = speech
    out = primitives.change_volume(audio, sr, target)
    measured = pyloudnorm.Meter(sr).integrated_loudness(out.audio.astype(np.float64))
    assert abs(measured - target) <= 0.5


@pytest.mark.parametrize("audio", [np.zeros(SR, np.float32), np.full(int(0.2 * SR), 0.1, np.float32)])
def test_loudness_left_unchanged_when_unmeasurable(audio: np.ndarray) -> None:
    out = primitives.change_volume(audio, SR, -23.0)
    assert out.measured["applied"] is False
    assert np.array_equal(out.audio, audio)


# ------------------------------------------------------------------ filters and band limits
@pytest.mark.parametrize(("cutoff", "repeat"), [(1500.0, 2), (2000.0, 3), (3500.0, 3), (4500.0, 4), (1000.0, 6)])
def test_lowpass_removes_30_db_an_octave_above_cutoff(cutoff: float, repeat: int) -> None:
    sr = 32000  # room for a full octave above the highest cutoff in the paper's ranges
    x = coloured_noise("white", 4 * sr, np.random.default_rng(0)) * 0.1
    y = primitives.apply_filter(x, sr, "lowpass", cutoff, repeat).audio
    hi = min(8 * cutoff, 0.49 * sr)
    assert band_power_db(x, sr, 2 * cutoff, hi) - band_power_db(y, sr, 2 * cutoff, hi) >= 30
    assert band_power_db(x, sr, 50, cutoff / 4) - band_power_db(y, sr, 50, cutoff / 4) <= 1.0


def test_highpass_removes_below_cutoff() -> None:
    x = coloured_noise("white", 4 * SR, np.random.default_rng(0)) * 0.1
    y = primitives.apply_filter(x, SR, "highpass", 500.0, 4).audio
    assert band_power_db(x, SR, 20, 250) - band_power_db(y, SR, 20, 250) >= 30


def test_lowpass_above_nyquist_is_skipped_not_an_error() -> None:
    x = np.ones(800, np.float32) * 0.1
    out = primitives.apply_filter(x, 8000, "lowpass", 6000.0, 1)
    assert out.measured["applied"] is False and np.array_equal(out.audio, x)


def test_8khz_resample_path_removes_content_above_4khz() -> None:
    x = coloured_noise("white", 4 * SR, np.random.default_rng(0)) * 0.1
    y = primitives.add_resample(x, SR, 8000, prob=1.0, threshold=0.4).audio
    assert band_power_db(x, SR, 4100, 7900) - band_power_db(y, SR, 4100, 7900) >= 40
    assert abs(band_power_db(x, SR, 100, 3500) - band_power_db(y, SR, 100, 3500)) <= 0.5


def test_resample_gate_is_deterministic() -> None:
    x = coloured_noise("white", SR, np.random.default_rng(0)) * 0.1
    out = primitives.add_resample(x, SR, 8000, prob=0.3, threshold=0.4)
    assert out.measured["applied"] is False and np.array_equal(out.audio, x)


# ------------------------------------------------------------------ stutter, echo, distortion
@pytest.mark.parametrize("n", [0, 100, 3200, 16001, 160000])
def test_stutter_keeps_length(n: int) -> None:
    x = coloured_noise("white", n, np.random.default_rng(0)) * 0.1
    out = primitives.add_stutter(x, SR, np.random.default_rng(1), 0.3, 4)
    assert len(out.audio) == n and out.audio.dtype == np.float32


def test_stutter_replaces_frames_with_previous_or_silence() -> None:
    x = coloured_noise("white", SR, np.random.default_rng(0)) * 0.1
    out = primitives.add_stutter(x, SR, np.random.default_rng(2), 1.0, 3, repeat_prob=0.5)
    frame = SR // 50
    frames = out.audio[: (SR // frame) * frame].reshape(-1, frame)
    original = x[: (SR // frame) * frame].reshape(-1, frame)
    assert out.measured["frames_replaced"] == len(frames) - 1  # every frame after the first
    for i in range(1, len(frames)):
        assert not np.any(frames[i]) or any(np.array_equal(frames[i], original[j]) for j in range(i))


def test_echo_places_delayed_copies() -> None:
    x = np.zeros(SR, np.float32)
    x[0] = 1.0
    y = primitives.add_echo(x, SR, 0.1, 0.5, 0.3).audio
    d = int(0.1 * SR)
    assert y[0] == pytest.approx(0.7)
    assert y[d] == pytest.approx(0.3)
    assert y[2 * d] == pytest.approx(0.15)
    assert len(y) == len(x)


def test_distortion_stays_in_range() -> None:
    x = coloured_noise("white", SR, np.random.default_rng(0))
    y = primitives.add_distortion(x, 60.0).audio
    assert np.max(np.abs(y)) <= 1.0


# ------------------------------------------------------------------ reverberation
def test_freeverb_matches_sample_by_sample_reference() -> None:
    x = coloured_noise("white", 3000, np.random.default_rng(0)) * 0.1
    for room, damp in ((0.95, 0.5), (0.4, 0.9)):
        fast = reverb.freeverb(x, SR, room, damp, 0.7, 0.4)
        slow = reverb.freeverb_reference(x, SR, room, damp, 0.7, 0.4)
        np.testing.assert_allclose(fast, slow, atol=1e-6)


def test_freeverb_larger_room_decays_slower() -> None:
    x = np.zeros(2 * SR, np.float32)
    x[0] = 1.0
    small = reverb.freeverb(x, SR, 0.4, 0.5, 1.0, 0.0)
    large = reverb.freeverb(x, SR, 0.95, 0.5, 1.0, 0.0)
    tail = slice(SR, 2 * SR)
    assert np.sum(large[tail] ** 2) > 10 * np.sum(small[tail] ** 2)


@pytest.mark.parametrize(("rt60", "room"), [(0.4, (6.0, 5.0, 3.0)), (0.8, (10.0, 8.0, 4.0))])
def test_room_rt60_measured_within_20_percent(rt60: float, room: tuple[float, float, float]) -> None:
    rir = reverb.room_impulse_response(SR, rt60, room, 2.0)
    measured = reverb.measure_rt60(rir, SR)
    assert abs(measured - rt60) <= 0.2 * rt60
    x = coloured_noise("white", SR, np.random.default_rng(0)) * 0.1
    assert len(reverb.convolve_room(x, rir)) == len(x)
