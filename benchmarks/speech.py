"""Real speech of fixed lengths, with reference transcripts, for the ASR benchmarks.

Why: latency, throughput and WER must be measured on the same human recordings for every system.
The sources are Debian's pocketsphinx-testdata (five LibriVox utterances, 24.7 s) and
asterisk-core-sounds-en-wav (563 prompts, 25 min, one speaker, 8 kHz). A clip of a target length
is built by concatenating utterances, separated by 0.3 s of silence, until the next one would
overshoot; its reference is the utterances' transcripts joined. Everything is deterministic (fixed
seed), so every run and every system sees the same audio.
"""

from __future__ import annotations

import io
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000
LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
GAP_S = 0.3
MIN_WORDS = 4


@dataclass(frozen=True)
class Clip:
    """One benchmark input: 16 kHz mono float32 audio and what was said."""

    name: str
    audio: np.ndarray
    reference: str

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    def wav_bytes(self) -> bytes:
        """PCM16 WAV, the upload both HTTP servers receive."""
        out = io.BytesIO()
        sf.write(out, self.audio, SAMPLE_RATE, format="WAV", subtype="PCM_16")
        return out.getvalue()


def _read16k(path: Path) -> np.ndarray:
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    return x if sr == SAMPLE_RATE else soxr.resample(x, sr, SAMPLE_RATE).astype(np.float32)


def _librivox() -> list[tuple[np.ndarray, str]]:
    from simulation.manifests import from_librivox

    return [(_read16k(Path(row["path"])), row["text"]) for row in from_librivox(LIBRIVOX_DIR)]


def _asterisk() -> list[tuple[np.ndarray, str]]:
    from simulation.manifests import ASTERISK_DIR, asterisk_transcripts

    texts = asterisk_transcripts()
    # Sentences only: lone letters, digits and words ("d", "forty") make WER depend on spelling.
    names = sorted(n for n in texts if (ASTERISK_DIR / f"{n}.wav").is_file()
                   and len(texts[n].strip(". ").split()) >= MIN_WORDS and not texts[n].startswith("..."))
    # Transcripts carry notes such as "(4 seconds of silence)"; they are not speech.
    return [(_read16k(ASTERISK_DIR / f"{n}.wav"), " ".join(re.sub(r"\([^)]*\)", " ", texts[n]).split()))
            for n in names]


@lru_cache(maxsize=1)
def utterances() -> tuple[tuple[tuple[np.ndarray, str], ...], tuple[tuple[np.ndarray, str], ...]]:
    """(LibriVox, asterisk) utterances as (audio, transcript); missing packages raise clearly."""
    for path, package in ((LIBRIVOX_DIR, "pocketsphinx-testdata"),):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: install the Debian package {package}")
    return tuple(_librivox()), tuple(_asterisk())


def _fill(pool: list[tuple[np.ndarray, str]], seconds: float, rng: random.Random) -> tuple[np.ndarray, str]:
    """Concatenate random utterances from ``pool`` up to ``seconds`` (at least one)."""
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    parts: list[np.ndarray] = []
    refs: list[str] = []
    total = 0
    limit = int(seconds * SAMPLE_RATE)
    order = list(range(len(pool)))
    rng.shuffle(order)
    for index in order * 4:
        audio, text = pool[index]
        extra = len(audio) + (len(gap) if parts else 0)
        if total + extra > limit:
            if total >= 0.85 * limit:
                break
            continue
        if parts:
            parts.append(gap)
        parts.append(audio)
        refs.append(text)
        total += extra
    if not parts:
        raise ValueError(f"no utterance fits in {seconds} s")
    return np.concatenate(parts).astype(np.float32), " ".join(refs)


def clips(seconds: float, count: int, seed: int = 0) -> list[Clip]:
    """``count`` clips of about ``seconds`` of real speech (LibriVox first for long ones, then asterisk).

    Clips of 10 s or more mix LibriVox (read book speech, 16 kHz) with asterisk prompts; shorter
    ones are single or joined asterisk prompts, since every LibriVox utterance is longer than 3 s.
    """
    librivox, asterisk = utterances()
    rng = random.Random(f"{seconds}-{seed}")
    pool = list(asterisk) if seconds < 10 else list(librivox) + list(asterisk)
    out = []
    for i in range(count):
        audio, ref = _fill(pool, seconds, rng)
        out.append(Clip(f"{seconds:g}s-{i}", audio, ref))
    return out
