"""The single place where raw bytes become 16 kHz mono float32 arrays.

Decoding goes through libsndfile (via soundfile), which reads WAV, FLAC, Ogg Vorbis/Opus and MP3.
The header is checked *before* any samples are read, so a file that declares ten hours or a
million channels is refused without allocating for it.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from service.errors import AudioError

TARGET_SR = 16_000
MIN_SR = 1_000
MAX_SR = 384_000
MAX_CHANNELS = 64
_BLOCK_FRAMES = 1 << 16


@dataclass(frozen=True)
class DecodedAudio:
    """Audio ready for a model, plus what the file said about itself."""

    samples: np.ndarray  # float32, mono, TARGET_SR
    source_sample_rate: int
    source_channels: int
    source_format: str

    @property
    def duration(self) -> float:
        return len(self.samples) / TARGET_SR


def decode_audio(data: bytes, *, max_duration_s: float) -> DecodedAudio:
    """Decode any supported container to 16 kHz mono float32, validating as it goes."""
    if not data:
        raise AudioError("The uploaded file is empty.", code="empty_file", param="file")
    try:
        handle = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(
            f"Could not decode the uploaded file as audio ({_short(exc)}). "
            "Supported formats: wav, flac, ogg (vorbis/opus), mp3.",
            code="invalid_audio", param="file") from exc
    with handle:
        sr, channels = int(handle.samplerate), int(handle.channels)
        _check_header(sr, channels)
        declared = handle.frames if handle.frames and handle.frames > 0 else None
        if declared is not None and declared / sr > max_duration_s:
            raise _too_long(declared / sr, max_duration_s)
        samples = _read_bounded(handle, sr, channels, max_duration_s)
        fmt = handle.format
    if samples.size == 0:
        raise AudioError("The audio contains no samples.", code="zero_length_audio", param="file")
    if not np.all(np.isfinite(samples)):
        raise AudioError("The audio contains NaN or infinite samples.", code="non_finite_audio", param="file")
    return DecodedAudio(to_model_input(samples, sr), sr, channels, str(fmt))


def to_model_input(samples: np.ndarray, sr: int) -> np.ndarray:
    """Downmix (frames, channels) or (frames,) audio at ``sr`` to mono float32 at 16 kHz."""
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    mono = np.asarray(mono, dtype=np.float32)
    if sr != TARGET_SR:
        mono = soxr.resample(mono, sr, TARGET_SR, quality="HQ").astype(np.float32, copy=False)
    return np.clip(mono, -1.0, 1.0)


def _check_header(sr: int, channels: int) -> None:
    if not MIN_SR <= sr <= MAX_SR:
        raise AudioError(f"Unsupported sample rate {sr} Hz (allowed {MIN_SR}-{MAX_SR} Hz).",
                         code="unsupported_sample_rate", param="file")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"Unsupported channel count {channels} (allowed 1-{MAX_CHANNELS}).",
                         code="unsupported_channels", param="file")


def _read_bounded(handle: sf.SoundFile, sr: int, channels: int, max_duration_s: float) -> np.ndarray:
    """Read in blocks so that a lying header (or an MP3 without one) cannot exceed the limit."""
    limit = int(max_duration_s * sr) + 1
    blocks: list[np.ndarray] = []
    total = 0
    try:
        while True:
            block = handle.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            total += block.shape[0]
            if total > limit:
                raise _too_long(total / sr, max_duration_s)
            blocks.append(block)
    except (sf.LibsndfileError, RuntimeError) as exc:
        if not blocks:
            raise AudioError(f"The audio stream is corrupt or truncated ({_short(exc)}).",
                             code="invalid_audio", param="file") from exc
        # A truncated tail: keep what decoded cleanly, as players do.
    if not blocks:
        return np.zeros((0, channels), dtype=np.float32)
    return np.concatenate(blocks, axis=0)


def _too_long(seconds: float, limit: float) -> AudioError:
    return AudioError(f"The audio is longer than the limit ({seconds:.1f} s > {limit:.0f} s).",
                      code="audio_too_long", param="file")


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    # libsndfile prefixes messages with the object it was reading; that is noise for a client.
    return re.sub(r"^Error opening <[^>]*>: ", "", text.splitlines()[0])[:200]
