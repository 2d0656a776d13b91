"""Where additive noise comes from: coloured noise generated on the fly, or a folder of recordings.

Why a folder: the paper's noise pool (MUSAN, DNS, ESC-50, UrbanSound8K) is not redistributable
here, so a noise bank is simply a directory of audio files (wav/flac/ogg, any rate, any channels).
Point ``NoiseBank`` at MUSAN or your own recordings; ``build_noise_bank`` fills a folder from what
is on a Debian machine: CC0 clips from ``sonic-pi-samples``, generated white/pink/brown noise, and
babble mixed from several other speech recordings. Without a bank, ``SyntheticNoise`` generates
white, pink or brown noise from the seed, so simulation never needs files.

Every source implements ``sample(n, sr, rng) -> (noise, info)``: a float32 clip of ``n`` samples
(tiled if the recording is shorter, from a seeded random offset) and a JSON-serialisable record.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf
import soxr

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
COLOURS = ("white", "pink", "brown")
SONIC_PI_DIR = Path("/usr/share/sonic-pi/samples")
SONIC_PI_PREFIXES = ("ambi_", "loop_", "vinyl_", "misc_", "guit_", "elec_hollow", "perc_")


class NoiseSource(Protocol):
    """Anything that hands out noise clips for ``add_noise``."""

    def sample(self, n: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]: ...


def coloured_noise(colour: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f^2 power) noise with unit RMS, shaped in the FFT domain."""
    if colour not in COLOURS:
        raise ValueError(f"colour must be one of {COLOURS}, got {colour!r}")
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    white = rng.standard_normal(n)
    if colour != "white":
        spectrum = np.fft.rfft(white)
        f = np.arange(spectrum.size, dtype=np.float64)
        f[0] = 1.0
        spectrum /= f ** (0.5 if colour == "pink" else 1.0)
        spectrum[0] = 0.0
        white = np.fft.irfft(spectrum, n)
    rms = np.sqrt(np.mean(white**2))
    return (white / rms if rms > 0 else white).astype(np.float32)


