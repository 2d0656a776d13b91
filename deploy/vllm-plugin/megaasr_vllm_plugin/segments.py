"""Verbose-JSON segments that never lose text (a fix for vLLM 0.32's ``_get_verbose_segments``).

vLLM builds segments only between *pairs* of timestamp tokens and returns the transcript as the
join of those segments. Whisper does not always close its last segment (a window cut mid-sentence)
and, decoded without OpenAI's timestamp rules as vLLM does, sometimes emits no timestamp at all
on a dense 30-second window. Measured on whisper-tiny.en: 29.7 s of LibriVox speech came back as
``text: ""`` with no segments (``response_format=json`` on the same audio gives the full text), and
an immediate end-of-text (silence, noise) crashed the parser with ``IndexError`` (HTTP 500).

This parser keeps every text token: text before the first timestamp starts at the chunk start,
text after the last timestamp (an unclosed segment) ends at the chunk's end as far as known (the
chunk length cap, ``max_audio_clip_s``; Mega-ASR's engine clips it to the audio and to the next
segment). An empty decode gives no segments.
"""

from __future__ import annotations

import inspect
import logging
import zlib
from typing import Any

log = logging.getLogger(__name__)

TIME_PRECISION = 0.02  # seconds per Whisper timestamp token
EXPECTED_PARAMS = ["self", "tokens", "log_probs", "request", "segment_class", "start_time"]


def split_segments(tokens: list[int], init_token: int, eos_token: int | None,
                   chunk_seconds: float) -> list[tuple[float, float, list[int], list[int]]]:
    """(start, end, text tokens, their positions) per segment, times relative to the chunk start."""
    if tokens and eos_token is not None and tokens[-1] == eos_token:
        tokens = tokens[:-1]
    out: list[tuple[float, float, list[int], list[int]]] = []
    start = 0.0
    text: list[int] = []
    where: list[int] = []
    for pos, token in enumerate(tokens):
        if token >= init_token:
            stamp = (token - init_token) * TIME_PRECISION
            if text:
                out.append((start, max(stamp, start), text, where))
                text, where = [], []
            start = stamp
        elif eos_token is None or token != eos_token:
            text.append(token)
            where.append(pos)
    if text:
        out.append((start, max(chunk_seconds, start), text, where))
    return out


def install() -> None:
    """Replace ``SpeechToTextBaseServing._get_verbose_segments`` (only if its signature is the known one)."""
    from vllm.entrypoints.speech_to_text.base import serving

    cls = serving.SpeechToTextBaseServing
    original = cls._get_verbose_segments
    if getattr(original, "_megaasr", False):
        return
    params = list(inspect.signature(original).parameters)
    if params != EXPECTED_PARAMS:
        log.warning("megaasr-vllm-plugin: vLLM's _get_verbose_segments%s is not the known %s; "
                    "segments are left to vLLM (untimed text may be dropped)", params, EXPECTED_PARAMS)
        return

    def get_verbose_segments(self: Any, tokens: tuple, log_probs: Any, request: Any, segment_class: Any,
                             start_time: float = 0) -> list:
        init_token = self.tokenizer.encode("<|0.00|>", add_special_tokens=False)[0]
        chunk_seconds = float(self.asr_config.max_audio_clip_s or 30)
        segments = []
        for start, end, text_tokens, where in split_segments(list(tokens), init_token,
                                                             self.tokenizer.eos_token_id, chunk_seconds):
            text = self.tokenizer.decode(text_tokens)
            data = text.encode("utf-8")
            logprobs = [log_probs[p][t].logprob for p, t in zip(where, text_tokens)
                        if log_probs is not None and p < len(log_probs) and t in log_probs[p]]
            segments.append(segment_class(
                id=len(segments), seek=int(start_time), start=start_time + start, end=start_time + end,
                temperature=request.temperature, text=text, tokens=text_tokens,
                compression_ratio=len(data) / max(1, len(zlib.compress(data))),
                avg_logprob=sum(logprobs) / len(logprobs) if logprobs else 0.0))
        return segments

    get_verbose_segments._megaasr = True  # type: ignore[attr-defined]
    cls._get_verbose_segments = get_verbose_segments
