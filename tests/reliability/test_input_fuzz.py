"""Hypothesis fuzzers over the two parsers that take raw client input: audio decoding and the
realtime websocket's message parser.

Audio: random bytes, real WAV/FLAC/OGG/MP3 files with random bytes flipped or cut, and WAV headers
rewritten with absurd values (huge or zero sample rates, zero or 65535 channels, a data chunk
declaring hours of audio). Only a clean :class:`AudioError` (a 400) may come out, or audio within
the duration limit; peak memory stays bounded (tracemalloc sees numpy's buffers).

Websocket: JSON of every shape (wrong types, NaN, 1e999, huge ints, nested junk) sent through the
real dispatcher and session: only a protocol error event, never an exception that would close
the session with 1011, and never a setting that grows memory without bound.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api.realtime import MAX_PREFIX_PADDING_MS, _ClientError, _dispatch
from service.audio import TARGET_SR, decode_audio
from service.engines.base import TranscriptionResult
from service.errors import AudioError
from service.streaming.session import SessionConfig, TranscriptionSession

MAX_S = 30.0
PEAK_LIMIT = 200 * 2**20  # far above what a small valid file needs, far below "unbounded"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def _encoded(fmt: str, subtype: str | None = None, sr: int = 16000, channels: int = 1) -> bytes:
    t = np.arange(int(sr * 0.3)) / sr
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    x = np.repeat(x[:, None], channels, axis=1)
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


SEEDS = {
    "wav": _encoded("WAV", "PCM_16"),
    "wav_stereo_float": _encoded("WAV", "FLOAT", 44100, 2),
    "flac": _encoded("FLAC"),
    "ogg": _encoded("OGG", "VORBIS"),
    "mp3": _encoded("MP3"),
}


def check_decode(data: bytes) -> None:
    """The property: a clean AudioError or bounded audio, with bounded peak memory."""
    tracemalloc.start()
    try:
        try:
            audio = decode_audio(data, max_duration_s=MAX_S)
        except AudioError as exc:
            assert exc.status_code == 400 and exc.message and exc.param == "file"
        else:
            assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
            assert len(audio.samples) <= (MAX_S + 1) * TARGET_SR
            assert np.all(np.isfinite(audio.samples))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_LIMIT, f"decoding {len(data)} bytes peaked at {peak / 2**20:.0f} MiB"


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    check_decode(data)


@FUZZ
@given(st.sampled_from(sorted(SEEDS)), st.data())
def test_mutated_real_containers(name: str, data) -> None:
    raw = bytearray(SEEDS[name])
    for _ in range(data.draw(st.integers(1, 12))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
    check_decode(bytes(raw[:cut] if cut is not None else raw))


def _wav(fmt_tag: int, channels: int, rate: int, bits: int, data_size: int, riff_size: int | None,
         body: bytes) -> bytes:
    block = max(1, channels * max(1, bits // 8)) & 0xFFFF
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    riff = riff_size if riff_size is not None else 4 + 8 + len(fmt) + 8 + len(body)
    return (b"RIFF" + struct.pack("<I", riff & 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt))
            + fmt + b"data" + struct.pack("<I", data_size & 0xFFFFFFFF) + body)


@FUZZ
@given(fmt_tag=st.sampled_from([1, 3, 6, 7, 0x11, 0xFFFE, 0]),
       channels=st.sampled_from([0, 1, 2, 63, 64, 65, 255, 65535]),
       rate=st.one_of(st.sampled_from([0, 1, 999, 1000, 8000, 384000, 384001, 2**31 - 1, 2**32 - 1]),
                      st.integers(0, 2**32 - 1)),
       bits=st.sampled_from([0, 1, 8, 16, 24, 32, 64, 65535]),
       data_size=st.one_of(st.sampled_from([0, 2**31 - 1, 2**32 - 1, 16000 * 2 * 36000]),
                           st.integers(0, 2**32 - 1)),
       riff_size=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
       body=st.binary(max_size=2048))
def test_absurd_wav_headers(fmt_tag, channels, rate, bits, data_size, riff_size, body) -> None:
    check_decode(_wav(fmt_tag, channels, rate, bits, data_size, riff_size, body))


def test_ten_hours_declared_is_not_allocated() -> None:
    """A header declaring ten hours over 0.1 s of samples: what is read is what is there."""
    ten_hours = 16000 * 2 * 36000
    tracemalloc.start()
    try:
        audio = decode_audio(_wav(1, 1, 16000, 16, ten_hours, None, b"\x01\x00" * 1600), max_duration_s=MAX_S)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(audio.samples) == 1600
    assert peak < 20 * 2**20


# -- the realtime message parser -------------------------------------------------------------------
KEYS = ["type", "session", "audio", "input", "format", "rate", "turn_detection", "threshold",
        "silence_duration_ms", "prefix_padding_ms", "input_audio_transcription", "transcription", "language",
        "prompt", "input_sample_rate", "input_audio_format", "event_id"]
TYPES = ["session.update", "transcription_session.update", "input_audio_buffer.append",
         "input_audio_buffer.commit", "input_audio_buffer.clear", "response.create", ""]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["pcm16", "audio/pcm", "server_vad", "en", "de", "g711_ulaw", 16000, 24000, 48000, 8000,
                     0.5, 500, 300, 1e308, -1]),
    st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)), max_leaves=20)
EVENTS = st.fixed_dictionaries({"type": st.one_of(st.sampled_from(TYPES), VALUES)},
                               optional={k: VALUES for k in KEYS if k != "type"})


def _english_only(language: str | None) -> str | None:
    if language not in (None, "en"):
        raise ValueError(f"This model is English-only; language '{language}' is not supported.")
    return language


async def _dummy_transcribe(audio, options) -> TranscriptionResult:
    assert isinstance(options.language, (str, type(None))) and isinstance(options.prompt, (str, type(None)))
    return TranscriptionResult(text="ok", segments=[], language="en", duration=len(audio) / 16000)


def run_messages(messages: list[str]) -> tuple[list[dict], SessionConfig]:
    """Feed ``messages`` through the real dispatcher and session; return the emitted events."""
    events: list[dict] = []

    async def emit(event: dict) -> None:
        events.append(event)

    async def go() -> SessionConfig:
        session = TranscriptionSession(_dummy_transcribe, emit, SessionConfig(partial_interval_s=0.01))
        worker = asyncio.create_task(session.run())
        try:
            for text in messages:
                try:
                    await asyncio.wait_for(_dispatch(text, session, emit, "sess_fuzz", _english_only), 10)
                except _ClientError as exc:
                    assert exc.code and exc.message
                    events.append({"type": "client_error", "code": exc.code})
                assert not worker.done(), worker
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        return session.config

    return events, asyncio.run(go())


@FUZZ
@given(st.lists(st.one_of(EVENTS.map(json.dumps), st.text(max_size=40),
                          VALUES.map(lambda v: json.dumps(v))), min_size=1, max_size=6))
def test_websocket_messages_only_ever_give_protocol_errors(messages: list[str]) -> None:
    _, config = run_messages(messages)
    assert 8000 <= config.input_sample_rate <= 48000
    assert 0 <= config.prefix_padding_ms <= MAX_PREFIX_PADDING_MS
    assert config.language in (None, "en")
    assert config.prompt is None or isinstance(config.prompt, str)


@pytest.mark.parametrize("session", [
    {"turn_detection": {"type": "server_vad", "silence_duration_ms": float("inf")}},
    {"turn_detection": {"type": "server_vad", "prefix_padding_ms": 10**12}},
    {"turn_detection": {"type": "server_vad", "threshold": float("nan")}},
    {"audio": "not an object"},
    {"audio": {"input": [1, 2]}},
    {"input_audio_transcription": {"language": 5}},
    {"input_audio_transcription": {"prompt": {"x": 1}}},
    {"input_audio_transcription": {"language": "klingon"}},
])
def test_known_bad_session_updates_are_protocol_errors(session: dict) -> None:
    """Each of these once escaped the parser (1011 close, an engine-side failure or unbounded history)."""
    text = json.dumps({"type": "session.update", "session": session})  # NaN/Infinity: Python's json allows them
    events, config = run_messages([text])
    assert [e["type"] for e in events] == ["client_error"], events
    assert config.prefix_padding_ms <= MAX_PREFIX_PADDING_MS
