"""Extra training text: sentences of public-domain prose for the TTS voices to read.

Why: the Asterisk prompts leave 394 distinct training sentences, and an adapted decoder learns to say them
back when it cannot hear the audio (``training.recitation``; docs/training.md, GPU run 2). TTS can read any
text, so more distinct sentences cost only synthesis and simulation. The default source is Ambrose Bierce's
*The Devil's Dictionary* (1911, public domain), shipped by Debian's ``dict-devil`` as a dictd file; any
plain or gzip-compressed text file works. Sentences are cleaned conservatively (letters and ordinary
punctuation only, 4 to ``max_words`` words, no all-capital headwords), so flite can say them and the
reference the model learns from is exactly what was said.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

from training.sources import CleanUtterance, ReservedGuard, text_split

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"']?[A-Z])")
_SPEAKABLE = re.compile(r"[A-Za-z][A-Za-z ,;:'\-]*[A-Za-z][.!?]")
_HEADWORD = re.compile(r"\b[A-Z]{2,}\b")


def read_text(path: str | Path) -> str:
    """A text file, gunzipped when it is gzip (``.gz``; dictd's ``.dict.dz`` is gzip too)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="replace")


def prose_sentences(text: str, min_words: int = 4, max_words: int = 40) -> list[str]:
    """The speakable sentences of a text, in order, each once.

    Paragraphs are blank-line separated and their lines joined; italics markers (``_``) and double hyphens
    are dropped. A sentence is kept only if it is letters, spaces and ``,;:'-`` ending in ``.``, ``!`` or
    ``?`` (no digits, quotes, brackets: what is read is what is written) without an all-capital word.
    """
    seen: set[str] = set()
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        joined = " ".join(re.sub(r"\s*--\s*", ", ", paragraph.replace("_", "")).split())
        for sentence in _SENTENCE_END.split(joined):
            sentence = sentence.strip().strip("\"'")
            words = sentence.split()
            if not (min_words <= len(words) <= max_words) or not _SPEAKABLE.fullmatch(sentence):
                continue
            if _HEADWORD.search(sentence) or sentence in seen:
                continue
            seen.add(sentence)
            out.append(sentence)
    return out


def extra_text_utterances(sources: list[str], voices: list[str], max_sentences: int | None, max_words: int,
                          val_fraction: float, seed: int, guard: ReservedGuard) -> list[CleanUtterance]:
    """TTS requests for the training split: one voice per sentence, the voices taken in turn.

    Only sentences that the sentence-level split sends to ``train`` are used, so the validation split
    (Asterisk sentences and the LibriVox reader) stays exactly what it was and sentence-disjoint; any
    sentence that touches the evaluation split is dropped. ``max_sentences`` draws a seeded subset.
    """
    if not voices:
        raise ValueError("extra text needs at least one training voice")
    sentences: list[str] = []
    for source in sources:
        sentences += [s for s in prose_sentences(read_text(source), max_words=max_words)
                      if text_split(s, val_fraction, seed) == "train"]
    sentences = list(dict.fromkeys(sentences))
    if max_sentences is not None and len(sentences) > max_sentences:
        keep = np.random.default_rng(seed).choice(len(sentences), max_sentences, replace=False)
        sentences = [sentences[i] for i in sorted(keep)]
    utterances = []
    for i, sentence in enumerate(sentences):
        voice = voices[i % len(voices)]
        utt = CleanUtterance(f"txt-{voice}-{i:05d}", sentence, f"flite-{voice}", "tts", None, None)
        if guard.violation(utt) is None:
            utterances.append(utt)
    return utterances
