"""One answer from a robust ensemble's results: the ROVER vote, or the candidate the members find likeliest.

Why a second way: the vote counts words and never asks the models how well a transcript fits the audio
(docs/training.md, round 32). With ``ensemble_pick = "likelihood"`` the candidates are each member's
transcript and the vote (distinct word sequences, the main adapter's first); every member scores every
candidate teacher-forced on the window (:mod:`service.engines.candidate_scores`), the scores are averaged
over the members, and the best candidate is answered. A member's own transcript is answered with its own
result (segments and timings intact); the vote as :func:`service.engines.rover.ensemble_result` makes it.
Ties go to the earlier candidate, so the main adapter wins them.

Scoring needs one window: audio longer than one window (``CHUNK_SECONDS``, 30 s) is answered with the vote,
and the result says so (``extras["ensemble_pick"] = "vote"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from service.engines.base import TranscriptionResult
from service.engines.candidate_scores import window_scores
from service.engines.features import CHUNK_SECONDS, SAMPLE_RATE
from service.engines.rover import combine, ensemble_result


def candidate_texts(transcripts: Sequence[str]) -> list[str]:
    """The distinct candidates (same words: one candidate): the members' transcripts in order, then their vote."""
    texts: list[str] = []
    for text in [*transcripts, combine(transcripts)]:
        if text.split() not in [t.split() for t in texts]:
            texts.append(text)
    return texts


def best_candidate(scores: Sequence[Sequence[float]], n_candidates: int) -> int:
    """The candidate with the best score averaged over the members (``scores[member][candidate]``); ties: the first."""
    if not scores or any(len(s) != n_candidates for s in scores):
        raise ValueError(f"need every member's score for each of the {n_candidates} candidates")
    mean = [sum(s[i] for s in scores) / len(scores) for i in range(n_candidates)]
    return max(range(n_candidates), key=lambda i: (mean[i], -i))


def scorable(audio: np.ndarray) -> bool:
    """Whether the candidates can be scored on one window (at most 30 s of audio)."""
    return len(audio) <= CHUNK_SECONDS * SAMPLE_RATE


def ensemble_answer(results: Sequence[TranscriptionResult], audio: np.ndarray, pick: str,
                    transcribers: Sequence) -> TranscriptionResult:
    """One robust answer from the ensemble's ``results`` for ``audio`` (main adapter first), as ``pick`` says.

    ``transcribers`` are the members' :class:`~service.engines.transcriber.Transcriber` objects, in the order
    of ``results``; with ``pick = "likelihood"`` each scores every candidate with its own model.
    """
    if pick == "vote":
        return ensemble_result(results)
    if not scorable(audio):
        voted = ensemble_result(results)
        return replace(voted, extras={**voted.extras, "ensemble_pick": "vote"})
    texts = candidate_texts([r.text for r in results])
    if len(texts) == 1:
        return results[0]
    language = results[0].language
    scores = [window_scores(t.runner.model, t.log_mel, t.vocab, t.tokenizer, audio, texts, language)
              for t in transcribers]
    best = texts[best_candidate(scores, len(texts))]
    chosen = next((r for r in results if r.text.split() == best.split()), None) or ensemble_result(results)
    return replace(chosen, extras={**chosen.extras, "ensemble_pick": "likelihood"})
