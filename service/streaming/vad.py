"""Server-side voice activity detection for the realtime endpoint: energy over an adaptive floor.

Pure and incremental: feed 16 kHz float32 audio of any length, get speech start/stop events with
sample positions. A frame is speech when its level is ``threshold_db`` above the tracked noise
floor (and above an absolute floor, so digital silence never triggers). Speech starts after
``min_speech_ms`` of speech frames and stops after ``silence_ms`` without.

The floor falls at once to a quieter frame and rises slowly (``floor_rise_db_per_s``), so steady
background noise is learned within seconds while speech pauses do not drag it up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class VadConfig:
    threshold_db: float = 10.0
    absolute_floor_dbfs: float = -55.0
    frame_ms: int = 20
    min_speech_ms: int = 100
    silence_ms: int = 500
    floor_rise_db_per_s: float = 3.0

    @classmethod
    def from_openai(cls, threshold: float = 0.5, silence_duration_ms: int = 500) -> VadConfig:
        """Map OpenAI's 0..1 ``threshold`` onto 4..20 dB above the floor (0.5 → 12 dB)."""
        threshold = min(max(threshold, 0.0), 1.0)
        return cls(threshold_db=4.0 + 16.0 * threshold, silence_ms=int(silence_duration_ms))


@dataclass(frozen=True)
class VadEvent:
    kind: Literal["start", "stop"]
    sample: int  # absolute position in the stream (16 kHz samples)


class EnergyVad:
    def __init__(self, config: VadConfig = VadConfig()) -> None:
        self.config = config
        self.frame = SAMPLE_RATE * config.frame_ms // 1000
        self._pending = np.zeros(0, dtype=np.float32)
        self._position = 0  # samples consumed into frames
        self._floor: float | None = None
        self._speech_run = 0
        self._silence_run = 0
        self.in_speech = False
        self._start_candidate = 0

    def feed(self, audio: np.ndarray) -> list[VadEvent]:
        self._pending = np.concatenate([self._pending, np.asarray(audio, dtype=np.float32)])
        events: list[VadEvent] = []
        cfg = self.config
        n_frames = len(self._pending) // self.frame
        if n_frames == 0:
            return events
        frames = self._pending[: n_frames * self.frame].reshape(n_frames, self.frame)
        self._pending = self._pending[n_frames * self.frame:]
        levels = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
        rise = cfg.floor_rise_db_per_s * cfg.frame_ms / 1000
        need_speech = max(1, cfg.min_speech_ms // cfg.frame_ms)
        need_silence = max(1, cfg.silence_ms // cfg.frame_ms)
        for level in levels:
            frame_start = self._position
            self._position += self.frame
            floor = level if self._floor is None else self._floor
            is_speech = level > max(floor + cfg.threshold_db, cfg.absolute_floor_dbfs)
            # Adapt the floor: fall at once, rise slowly, and never learn from speech frames.
            if level < floor:
                floor = level
            elif not is_speech:
                floor = min(level, floor + rise)
            self._floor = floor
            if not self.in_speech:
                if is_speech:
                    if self._speech_run == 0:
                        self._start_candidate = frame_start
                    self._speech_run += 1
                    if self._speech_run >= need_speech:
                        self.in_speech = True
                        self._silence_run = 0
                        events.append(VadEvent("start", self._start_candidate))
                else:
                    self._speech_run = 0
            else:
                if is_speech:
                    self._silence_run = 0
                else:
                    self._silence_run += 1
                    if self._silence_run >= need_silence:
                        self.in_speech = False
                        self._speech_run = 0
                        end = self._position - self._silence_run * self.frame
                        events.append(VadEvent("stop", end))
        return events
