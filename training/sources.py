"""Clean English speech available on this machine, and the guard that keeps the eval split out.

Three sources: the Asterisk core prompts (one real speaker, Allison, 8 kHz, with a transcript
file), the five LibriVox utterances of pocketsphinx-testdata (one real reader), and flite voices
reading prompt sentences (more speakers). The prompt names in ``eval-reserved-prompts.txt`` are
the evaluation split: :func:`check_not_reserved` refuses any training utterance that is such a
recording or that shares a sentence with one (so TTS cannot read them either).
"""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from service.scoring import normalise_english

SAMPLE_RATE = 16_000
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")


class ReservedPromptError(ValueError):
    """A training utterance touches the evaluation split."""


@dataclass(frozen=True)
class CleanUtterance:
    """One clean recording (or a TTS request) with its transcript."""

    id: str
    text: str
    speaker: str
    source: str  # "asterisk" | "librivox" | "tts"
    audio_path: str | None = None  # None for TTS until synthesised
    prompt_name: str | None = None  # Asterisk prompt name, when the text comes from one


def read_reserved_names(path: str | Path) -> set[str]:
    """Prompt names of the evaluation split (comments and blank lines ignored)."""
    lines = Path(path).read_text().splitlines()
    return {ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")}


def read_asterisk_transcripts(path: str | Path) -> dict[str, str]:
    """``name: text`` lines of the Asterisk transcript file; bracketed non-speech entries skipped."""
    opener = gzip.open if str(path).endswith(".gz") else open
    out: dict[str, str] = {}
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith(";") or ":" not in line:
                continue
            name, _, text = line.partition(":")
            text = text.strip()
            if not text or text.startswith("["):
                continue
            out[name.strip()] = text
    return out


def sentence_keys(text: str) -> set[str]:
    """Normalised sentences of a text: two texts that share one share spoken content."""
    keys = {normalise_english(s) for s in _SENTENCE_SPLIT.split(text.strip())}
    return {k for k in keys if k}


@dataclass(frozen=True)
class ReservedGuard:
    """What the evaluation split owns: prompt names and their sentences."""

    names: frozenset[str]
    sentences: frozenset[str]

    @classmethod
    def from_files(cls, reserved_path: str | Path, transcripts_path: str | Path) -> ReservedGuard:
        names = read_reserved_names(reserved_path)
        transcripts = read_asterisk_transcripts(transcripts_path)
        missing = sorted(n for n in names if n not in transcripts)
        if missing:
            raise ValueError(f"reserved prompts without a transcript: {missing[:5]}")
        sentences: set[str] = set()
        for name in names:
            sentences |= sentence_keys(transcripts[name])
        return cls(frozenset(names), frozenset(sentences))

    def violation(self, utt: CleanUtterance) -> str | None:
        """Why ``utt`` may not be trained on, or None."""
        if utt.prompt_name is not None and utt.prompt_name in self.names:
            return f"{utt.id}: prompt {utt.prompt_name!r} is reserved for evaluation"
        if utt.audio_path is not None and Path(utt.audio_path).stem in self.names:
            return f"{utt.id}: recording {utt.audio_path} is reserved for evaluation"
        shared = sentence_keys(utt.text) & self.sentences
        if shared:
            return f"{utt.id}: shares the reserved sentence {min(shared)!r}"
        return None


def check_not_reserved(utterances: list[CleanUtterance], guard: ReservedGuard) -> None:
    """Raise :class:`ReservedPromptError` if any utterance belongs to the evaluation split."""
    problems = [v for v in (guard.violation(u) for u in utterances) if v]
    if problems:
        raise ReservedPromptError(f"{len(problems)} training utterances touch the eval split, e.g. {problems[0]}")


def asterisk_utterances(audio_dir: str | Path, transcripts: dict[str, str],
                        names: set[str] | None = None) -> list[CleanUtterance]:
    """Allison's recordings of the root-folder prompts (optionally only ``names``)."""
    out = []
    for name, text in sorted(transcripts.items()):
        if "/" in name or (names is not None and name not in names):
            continue
        path = Path(audio_dir) / f"{name}.wav"
        if path.exists():
            out.append(CleanUtterance(f"ast-{name}", text, "allison", "asterisk", str(path), name))
    return out


def librivox_utterances(folder: str | Path) -> list[CleanUtterance]:
    """The LibriVox reader of pocketsphinx-testdata (lower-case, unpunctuated transcripts)."""
    from simulation.manifests import from_librivox

    return [CleanUtterance(f"lv-{row['id']}", row["text"][:1].upper() + row["text"][1:] + ".", "librivox",
                           "librivox", row["path"]) for row in from_librivox(folder)]


def tts_utterances(texts: dict[str, str], voices: list[str]) -> list[CleanUtterance]:
    """One TTS request per (sentence, voice); synthesised later by :func:`synthesise`."""
    return [CleanUtterance(f"tts-{voice}-{name}", text, f"flite-{voice}", "tts", None, name)
            for voice in voices for name, text in sorted(texts.items())]


def sentence_split(key: str, val_fraction: float, seed: int) -> str:
    """Deterministic "train"/"val" assignment of a sentence (hash of its key, not Python's hash)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def text_split(text: str, val_fraction: float, seed: int) -> str | None:
    """"train" or "val" when every sentence of ``text`` agrees, else None (the text is dropped)."""
    sides = {sentence_split(k, val_fraction, seed) for k in sentence_keys(text)}
    return sides.pop() if len(sides) == 1 else None


def synthesise(text: str, voice: str, out_path: Path) -> Path:
    """Speak ``text`` with flite ``voice`` into a 16 kHz mono wav at ``out_path``."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", tmp.name], check=True,
                       capture_output=True)
        audio, sr = sf.read(tmp.name, dtype="float32", always_2d=True)
    write_audio(out_path, to_16k(audio.mean(axis=1), sr))
    return out_path


