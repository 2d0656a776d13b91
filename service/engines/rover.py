"""ROVER: one transcript voted word by word from several models' transcripts of the same audio.

Why: robust adapters trained by the same recipe are level on average but wrong on different clips, so a
vote between them beats each one (Fiscus 1997, "Recognizer Output Voting Error Reduction"; round 31 in
docs/training.md). This is the pivot form of ROVER: every other transcript is aligned to one pivot with
jiwer's word alignment; each pivot word is a slot in which every transcript votes (its aligned word, or
"nothing" where it has no word there), and words that transcripts insert between two pivot words are kept
only when more than half of them insert the same words there. A slot's winner is the most voted entry,
the pivot's own on a tie. Without word confidences every vote weighs the same.

Words are compared by a key (the scorer's English normaliser applied to the word alone, spaces removed),
so "Press" and "press," or "1" and "one" agree; the output keeps a surface form (the pivot's where the
pivot voted for the winner, else the first voter's). Words whose key is empty (a lone dash) do not vote.
The default pivot is the medoid: the transcript with the fewest word edits to all the others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import jiwer

from service.engines.base import Segment, TranscriptionResult
from service.scoring import normalise_text, score

PIVOTS = ("first", "medoid")

Token = tuple[str, str]  # (key, surface form)


def tokens(text: str) -> list[Token]:
    """The voting tokens of a transcript: each whitespace word with its normalised key (empty keys dropped)."""
    out = []
    for word in text.split():
        key = normalise_text(word).replace(" ", "")
        if key:
            out.append((key, word))
    return out


def medoid(transcripts: Sequence[list[str]]) -> int:
    """Index of the key list with the fewest word edits to all the others (the first on a tie)."""
    joined = [" ".join(t) for t in transcripts]
    return min(range(len(joined)),
               key=lambda i: (sum(score(joined[i], t, normalise=False).word_edits for t in joined), i))


def combine_tokens(transcripts: Sequence[list[Token]], pivot: int = 0) -> list[Token]:
    """The voted token sequence of several transcripts, aligned to ``transcripts[pivot]``."""
    if not transcripts:
        raise ValueError("ROVER needs at least one transcript")
    if not 0 <= pivot < len(transcripts):
        raise ValueError(f"pivot {pivot} is not one of the {len(transcripts)} transcripts")
    spine = list(transcripts[pivot])
    slots: list[Counter] = [Counter({key: 1}) for key, _ in spine]
    surface: list[dict[str | None, str]] = [{key: word} for key, word in spine]
    inserts: list[Counter] = [Counter() for _ in range(len(spine) + 1)]
    inserted_surface: list[dict[tuple[str, ...], tuple[Token, ...]]] = [{} for _ in range(len(spine) + 1)]

    def insert(at: int, run: list[Token]) -> None:
        keys = tuple(key for key, _ in run)
        inserts[at][keys] += 1
        inserted_surface[at].setdefault(keys, tuple(run))

    for j, other in enumerate(transcripts):
        if j == pivot:
            continue
        spine_keys, other_keys = [k for k, _ in spine], [k for k, _ in other]
        for chunk in jiwer.process_words(" ".join(spine_keys), " ".join(other_keys)).alignments[0]:
            if chunk.type in ("equal", "substitute"):
                for k in range(chunk.ref_end_idx - chunk.ref_start_idx):
                    key, word = other[chunk.hyp_start_idx + k]
                    slots[chunk.ref_start_idx + k][key] += 1
                    surface[chunk.ref_start_idx + k].setdefault(key, word)
            elif chunk.type == "delete":
                for k in range(chunk.ref_start_idx, chunk.ref_end_idx):
                    slots[k][None] += 1
            else:
                insert(chunk.ref_start_idx, list(other[chunk.hyp_start_idx:chunk.hyp_end_idx]))
    majority = len(transcripts) / 2
    out: list[Token] = []
    for k in range(len(spine) + 1):
        if inserts[k]:
            keys, votes = inserts[k].most_common(1)[0]
            if votes > majority:
                out.extend(inserted_surface[k][keys])
        if k < len(spine):
            top = max(slots[k].values())
            own = spine[k][0]
            winner = own if slots[k][own] == top else slots[k].most_common(1)[0][0]
            if winner is not None:
                out.append((winner, surface[k][winner]))
    return out


def combine(transcripts: Sequence[str], pivot: str = "medoid") -> str:
    """ROVER of several transcripts of one audio; ``pivot`` is "first" or "medoid" (see the module doc)."""
    if pivot not in PIVOTS:
        raise ValueError(f"pivot must be one of {PIVOTS}, got {pivot!r}")
    if not transcripts:
        raise ValueError("ROVER needs at least one transcript")
    parsed = [tokens(t) for t in transcripts]
    index = 0 if pivot == "first" else medoid([[key for key, _ in p] for p in parsed])
    return " ".join(word for _, word in combine_tokens(parsed, index))


def ensemble_result(results: Sequence[TranscriptionResult]) -> TranscriptionResult:
    """One robust result from the ensemble's results for one audio (the main adapter's first).

    The text is the ROVER vote. Where it equals the main adapter's transcript word for word, the main
    result is served unchanged (segments, timestamps, word timings). Otherwise its segments collapse into
    one segment spanning the main result's segments (the whole audio when it had none) that carries the
    voted text: a vote has no timings of its own, so word timings are dropped there.
    """
    main = results[0]
    text = combine([r.text for r in results])
    if text.split() == main.text.split():
        return main
    first, last = (main.segments[0], main.segments[-1]) if main.segments else (None, None)
    segment = Segment(
        id=0, seek=first.seek if first else 0, start=first.start if first else 0.0,
        end=last.end if last else main.duration, text=" " + text if text else "", tokens=[],
        temperature=first.temperature if first else 0.0,
        avg_logprob=sum(s.avg_logprob for s in main.segments) / len(main.segments) if main.segments else 0.0,
        compression_ratio=first.compression_ratio if first else 0.0,
        no_speech_prob=first.no_speech_prob if first else None)
    return replace(main, text=text, segments=[segment] if text else [],
                   extras={**main.extras, "ensemble_voted": True})
