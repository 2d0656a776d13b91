"""The contract every inference engine implements (embedded transformers, vLLM, ...).

An engine transcribes a *batch* of 16 kHz mono float32 arrays, each with its own options, and
returns one :class:`TranscriptionResult` per input. Engines own their batching and threading; the
API layer only awaits :meth:`Engine.transcribe`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

DEFAULT_TEMPERATURES: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

Adapter = Literal["base", "robust"]


@dataclass(frozen=True)
class TranscriptionOptions:
    """Per-request decoding options (the subset of OpenAI's and faster-whisper's that matters)."""

    language: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    prompt: str | None = None
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES
    word_timestamps: bool = False
    beam_size: int = 1
    #: Samples drawn per window at a fallback temperature; the most likely one is kept (OpenAI's ``best_of``).
    best_of: int = 1
    # Fallback and guard thresholds, as in OpenAI's reference transcribe().
    compression_ratio_threshold: float = 2.4
    logprob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    condition_on_previous_text: bool = False
    max_new_tokens: int = 224
    adapter: Adapter = "base"
    seed: int | None = None
    #: Encode only the audio plus a margin instead of Whisper's full 30 s (None: the engine's
    #: setting). Live partials ask for it: they are re-decoded every ``realtime_partial_interval_s``
    #: and are replaced by a full-window final anyway. Engines that cannot trim ignore it.
    trim_padding: bool | None = None


@dataclass
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float | None  # None where the engine cannot measure it (vLLM)
    words: list[Word] | None = None


@dataclass
class TranscriptionResult:
    text: str
    segments: list[Segment]
    language: str
    duration: float
    language_probability: float = 1.0
    adapter: Adapter = "base"
    extras: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo:
    """What the engine serves, for ``/v1/models`` and for routing decisions."""

    id: str
    path: str
    multilingual: bool
    adapters: tuple[Adapter, ...] = ("base",)


class Engine(abc.ABC):
    """An inference engine. ``start`` loads; ``transcribe`` decodes; ``close`` frees."""

    #: Called with the size of every batch the engine decodes (the service feeds its metrics);
    #: engines that do not batch themselves never call it.
    batch_observer: Callable[[int], None] | None = None

    @property
    @abc.abstractmethod
    def info(self) -> ModelInfo: ...

    @property
    @abc.abstractmethod
    def ready(self) -> bool: ...

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def transcribe(self, audios: list[np.ndarray],
                         options: list[TranscriptionOptions]) -> list[TranscriptionResult]: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    def queue_depth(self) -> int:
        """Requests waiting to be decoded (for metrics and 429 decisions)."""
        return 0
