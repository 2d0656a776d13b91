"""One realtime transcription session: audio in, OpenAI realtime transcription events out.

Protocol-independent (the websocket layer parses and sends JSON). Audio is resampled to 16 kHz as
it arrives, segmented into utterances by server VAD (or by explicit commits), decoded for live
partials every ``partial_interval_s`` and once more in full when the utterance ends.

Memory is bounded: an utterance is force-committed at ``max_utterance_s``, and at most
``max_pending_finals`` committed utterances wait for decoding; beyond that :meth:`append` waits,
which stops the websocket reader and pushes back on the client through TCP.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import soxr

from service.engines.base import DEFAULT_TEMPERATURES, TranscriptionOptions, TranscriptionResult
from service.errors import Overloaded, ServiceError
from service.streaming.stabilizer import StablePrefix
from service.streaming.vad import SAMPLE_RATE, EnergyVad, VadConfig

Transcribe = Callable[[np.ndarray, TranscriptionOptions], Awaitable[TranscriptionResult]]
Emit = Callable[[dict], Awaitable[None]]

_ids = itertools.count(1)
FINAL_RETRY_S = 30.0  # how long a final transcript waits for room in a full engine queue


def new_id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}{int(time.time() * 1000) % 100000:05d}"


@dataclass
class SessionConfig:
    input_sample_rate: int = 24_000  # OpenAI realtime pcm16 is 24 kHz mono
    language: str | None = None
    prompt: str | None = None
    vad: VadConfig | None = field(default_factory=VadConfig)
    prefix_padding_ms: int = 300
    partial_interval_s: float = 0.5
    max_utterance_s: float = 28.0
    max_pending_finals: int = 4
    #: Beam width of a final's temperature-0 pass (the service's ``beam_size``); partials stay greedy.
    final_beam_size: int = 1
    #: Samples per fallback temperature of a final (the service's ``best_of``); partials never fall back.
    final_best_of: int = 1


@dataclass
class _Utterance:
    item_id: str
    start_sample: int
    chunks: list[np.ndarray] = field(default_factory=list)
    samples: int = 0
    stabilizer: StablePrefix = field(default_factory=StablePrefix)
    decoded_samples: int = 0  # length at the last partial decode
    last_arrival: float = 0.0

    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.float32)


class TranscriptionSession:
    def __init__(self, transcribe: Transcribe, emit: Emit, config: SessionConfig | None = None,
                 on_partial_latency: Callable[[float], None] | None = None) -> None:
        self.config = config or SessionConfig()
        self._transcribe = transcribe
        self._emit = emit
        self._on_partial_latency = on_partial_latency
        self._resampler: soxr.ResampleStream | None = None
        self._vad: EnergyVad | None = None
        self._history = np.zeros(0, dtype=np.float32)  # recent audio for prefix padding
        self._position = 0  # 16 kHz samples received
        self._current: _Utterance | None = None
        self._previous_item: str | None = None
        self._finals: asyncio.Queue[_Utterance] = asyncio.Queue(maxsize=self.config.max_pending_finals)
        self._lock = asyncio.Lock()  # one decode at a time per session keeps events in order
        self.reconfigure(self.config)

    def reconfigure(self, config: SessionConfig) -> None:
        rate_changed = self._resampler is None or config.input_sample_rate != self.config.input_sample_rate
        self.config = config
        if rate_changed:
            self._resampler = (None if config.input_sample_rate == SAMPLE_RATE else
                               soxr.ResampleStream(config.input_sample_rate, SAMPLE_RATE, 1, dtype="float32"))
        self._vad = EnergyVad(config.vad) if config.vad is not None else None

    # -- input ------------------------------------------------------------------------------------
    async def append(self, pcm16: bytes) -> None:
        if len(pcm16) % 2:
            raise ValueError("PCM16 audio must have an even number of bytes")
        audio = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0
        if self._resampler is not None:
            audio = self._resampler.resample_chunk(audio)
        if audio.size == 0:
            return
        arrival = time.monotonic()
        start = self._position
        self._position += len(audio)
        keep = SAMPLE_RATE * self.config.prefix_padding_ms // 1000
        events = self._vad.feed(audio) if self._vad is not None else []
        if self._vad is None and self._current is None:
            await self._start_utterance(start, emit_event=False)
        cursor = 0
        for event in events:
            offset = max(0, min(event.sample - start, len(audio)))
            if event.kind == "start" and self._current is None:
                self._remember(audio[cursor:offset], keep)
                cursor = offset
                await self._start_utterance(event.sample)
            elif event.kind == "stop" and self._current is not None:
                self._add(audio[cursor:offset], arrival)
                cursor = offset
                await self._emit({"type": "input_audio_buffer.speech_stopped",
                                  "audio_end_ms": int(event.sample * 1000 / SAMPLE_RATE),
                                  "item_id": self._current.item_id})
                await self._commit_current()
        rest = audio[cursor:]
        if self._current is not None:
            self._add(rest, arrival)
            if self._current.samples >= self.config.max_utterance_s * SAMPLE_RATE:
                await self._commit_current()  # bound memory and stay inside one 30 s window
        else:
            self._remember(rest, keep)

    async def commit(self) -> None:
        """Client commit: whatever is buffered becomes an utterance and gets a final transcript."""
        if self._current is None:
            if self._vad is not None or self._history.size == 0:
                await self._emit(error_event("input_audio_buffer_commit_empty", "The audio buffer is empty."))
                return
            await self._start_utterance(self._position - len(self._history), emit_event=False)
        await self._commit_current()

    def clear(self) -> None:
        self._current = None
        self._history = np.zeros(0, dtype=np.float32)

    async def _start_utterance(self, sample: int, emit_event: bool = True) -> None:
        item = _Utterance(item_id=new_id("item"), start_sample=sample)
        if self._history.size:
            item.chunks.append(self._history)
            item.samples += len(self._history)
            item.start_sample = sample - len(self._history) if emit_event else item.start_sample
            self._history = np.zeros(0, dtype=np.float32)
        self._current = item
        if emit_event:
            await self._emit({"type": "input_audio_buffer.speech_started",
                              "audio_start_ms": int(sample * 1000 / SAMPLE_RATE), "item_id": item.item_id})

    def _add(self, audio: np.ndarray, arrival: float) -> None:
        if audio.size and self._current is not None:
            self._current.chunks.append(audio)
            self._current.samples += len(audio)
            self._current.last_arrival = arrival

    def _remember(self, audio: np.ndarray, keep: int) -> None:
        if keep <= 0:
            return
        self._history = np.concatenate([self._history, audio])[-keep:]

    async def _commit_current(self) -> None:
        item, self._current = self._current, None
        if item is None:
            return
        await self._emit({"type": "input_audio_buffer.committed", "previous_item_id": self._previous_item,
                          "item_id": item.item_id})
        self._previous_item = item.item_id
        await self._finals.put(item)  # waits when full: backpressure on the reader

    # -- decoding ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Background worker: finals first, partials in between. Cancel it to stop."""
        next_partial = time.monotonic() + self.config.partial_interval_s
        while True:
            item = self._finals.get_nowait() if not self._finals.empty() else None
            timeout = next_partial - time.monotonic()
            if item is None and timeout > 0:
                try:
                    item = await asyncio.wait_for(self._finals.get(), timeout=timeout)
                except TimeoutError:
                    item = None
            if item is not None:
                await self._final(item)
                continue
            next_partial = time.monotonic() + self.config.partial_interval_s
            await self._partial()

    def _options(self, final: bool) -> TranscriptionOptions:
        temps = DEFAULT_TEMPERATURES if final else (0.0,)
        # Partials encode only the audio heard so far (plus a margin): the final re-decodes the
        # full window, so the partials' speed matters more than their last word.
        return TranscriptionOptions(language=self.config.language, prompt=self.config.prompt, temperatures=temps,
                                    trim_padding=None if final else True,
                                    beam_size=self.config.final_beam_size if final else 1,
                                    best_of=self.config.final_best_of if final else 1)

    async def _partial(self) -> None:
        item = self._current
        min_samples = SAMPLE_RATE // 4
        if item is None or item.samples < min_samples or item.samples == item.decoded_samples:
            return
        item.decoded_samples = item.samples
        arrival = item.last_arrival
        try:
            async with self._lock:
                result = await self._transcribe(item.audio(), self._options(final=False))
        except ServiceError:
            return  # partials are best-effort (e.g. the engine queue is full); the final will retry
        if self._current is not item:
            return  # the utterance ended while decoding; its final will speak for it
        delta = item.stabilizer.update(result.text)
        if delta:
            await self._emit({"type": "conversation.item.input_audio_transcription.delta",
                              "item_id": item.item_id, "content_index": 0, "delta": delta})
            if self._on_partial_latency is not None and arrival:
                self._on_partial_latency(time.monotonic() - arrival)

    async def _final(self, item: _Utterance) -> None:
        try:
            async with self._lock:
                result = await self._transcribe_final(item.audio())
        except ServiceError as exc:
            await self._emit({"type": "conversation.item.input_audio_transcription.failed",
                              "item_id": item.item_id, "content_index": 0,
                              "error": {"type": exc.error_type, "code": exc.code, "message": exc.message}})
            return
        text = result.text.strip()
        rest = item.stabilizer.remainder(text)
        if rest:
            await self._emit({"type": "conversation.item.input_audio_transcription.delta",
                              "item_id": item.item_id, "content_index": 0, "delta": rest})
        await self._emit({"type": "conversation.item.input_audio_transcription.completed",
                          "item_id": item.item_id, "content_index": 0, "transcript": text})

    async def _transcribe_final(self, audio: np.ndarray) -> TranscriptionResult:
        """A committed utterance cannot be sent again by the client: when the engine queue is full,
        wait and retry (bounded by FINAL_RETRY_S) instead of failing it at once."""
        delay, deadline = 0.05, time.monotonic() + FINAL_RETRY_S
        while True:
            try:
                return await self._transcribe(audio, self._options(final=True))
            except Overloaded:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def drain(self) -> None:
        """Decode every committed utterance still waiting (used on graceful close)."""
        while not self._finals.empty():
            await self._final(self._finals.get_nowait())


def error_event(code: str, message: str, param: str | None = None) -> dict:
    return {"type": "error", "error": {"type": "invalid_request_error", "code": code, "message": message,
                                       "param": param}}