def to_16k(audio: np.ndarray, sr: int) -> np.ndarray:
    """Mono float32 at 16 kHz (soxr high quality)."""
    audio = np.asarray(audio, dtype=np.float32)
    if sr != SAMPLE_RATE:
        audio = soxr.resample(audio, sr, SAMPLE_RATE).astype(np.float32)
    return audio


def read_audio(path: str | Path) -> np.ndarray:
    """Any readable file → mono float32 16 kHz (``.raw``: headerless 16-bit 16 kHz PCM, pocketsphinx's)."""
    if str(path).endswith(".raw"):
        return (np.fromfile(str(path), dtype="<i2").astype(np.float32) / 32768.0)
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return to_16k(audio.mean(axis=1), sr)


def telephone_band(audio: np.ndarray) -> np.ndarray:
    """Through 8 kHz and back: clean speech as a telephone or an 8 kHz prompt delivers it."""
    return soxr.resample(soxr.resample(audio, SAMPLE_RATE, 8000), 8000, SAMPLE_RATE)[: len(audio)].astype(np.float32)


def write_audio(path: str | Path, audio: np.ndarray) -> None:
    """16-bit PCM wav at 16 kHz (what every stage reads back)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")


def speech_end_seconds(audio: np.ndarray, floor_db: float = -40.0) -> float:
    """Last 20 ms frame whose energy is within ``floor_db`` of the loudest (the timestamp target)."""
    frame = SAMPLE_RATE // 50
    n = len(audio) // frame
    if n == 0:
        return len(audio) / SAMPLE_RATE
    energy = (audio[: n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-12
    level = 10 * np.log10(energy)
    active = np.nonzero(level > level.max() + floor_db)[0]
    return float(min(n, active[-1] + 2) * frame / SAMPLE_RATE) if len(active) else len(audio) / SAMPLE_RATE
