"""Render a :class:`TranscriptionResult` in each OpenAI response format."""

from __future__ import annotations

from service.api.protocol import SegmentOut, TranscriptionJSON, TranscriptionVerboseJSON, Usage, WordOut
from service.engines.base import TranscriptionResult
from service.engines.vocabulary import LANGUAGE_NAMES


def _timestamp(seconds: float, decimal: str) -> str:
    millis = round(max(seconds, 0.0) * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def to_srt(result: TranscriptionResult) -> str:
    blocks = [f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text.strip()}\n"
              for i, s in enumerate(result.segments, start=1)]
    return "\n".join(blocks)


def to_vtt(result: TranscriptionResult) -> str:
    blocks = [f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text.strip()}\n"
              for s in result.segments]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_json(result: TranscriptionResult) -> TranscriptionJSON:
    return TranscriptionJSON(text=result.text, usage=Usage(seconds=round(result.duration, 3)))


def to_verbose_json(result: TranscriptionResult, task: str, want_segments: bool = True,
                    want_words: bool = False) -> TranscriptionVerboseJSON:
    segments = [SegmentOut(id=s.id, seek=s.seek, start=s.start, end=s.end, text=s.text, tokens=s.tokens,
                           temperature=s.temperature, avg_logprob=s.avg_logprob,
                           compression_ratio=s.compression_ratio, no_speech_prob=s.no_speech_prob)
                for s in result.segments] if want_segments else []
    words = None
    if want_words:
        words = [WordOut(word=w.word, start=w.start, end=w.end)
                 for s in result.segments for w in (s.words or [])]
    return TranscriptionVerboseJSON(
        task=task, language=LANGUAGE_NAMES.get(result.language, result.language),
        duration=round(result.duration, 3), text=result.text, segments=segments, words=words,
        usage=Usage(seconds=round(result.duration, 3)))