class SyntheticNoise:
    """Seeded white/pink/brown noise: the default when no noise bank is given."""

    def __init__(self, colours: Sequence[str] = COLOURS) -> None:
        bad = [c for c in colours if c not in COLOURS]
        if bad or not colours:
            raise ValueError(f"colours must be a non-empty subset of {COLOURS}, got {list(colours)}")
        self.colours = tuple(colours)

    def sample(self, n: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        colour = self.colours[int(rng.integers(len(self.colours)))]
        return coloured_noise(colour, n, rng), {"source": f"synthetic:{colour}"}


class NoiseBank:
    """A folder of noise recordings (searched recursively), read lazily and cached after resampling."""

    def __init__(self, folder: str | Path, cache_clips: int = 64) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"noise bank folder {str(self.folder)!r} does not exist")
        self.files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not self.files:
            raise ValueError(f"noise bank {str(self.folder)!r} holds no {'/'.join(AUDIO_SUFFIXES)} files")
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_clips = cache_clips
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"NoiseBank({str(self.folder)!r}, {len(self.files)} files)"

    def load(self, index: int, sr: int) -> np.ndarray:
        """Clip ``index`` as mono float32 at ``sr`` (cached)."""
        key = (index, sr)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        data, file_sr = sf.read(self.files[index], dtype="float32", always_2d=True)
        clip = data.mean(axis=1)
        if file_sr != sr:
            clip = soxr.resample(clip, file_sr, sr).astype(np.float32)
        with self._lock:  # the service may call simulate() from several threads
            self._cache[key] = clip
            if len(self._cache) > self._cache_clips:
                self._cache.popitem(last=False)
        return clip

    def sample(self, n: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        index = int(rng.integers(len(self.files)))
        clip = self.load(index, sr)
        offset = int(rng.integers(len(clip))) if len(clip) else 0
        if len(clip) == 0 or not np.any(clip):
            return coloured_noise("white", n, rng), {"source": "synthetic:white",
                                                     "note": f"{self.files[index].name} is silent"}
        reps = -(-(n + offset) // len(clip))
        noise = np.tile(clip, reps)[offset: offset + n]
        return noise.astype(np.float32), {
            "source": str(self.files[index].relative_to(self.folder)),
            "offset_s": round(offset / sr, 3),
        }


@lru_cache(maxsize=8)
def _bank_for_folder(folder: str) -> NoiseBank:
    """One NoiseBank (file list + clip cache) per folder, so repeated calls do not rescan it."""
    return NoiseBank(folder)


def as_noise_source(noise_bank: NoiseSource | str | Path | None) -> NoiseSource:
    """Accept a source object, a folder path, or None (synthetic coloured noise)."""
    if noise_bank is None:
        return SyntheticNoise()
    if isinstance(noise_bank, (str, Path)):
        return _bank_for_folder(str(Path(noise_bank).resolve()))
    if not hasattr(noise_bank, "sample"):
        raise ValueError("noise_bank must be a folder path, a NoiseBank, or an object with .sample()")
    return noise_bank


# --------------------------------------------------------------------------- building a bank
def make_babble(speech: Sequence[np.ndarray], rng: np.random.Generator, n: int, talkers: int) -> np.ndarray:
    """Sum ``talkers`` speech clips (tiled from random offsets), each at equal RMS."""
    out = np.zeros(n, dtype=np.float64)
    for i in rng.choice(len(speech), size=min(talkers, len(speech)), replace=False):
        clip = np.asarray(speech[i], dtype=np.float64)
        rms = np.sqrt(np.mean(clip**2))
        if rms <= 0:
            continue
        offset = int(rng.integers(len(clip)))
        tiled = np.tile(clip, -(-(n + offset) // len(clip)))[offset: offset + n]
        out += tiled / rms
    peak = np.max(np.abs(out))
    return (0.5 * out / peak if peak > 0 else out).astype(np.float32)


def _read_mono(path: Path, sr: int) -> np.ndarray:
    data, file_sr = sf.read(path, dtype="float32", always_2d=True)
    clip = data.mean(axis=1)
    return soxr.resample(clip, file_sr, sr).astype(np.float32) if file_sr != sr else clip


def build_noise_bank(
    out_dir: str | Path,
    sr: int = 16000,
    speech_files: Iterable[str | Path] = (),
    sonic_pi_dir: str | Path | None = SONIC_PI_DIR,
    coloured_per_kind: int = 2,
    babble_clips: int = 10,
    talkers: int = 6,
    seconds: float = 20.0,
    seed: int = 0,
) -> dict[str, int]:
    """Fill ``out_dir`` with FLAC noise: sonic-pi CC0 clips, coloured noise, and babble.

    Returns how many files of each kind were written; writes ``SOURCES.json`` recording where each
    file came from (the sonic-pi samples are CC0; babble inherits the speech recordings' licence).
    """
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    counts = {"sonic_pi": 0, "coloured": 0, "babble": 0}
    sources: dict[str, str] = {}
    (out / "generated").mkdir(parents=True, exist_ok=True)
    for colour in COLOURS:
        for k in range(coloured_per_kind):
            name = f"generated/{colour}_{k:02d}.flac"
            sf.write(out / name, 0.25 * coloured_noise(colour, n, rng) / 4.0, sr)
            sources[name] = f"generated {colour} noise, seed {seed}"
            counts["coloured"] += 1
    if sonic_pi_dir is not None and Path(sonic_pi_dir).is_dir():
        (out / "sonic_pi").mkdir(exist_ok=True)
        for path in sorted(Path(sonic_pi_dir).glob("*.flac")):
            if not path.name.startswith(SONIC_PI_PREFIXES):
                continue
            clip = _read_mono(path, sr)
            if len(clip) < sr // 2 or not np.any(clip):
                continue
            name = f"sonic_pi/{path.name}"
            sf.write(out / name, clip, sr)
            sources[name] = f"{path} (sonic-pi-samples, CC0)"
            counts["sonic_pi"] += 1
    speech = [_read_mono(Path(p), sr) for p in speech_files]
    speech = [s for s in speech if len(s) and np.any(s)]
    if len(speech) >= 2:
        (out / "babble").mkdir(exist_ok=True)
        for k in range(babble_clips):
            name = f"babble/babble_{k:02d}.flac"
            sf.write(out / name, make_babble(speech, rng, n, talkers), sr)
            sources[name] = f"babble of {min(talkers, len(speech))} talkers from {len(speech)} speech files"
            counts["babble"] += 1
    (out / "SOURCES.json").write_text(json.dumps(sources, indent=1) + "\n")
    return counts
