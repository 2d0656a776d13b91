"""Shared fixtures: a real speech recording when the Debian test data is installed, else a stand-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def speech_like(seconds: float, sr: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic bursts separated by silences, and the ground-truth activity per sample."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    active = np.zeros(n, dtype=bool)
    pos = int(0.1 * sr)
    while pos < n:
        length = int(rng.uniform(0.15, 0.5) * sr)
        active[pos: pos + length] = True
        pos += length + int(rng.uniform(0.1, 0.3) * sr)
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    audio = 0.1 * voiced * active
    return audio.astype(np.float32), active


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, int]:
    """About 7 s of read English speech at 16 kHz (LibriVox via pocketsphinx-testdata)."""
    path = LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0870.wav"
    if path.exists():
        audio, sr = sf.read(path, dtype="float32")
        return audio, sr
    audio, _ = speech_like(7.0, 16000)
    return audio, 16000
