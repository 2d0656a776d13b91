"""Text normalisation and error measures shared by evaluation, the stress endpoint, training and tests.

Why these choices (paper §6; the official evaluator uses ``whisper_normalizer``):

* English text goes through OpenAI Whisper's ``EnglishTextNormalizer`` as shipped by the MIT-licensed
  ``whisper-normalizer`` package, which carries the British→American spelling map ``english.json``.
  Other languages go through Whisper's ``BasicTextNormalizer`` (lower-case, symbols out).
* Alignment and counts come from ``jiwer.process_words``; nothing here re-implements edit distance.
* **Empty references.** A rate is ``edits / max(reference_length, 1)``. Empty reference and empty
  hypothesis give 0.0; an empty reference with *k* hypothesis words gives ``k`` insertions and a WER of
  ``k`` (not ``inf``): finite, JSON-serialisable, monotone in the amount hallucinated on silence, and the
  raw counts still micro-average correctly because :func:`corpus_score` sums counts, never rates.
* **CER** is computed on the normalised text with all whitespace removed (as the benchmark evaluator does
  for Chinese), so word boundaries are not counted as characters.
* **Repetition.** A hypothesis "repeats" when some word n-gram (default n=3) occurs at least ``threshold``
  times (default 3), counting overlapping occurrences. This catches decoder loops ("the the the the the",
  a phrase said three times) while a natural sentence essentially never repeats a trigram three times.
  :func:`compression_ratio` (Whisper's gzip test, > 2.4 is suspicious) is offered as a second measure but
  not used for flags: on short utterances the zlib header dominates and the ratio means little.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from typing import Literal

import jiwer
from pydantic import BaseModel, ConfigDict, computed_field
from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

ENGLISH = "en"
DEFAULT_REPEAT_N = 3
DEFAULT_REPEAT_THRESHOLD = 3
DEFAULT_MAX_INSERTION_RATE = 0.2
DEFAULT_MAX_DELETION_RATE = 0.2
WHISPER_COMPRESSION_RATIO_LIMIT = 2.4

_TOKEN_PATTERN = re.compile(r"[\w']+")


@lru_cache(maxsize=1)
def _english_normaliser() -> EnglishTextNormalizer:
    # Loading english.json costs a few ms; build the normaliser once per process.
    return EnglishTextNormalizer()


@lru_cache(maxsize=1)
def _basic_normaliser() -> BasicTextNormalizer:
    return BasicTextNormalizer()


def normalise_english(text: str) -> str:
    """Whisper's English normaliser: spelling map, numbers to digits, contractions, no punctuation."""
    return _collapse_spaces(_english_normaliser()(text))


def normalise_basic(text: str) -> str:
    """Whisper's language-agnostic normaliser: lower-case, brackets and symbols removed."""
    return _collapse_spaces(_basic_normaliser()(text))


def normalise_text(text: str, language: str = ENGLISH) -> str:
    """Pick the normaliser the paper's evaluator uses for ``language`` (``en`` → English, else basic)."""
    if language.lower().startswith(ENGLISH):
        return normalise_english(text)
    return normalise_basic(text)


def _collapse_spaces(text: str) -> str:
    return " ".join(text.split())


def error_rate(edits: int, reference_length: int) -> float:
    """``edits / max(reference_length, 1)``: the module-wide convention that keeps empty references finite."""
    return edits / max(reference_length, 1)


