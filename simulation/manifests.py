"""Clean-speech manifests: JSONL rows of ``{"path": ..., "text": ...}`` read, checked and made.

Why line numbers everywhere: a manifest of millions of lines is fixed by hand, so every problem
(bad JSON, missing file, unreadable audio, empty text) is reported as ``line N: reason``.
Relative paths are resolved against the manifest's folder. ``audio_path``/``answer`` (the paper's
field names) are accepted as synonyms of ``path``/``text``.

Helpers make manifests from a folder of ``x.wav`` + ``x.txt`` pairs and from the Debian speech
packages: ``pocketsphinx-testdata`` (LibriVox, 16 kHz) and ``asterisk-core-sounds-en`` (8 kHz
telephone prompts). The asterisk prompts listed in ``eval-reserved-prompts.txt`` are the evaluation
split: they are excluded by default (also any other prompt reading the same sentence), and
``split="eval"`` returns only them.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
RESERVED_PROMPTS = Path("/work/shared/data/eval-reserved-prompts.txt")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class ManifestEntry:
    """One usable manifest line."""

    line: int
    path: str
    text: str
    extra: dict[str, Any]


@dataclass(frozen=True)
class ManifestProblem:
    """One unusable manifest line and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class ManifestError(ValueError):
    """Raised when bad lines must fail the run; lists every problem with its line number."""

    def __init__(self, manifest: str | Path, problems: list[ManifestProblem]) -> None:
        self.problems = problems
        shown = "\n  ".join(str(p) for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{manifest}: {len(problems)} bad line(s):\n  {shown}{more}")


def parse_line(raw: str, line: int, base: Path, check_audio: bool = True) -> ManifestEntry | ManifestProblem:
    """Parse and check one JSONL line."""
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as exc:
        return ManifestProblem(line, f"bad JSON ({exc.msg})")
    if not isinstance(row, dict):
        return ManifestProblem(line, "not a JSON object")
    path = row.get("path", row.get("audio_path"))
    text = row.get("text", row.get("answer"))
    if not isinstance(path, str) or not path.strip():
        return ManifestProblem(line, "missing 'path'")
    if not isinstance(text, str) or not text.strip():
        return ManifestProblem(line, "empty text")
    full = Path(path) if Path(path).is_absolute() else base / path
    if not full.is_file():
        return ManifestProblem(line, f"missing file {path}")
    if check_audio:
        try:
            info = sf.info(full)
            if info.frames <= 0:
                return ManifestProblem(line, f"empty audio {path}")
        except Exception as exc:  # noqa: BLE001 - soundfile raises several types for corrupt files
            return ManifestProblem(line, f"unreadable audio {path} ({type(exc).__name__})")
    extra = {k: v for k, v in row.items() if k not in ("path", "audio_path", "text", "answer")}
    return ManifestEntry(line, str(full), text.strip(), extra)


def read_manifest(
    manifest: str | Path, check_audio: bool = True
) -> tuple[list[ManifestEntry], list[ManifestProblem]]:
    """All usable entries and all problems, by line number (blank lines are ignored)."""
    path = Path(manifest)
    entries: list[ManifestEntry] = []
    problems: list[ManifestProblem] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            parsed = parse_line(raw, line, path.parent, check_audio)
            (entries if isinstance(parsed, ManifestEntry) else problems).append(parsed)
    return entries, problems


def write_manifest(rows: Iterable[dict[str, Any]], out: str | Path) -> int:
    """Write rows as JSONL; returns how many."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


# --------------------------------------------------------------------------- helpers
def from_folder(folder: str | Path) -> list[dict[str, Any]]:
    """Rows for every audio file with a same-named ``.txt`` transcript (searched recursively)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    rows = []
    for audio in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        txt = audio.with_suffix(".txt")
        if txt.is_file() and txt.read_text(encoding="utf-8").strip():
            rows.append({"path": str(audio), "text": " ".join(txt.read_text(encoding="utf-8").split())})
    return rows


def from_librivox(folder: str | Path = LIBRIVOX_DIR) -> list[dict[str, Any]]:
    """Rows for pocketsphinx-testdata's LibriVox clips (its ``transcription`` file, Sphinx format)."""
    folder = Path(folder)
    transcript = folder / "transcription"
    if not transcript.is_file():
        raise ValueError(f"{transcript} not found: install the Debian package pocketsphinx-testdata")
    rows = []
    for raw in transcript.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\s*(?:<s>)?\s*(.*?)\s*(?:</s>)?\s*\(([^)]+)\)\s*$", raw)
        if not match:
            continue
        text, file_id = match.groups()
        wav = folder / f"{file_id}.wav"
        if wav.is_file() and text:
            rows.append({"path": str(wav), "text": text, "id": file_id})
    return rows


def reserved_prompts(path: str | Path = RESERVED_PROMPTS) -> set[str]:
    """Names of the asterisk prompts reserved for evaluation (comments and blanks ignored)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"reserved-prompt list {path} not found; pass its path explicitly")
    return {s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip() and not s.startswith("#")}


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def asterisk_transcripts(transcripts: str | Path = ASTERISK_TRANSCRIPTS) -> dict[str, str]:
    """Prompt name -> sentence, from core-sounds-en.txt(.gz); non-speech ``[...]`` entries dropped."""
    path = Path(transcripts)
    if not path.is_file():
        raise ValueError(f"{path} not found: install the Debian package asterisk-core-sounds-en")
    opener = gzip.open if path.suffix == ".gz" else open
    out = {}
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for raw in f:
            if raw.startswith(";") or ":" not in raw:
                continue
            name, text = raw.split(":", 1)
            text = " ".join(text.split())
            if name.strip() and text and not (text.startswith("[") and text.endswith("]")):
                out[name.strip()] = text
    return out


def from_asterisk(
    split: str = "train",
    sounds_dir: str | Path = ASTERISK_DIR,
    transcripts: str | Path = ASTERISK_TRANSCRIPTS,
    reserved: str | Path = RESERVED_PROMPTS,
) -> list[dict[str, Any]]:
    """Rows for the asterisk prompts: ``split="train"`` excludes the evaluation prompts, "eval" is only them.

    Excluded from train: every reserved name, and every other prompt whose sentence equals a
    reserved prompt's sentence (so the evaluation sentences are never trained on in another file).
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    sounds_dir = Path(sounds_dir)
    texts = asterisk_transcripts(transcripts)
    held_out = reserved_prompts(reserved)
    held_sentences = {_normalise(texts[n]) for n in held_out if n in texts}
    rows = []
    for name, text in sorted(texts.items()):
        wav = sounds_dir / f"{name}.wav"
        if not wav.is_file():
            continue
        is_eval = name in held_out
        if split == "eval" and not is_eval:
            continue
        if split == "train" and (is_eval or _normalise(text) in held_sentences):
            continue
        rows.append({"path": str(wav), "text": text, "id": name})
    return rows
