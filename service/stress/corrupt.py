"""Corrupt 16 kHz audio with one scenario and encode it as WAV, deterministically.

The clip a user downloads is the exact signal the model heard: the simulated float signal is
quantised to 16-bit PCM first, and the model is given the quantised samples back. Same audio,
scenario, severity and seed give the same bytes on every call.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from service.audio import TARGET_SR
from service.errors import InvalidRequest
from simulation import simulate

_PCM16_PEAK = 32767.0
_PCM16_DECODE = 32768.0  # libsndfile's int16 -> float divisor


@dataclass(frozen=True)
class CorruptedClip:
    samples: np.ndarray  # float32, 16 kHz, exactly what ``wav`` decodes to
    wav: bytes
    record: dict


def corrupt(samples: np.ndarray, scenario: str, severity: float | None, seed: int) -> CorruptedClip:
    """Run the simulator (CPU-bound: call it off the event loop) and return WAV bytes plus the record."""
    try:
        result = simulate(samples, TARGET_SR, scenario, severity=severity, seed=seed)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="scenario") from None
    pcm = np.round(np.clip(result.audio, -1.0, 1.0) * _PCM16_PEAK).astype(np.int16)
    heard = pcm.astype(np.float32) / np.float32(_PCM16_DECODE)
    return CorruptedClip(heard, encode_wav(pcm), result.record())


def encode_wav(pcm: np.ndarray) -> bytes:
    """16-bit mono WAV at 16 kHz; libsndfile writes no timestamps, so bytes depend on samples only."""
    buf = io.BytesIO()
    sf.write(buf, pcm, TARGET_SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()