class Score(BaseModel):
    """Edit counts for one utterance (or a corpus, once summed); rates are derived from counts."""

    model_config = ConfigDict(frozen=True)

    hits: int
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int
    hypothesis_words: int
    char_edits: int
    reference_chars: int

    @computed_field
    @property
    def word_edits(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @computed_field
    @property
    def wer(self) -> float:
        return error_rate(self.word_edits, self.reference_words)

    @computed_field
    @property
    def cer(self) -> float:
        return error_rate(self.char_edits, self.reference_chars)

    @computed_field
    @property
    def insertion_rate(self) -> float:
        return error_rate(self.insertions, self.reference_words)

    @computed_field
    @property
    def deletion_rate(self) -> float:
        return error_rate(self.deletions, self.reference_words)

    def __add__(self, other: Score) -> Score:
        """Sum the counts: the basis of micro-averaging."""
        return Score(
            hits=self.hits + other.hits,
            substitutions=self.substitutions + other.substitutions,
            deletions=self.deletions + other.deletions,
            insertions=self.insertions + other.insertions,
            reference_words=self.reference_words + other.reference_words,
            hypothesis_words=self.hypothesis_words + other.hypothesis_words,
            char_edits=self.char_edits + other.char_edits,
            reference_chars=self.reference_chars + other.reference_chars,
        )


EMPTY_SCORE = Score(
    hits=0,
    substitutions=0,
    deletions=0,
    insertions=0,
    reference_words=0,
    hypothesis_words=0,
    char_edits=0,
    reference_chars=0,
)


def score(reference: str, hypothesis: str, normalise: bool = True, language: str = ENGLISH) -> Score:
    """Word and character edit counts of ``hypothesis`` against ``reference``.

    With ``normalise`` both sides go through :func:`normalise_text` first; without it only whitespace is
    collapsed, so case and punctuation count as errors.
    """
    if normalise:
        reference, hypothesis = normalise_text(reference, language), normalise_text(hypothesis, language)
    else:
        reference, hypothesis = _collapse_spaces(reference), _collapse_spaces(hypothesis)
    words = jiwer.process_words(reference, hypothesis)
    ref_chars, hyp_chars = "".join(reference.split()), "".join(hypothesis.split())
    chars = jiwer.process_characters(ref_chars, hyp_chars)
    return Score(
        hits=words.hits,
        substitutions=words.substitutions,
        deletions=words.deletions,
        insertions=words.insertions,
        reference_words=len(words.references[0]),
        hypothesis_words=len(words.hypotheses[0]),
        char_edits=chars.substitutions + chars.deletions + chars.insertions,
        reference_chars=len(ref_chars),
    )


def corpus_score(pairs: Iterable[tuple[str, str]], normalise: bool = True, language: str = ENGLISH) -> Score:
    """Micro-averaged score over ``(reference, hypothesis)`` pairs: Σedits / Σreference words (paper §6)."""
    return sum((score(ref, hyp, normalise, language) for ref, hyp in pairs), EMPTY_SCORE)


def repetition_tokens(text: str, unit: Literal["word", "char"] = "word") -> list[str]:
    """Case-folded word tokens without punctuation (or non-space characters) for repetition checks."""
    if unit == "char":
        return [c for c in text.casefold() if not c.isspace()]
    return _TOKEN_PATTERN.findall(text.casefold())


def max_ngram_count(text: str, n: int = DEFAULT_REPEAT_N, unit: Literal["word", "char"] = "word") -> int:
    """How often the most frequent n-gram occurs (overlapping occurrences count); 0 if text is too short."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tokens = repetition_tokens(text, unit)
    grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return max(grams.values(), default=0)


def repeated_ngram(
    text: str,
    n: int = DEFAULT_REPEAT_N,
    threshold: int = DEFAULT_REPEAT_THRESHOLD,
    unit: Literal["word", "char"] = "word",
) -> bool:
    """True when some n-gram occurs ``threshold`` or more times: the decoder-loop hallucination signal."""
    return max_ngram_count(text, n, unit) >= threshold


def compression_ratio(text: str) -> float:
    """Whisper's repetition measure: UTF-8 length / zlib-compressed length (> 2.4 flags a loop)."""
    data = text.encode("utf-8")
    if not data:
        return 0.0
    return len(data) / len(zlib.compress(data))


def hallucination_flag(
    score: Score,
    hypothesis: str,
    max_insertion_rate: float = DEFAULT_MAX_INSERTION_RATE,
    repeat_n: int = DEFAULT_REPEAT_N,
    repeat_threshold: int = DEFAULT_REPEAT_THRESHOLD,
) -> bool:
    """Words the speaker never said: insertion rate above ``max_insertion_rate`` or a repeated n-gram.

    Any word transcribed over an empty reference is a hallucination (its insertion rate is >= 1).
    """
    return score.insertion_rate > max_insertion_rate or repeated_ngram(hypothesis, repeat_n, repeat_threshold)


def omission_flag(score: Score, max_deletion_rate: float = DEFAULT_MAX_DELETION_RATE) -> bool:
    """Speech the model dropped: deletion rate above ``max_deletion_rate``."""
    return score.deletion_rate > max_deletion_rate
