"""The eight primitive signal operators of the paper (§1.1), as pure seeded functions.

Every primitive takes a mono float32 array and returns a ``PrimitiveOutput``: the new array (same
length, so the transcript stays aligned) and a dict of what it measured or skipped. Parameters are
validated up front with a ``ValueError`` naming the parameter, the way audiomentations does.
Randomness, where a primitive has any, comes only from the ``numpy.random.Generator`` passed in.

Choices where the paper is silent (also in docs/simulation.md):
- ``add_noise``: the paper's ``noise_db`` is taken as the SNR in dB, measured on speech-active frames
  (see ``levels``). On digital silence the SNR is undefined: the noise is mixed as if the speech
  were at ``SILENCE_REFERENCE_DBFS`` and the report says ``achieved_snr_db = None``.
- ``apply_filter``: each pass is a 2nd-order Butterworth section (12 dB/octave), applied
  ``repeat`` times to steepen it. A low-pass whose cutoff is at or above 0.95 x Nyquist is skipped.
- ``add_resample``: down to ``target_sr`` and back with soxr (HQ). The probability gate is
  deterministic: the resample happens when ``prob >= threshold``. Skipped when ``target_sr >= sr``.
- ``change_volume``: gain to a target integrated loudness (pyloudnorm, ITU-R BS.1770). Left unchanged
  when loudness cannot be measured (shorter than 0.4 s, or silent), as in the paper.
- ``add_stutter``: once triggered at a frame, 1..max_repeats consecutive frames are replaced by the
  last good frame (probability ``repeat_prob``) or by silence.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import pyloudnorm
import soxr
from scipy import signal as sp_signal

from simulation import levels, reverb

SILENCE_REFERENCE_DBFS = -25.0
LOWPASS_SKIP_FRACTION = 0.95

PRIMITIVES = (
    "add_noise",
    "add_echo",
    "add_reverb",
    "add_distortion",
    "add_resample",
    "apply_filter",
    "change_volume",
    "add_stutter",
)


class PrimitiveOutput(NamedTuple):
    """What a primitive returns: the processed audio and what it measured (JSON-serialisable)."""

    audio: np.ndarray
    measured: dict[str, Any]


# --------------------------------------------------------------------------- validation
def as_mono_float32(audio: np.ndarray) -> np.ndarray:
    """Check the contract shared by all primitives: 1-D, finite, returned as float32."""
    x = np.asarray(audio)
    if x.ndim != 1:
        raise ValueError(f"audio must be a 1-D mono array, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"audio must be floating point in [-1, 1], got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError("audio contains NaN or Inf")
    return x


def _check_sr(sr: int) -> int:
    if not isinstance(sr, (int, np.integer)) or sr < 1000:
        raise ValueError(f"sr must be an integer sample rate >= 1000 Hz, got {sr!r}")
    return int(sr)


def _check_range(name: str, value: float, low: float, high: float) -> float:
    v = float(value)
    if not (np.isfinite(v) and low <= v <= high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return v


def _check_int(name: str, value: int, low: int) -> int:
    if int(value) != value or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _mix(wet_signal: np.ndarray, dry: np.ndarray, wet: float) -> np.ndarray:
    if wet >= 1.0:
        return wet_signal.astype(np.float32, copy=False)
    return (wet * wet_signal + (1.0 - wet) * dry).astype(np.float32)


# --------------------------------------------------------------------------- 1. additive noise
def fit_to_length(noise: np.ndarray, n: int) -> np.ndarray:
    """Tile and crop a noise clip to ``n`` samples (the paper's "tiled and cropped")."""
    noise = np.asarray(noise, dtype=np.float32)
    if noise.size == 0:
        raise ValueError("noise clip is empty")
    reps = -(-n // noise.size)
    return np.tile(noise, reps)[:n]


def add_noise(
    audio: np.ndarray, sr: int, noise: np.ndarray, snr_db: float, wet: float = 1.0
) -> PrimitiveOutput:
    """Mix ``noise`` so that the SNR on speech-active frames equals ``snr_db`` (then scale by ``wet``)."""
    x = as_mono_float32(audio)
    sr = _check_sr(sr)
    snr_db = _check_range("snr_db", snr_db, -60.0, 100.0)
    wet = _check_range("wet", wet, 0.0, 1.0)
    if len(x) == 0:
        return PrimitiveOutput(x, {"target_snr_db": snr_db, "achieved_snr_db": None})
    n = fit_to_length(as_mono_float32(noise), len(x)).astype(np.float64)
    mask = levels.active_frame_mask(x, sr)
    if mask.any():
        speech_power = levels.masked_power(x, sr, mask)
        noise_power = levels.masked_power(n, sr, mask)
    else:
        speech_power = 10.0 ** (SILENCE_REFERENCE_DBFS / 10.0)
        noise_power = 0.0
    if noise_power <= 0.0:  # silent where speech is (sparse clip) or digital silence: use whole clip
        noise_power = float(np.mean(n**2))
    if noise_power <= 0.0:
        return PrimitiveOutput(x, {"target_snr_db": snr_db, "achieved_snr_db": None,
                                   "skipped": "noise clip is silent"})
    gain = np.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    added = wet * gain * n
    out = (x + added).astype(np.float32)
    achieved = levels.snr_on_active_frames(x, added, sr) if mask.any() else None
    measured = {
        "target_snr_db": snr_db,
        "achieved_snr_db": None if achieved is None else round(achieved, 3),
        "noise_gain_db": round(float(20 * np.log10(gain)), 3),
    }
    if not mask.any():
        measured["note"] = f"silent input: noise mixed as if speech were at {SILENCE_REFERENCE_DBFS} dBFS"
    return PrimitiveOutput(out, measured)


# --------------------------------------------------------------------------- 2. echo delay
def add_echo(
    audio: np.ndarray, sr: int, delay_seconds: float, feedback: float, mix: float
) -> PrimitiveOutput:
    """Feedback delay line (echo): ``out = (1 - mix) x + mix d``, ``d[n] = x[n-D] + feedback d[n-D]``.

    Computed one delay-length block at a time, which is exact because the recursion only reaches
    back exactly D samples.
    """
    x = as_mono_float32(audio)
    sr = _check_sr(sr)
    delay_seconds = _check_range("delay_seconds", delay_seconds, 1e-4, 10.0)
    feedback = _check_range("feedback", feedback, 0.0, 0.99)
    mix = _check_range("mix", mix, 0.0, 1.0)
    d = max(1, round(delay_seconds * sr))
    n = len(x)
    line = np.zeros(n, dtype=np.float64)
    xd = x.astype(np.float64)
    for start in range(d, n, d):
        stop = min(start + d, n)
        line[start:stop] = xd[start - d: stop - d] + feedback * line[start - d: stop - d]
    out = ((1.0 - mix) * xd + mix * line).astype(np.float32)
    return PrimitiveOutput(out, {"delay_samples": d})


# --------------------------------------------------------------------------- 3. reverberation
def add_reverb(
    audio: np.ndarray,
    sr: int,
    room_size: float,
    damping: float,
    wet_level: float,
    dry_level: float,
) -> PrimitiveOutput:
    """Freeverb-style algorithmic reverb (see ``reverb.freeverb``)."""
    x = as_mono_float32(audio)
    sr = _check_sr(sr)
    out = reverb.freeverb(x, sr, room_size, damping, wet_level, dry_level)
    return PrimitiveOutput(out, {"engine": "freeverb"})


def add_room_reverb(
    audio: np.ndarray,
    sr: int,
    rt60_s: float,
    room_dim_m: tuple[float, float, float] = (6.0, 5.0, 3.0),
    source_mic_distance_m: float = 2.0,
    wet: float = 1.0,
    material: str | None = None,
    seed: int = 0,
) -> PrimitiveOutput:
    """Reverberation from a pyroomacoustics shoebox room (the physical alternative to Freeverb)."""
    x = as_mono_float32(audio)
    sr = _check_sr(sr)
    rir = reverb.room_impulse_response(sr, rt60_s, room_dim_m, source_mic_distance_m, material, seed)
    out = reverb.convolve_room(x, rir, wet)
    return PrimitiveOutput(out, {"engine": "room", "rir_samples": len(rir)})


# --------------------------------------------------------------------------- 4. distortion
def add_distortion(audio: np.ndarray, drive_db: float, wet: float = 1.0) -> PrimitiveOutput:
    """tanh saturation after ``drive_db`` of gain, mixed by ``wet``, clipped to [-1, 1]."""
    x = as_mono_float32(audio)
    drive_db = _check_range("drive_db", drive_db, 0.0, 100.0)
    wet = _check_range("wet", wet, 0.0, 1.0)
    driven = np.tanh(x * np.float32(10.0 ** (drive_db / 20.0)))
    out = np.clip(_mix(driven, x, wet), -1.0, 1.0)
    return PrimitiveOutput(out, {})


# --------------------------------------------------------------------------- 5. resampling
def add_resample(
    audio: np.ndarray,
    sr: int,
    target_sr: int,
    wet: float = 1.0,
    prob: float = 1.0,
    threshold: float = 0.0,
) -> PrimitiveOutput:
    """Downsample to ``target_sr`` and back (band limit + codec-like loss); gated by prob >= threshold."""
    x = as_mono_float32(audio)
    sr = _check_sr(sr)
    target_sr = _check_int("target_sr", target_sr, 1000)
    wet = _check_range("wet", wet, 0.0, 1.0)
    prob = _check_range("prob", prob, 0.0, 1.0)
    threshold = _check_range("threshold", threshold, 0.0, 1.0)
    if prob < threshold:
        return PrimitiveOutput(x, {"applied": False, "reason": f"prob {prob:.3f} < threshold {threshold}"})
    if target_sr >= sr:
        return PrimitiveOutput(x, {"applied": False, "reason": f"input already at {sr} Hz <= {target_sr} Hz"})
    if len(x) == 0:
        return PrimitiveOutput(x, {"applied": True})
    low = soxr.resample(x, sr, target_sr, quality="HQ")
    back = soxr.resample(low, target_sr, sr, quality="HQ")
    back = np.pad(back, (0, max(0, len(x) - len(back))))[: len(x)]
    return PrimitiveOutput(_mix(back, x, wet), {"applied": True})


# --------------------------------------------------------------------------- 6. spectral filtering
@lru_cache(maxsize=256)
def _butter_sos(kind: str, cutoff_hz: float, sr: int, repeat: int) -> np.ndarray:
    sos = sp_signal.butter(2, cutoff_hz, btype=kind, fs=sr, output="sos")
    return np.tile(sos, (repeat, 1))


def apply_filter(
    audio: np.ndarray,
    sr: int,
    kind: str,
    cutoff_hz: float,
    repeat: int = 1,
    wet: float = 1.0,
) -> PrimitiveOutput:
    """Low- or high-pass, a 2nd-order Butterworth applied ``repeat`` times (12 dB/oct per pass)."""
    x = as_mono_float32(audio)
    sr = _check_sr(sr)
    if kind not in ("lowpass", "highpass"):
        raise ValueError(f"kind must be 'lowpass' or 'highpass', got {kind!r}")
    cutoff_hz = _check_range("cutoff_hz", cutoff_hz, 1.0, 1e6)
    repeat = _check_int("repeat", repeat, 1)
    wet = _check_range("wet", wet, 0.0, 1.0)
    nyquist = sr / 2.0
    if cutoff_hz >= LOWPASS_SKIP_FRACTION * nyquist:
        if kind == "lowpass":
            return PrimitiveOutput(x, {"applied": False, "reason": f"cutoff >= 0.95 x Nyquist ({nyquist} Hz)"})
        raise ValueError(f"highpass cutoff {cutoff_hz} Hz is above the Nyquist frequency {nyquist} Hz")
    if len(x) == 0:
        return PrimitiveOutput(x, {"applied": True})
    y = sp_signal.sosfilt(_butter_sos(kind, round(cutoff_hz, 3), sr, repeat), x)
    return PrimitiveOutput(_mix(y, x, wet), {"applied": True})


# --------------------------------------------------------------------------- 7. loudness
@lru_cache(maxsize=16)
def _meter(sr: int) -> pyloudnorm.Meter:
    return pyloudnorm.Meter(sr)


def measure_loudness(audio: np.ndarray, sr: int) -> float | None:
    """Integrated loudness in LUFS, or None where it cannot be measured (short or silent)."""
    x = np.asarray(audio, dtype=np.float64)
    if len(x) < int(0.4 * sr) + 1:
        return None
    try:
        value = _meter(int(sr)).integrated_loudness(x)
    except ValueError:
        return None
    return float(value) if np.isfinite(value) else None


def change_volume(audio: np.ndarray, sr: int, target_lufs: float) -> PrimitiveOutput:
    """Scale to ``target_lufs`` integrated loudness; unchanged if loudness cannot be measured."""
    x = as_mono_float32(audio)
    sr = _check_sr(sr)
    target_lufs = _check_range("target_lufs", target_lufs, -70.0, 0.0)
    loudness = measure_loudness(x, sr)
    if loudness is None:
        return PrimitiveOutput(x, {"applied": False, "reason": "loudness not measurable (short or silent)"})
    gain_db = target_lufs - loudness
    out = (x * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)
    return PrimitiveOutput(out, {"applied": True, "input_lufs": round(loudness, 3), "gain_db": round(gain_db, 3)})


# --------------------------------------------------------------------------- 8. frame stutter
def add_stutter(
    audio: np.ndarray,
    sr: int,
    rng: np.random.Generator,
    stutter_prob: float,
    max_repeats: int,
    repeat_prob: float = 0.7,
    frame_ms: float = 20.0,
) -> PrimitiveOutput:
    """Transmission dropout: runs of frames replaced by the last good frame or silence; length kept."""
    x = as_mono_float32(audio)
    sr = _check_sr(sr)
    stutter_prob = _check_range("stutter_prob", stutter_prob, 0.0, 1.0)
    repeat_prob = _check_range("repeat_prob", repeat_prob, 0.0, 1.0)
    max_repeats = _check_int("max_repeats", max_repeats, 1)
    frame_ms = _check_range("frame_ms", frame_ms, 1.0, 1000.0)
    frame = max(1, round(sr * frame_ms / 1000.0))
    n_frames = len(x) // frame
    out = x.copy()
    # Draw everything up front: the same seed gives the same events whatever the signal holds.
    trigger = rng.random(n_frames) < stutter_prob
    lengths = rng.integers(1, max_repeats + 1, size=n_frames)
    repeat = rng.random(n_frames) < repeat_prob
    i, events, replaced = 1, 0, 0
    while i < n_frames:
        if not trigger[i]:
            i += 1
            continue
        run = min(int(lengths[i]), n_frames - i)
        block = out[(i - 1) * frame: i * frame] if repeat[i] else np.zeros(frame, np.float32)
        out[i * frame: (i + run) * frame] = np.tile(block, run)
        events += 1
        replaced += run
        i += run
    return PrimitiveOutput(out, {"events": events, "frames_replaced": replaced, "frames": n_frames})
