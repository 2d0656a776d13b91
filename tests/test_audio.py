"""Decoding untrusted bytes: every kind of bad input becomes a clear AudioError."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from service.audio import TARGET_SR, decode_audio
from service.errors import AudioError


def encode(samples: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def tone(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", None), ("OGG", "VORBIS"),
                                         ("OGG", "OPUS"), ("MP3", None)])
def test_formats_decode_to_16k_mono(fmt: str, subtype: str | None) -> None:
    sr = 48_000 if subtype == "OPUS" else 44_100
    audio = decode_audio(encode(tone(1.0, sr, channels=2), sr, fmt, subtype), max_duration_s=10)
    assert audio.source_sample_rate == sr and audio.source_channels == 2
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert abs(audio.duration - 1.0) < 0.1
    # The tone survives resampling: its dominant frequency is still 440 Hz.
    spectrum = np.abs(np.fft.rfft(audio.samples[: TARGET_SR // 2]))
    peak_hz = np.argmax(spectrum) * TARGET_SR / (TARGET_SR // 2)
    assert abs(peak_hz - 440) < 10


def _wav_header(sr: int, channels: int, data_bytes: int, bits: int = 16) -> bytes:
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, channels, sr, sr * block, block, bits) +
            b"data" + struct.pack("<I", data_bytes))


@pytest.mark.parametrize("data,code", [
    (b"", "empty_file"),
    (b"this is not audio at all" * 10, "invalid_audio"),
    (b"RIFF\x00\x00", "invalid_audio"),  # truncated header
    (_wav_header(16000, 1, 0), "zero_length_audio"),
    (_wav_header(16000, 0, 100) + b"\x00" * 100, "invalid_audio"),  # zero channels
    (b"fLaC" + b"\x00" * 50, "invalid_audio"),  # a codec header with nothing behind it
])
def test_bad_bytes_are_clear_errors(data: bytes, code: str) -> None:
    with pytest.raises(AudioError) as info:
        decode_audio(data, max_duration_s=10)
    assert info.value.code == code
    assert info.value.status_code == 400


def test_absurd_sample_rate_is_refused_before_reading() -> None:
    data = _wav_header(2_000_000_000, 1, 200) + b"\x00" * 200
    with pytest.raises(AudioError) as info:
        decode_audio(data, max_duration_s=10)
    assert info.value.code in ("unsupported_sample_rate", "invalid_audio")


def test_declared_ten_hours_reads_only_what_is_there() -> None:
    # The header claims 10 hours; the body holds 500 samples. Only those are read (no 1 GB buffer).
    data = _wav_header(16000, 1, 10 * 3600 * 16000 * 2) + b"\x01\x00" * 500
    audio = decode_audio(data, max_duration_s=60)
    assert len(audio.samples) == 500


def test_duration_limit() -> None:
    data = encode(tone(3.0, 16000), 16000, "WAV")
    with pytest.raises(AudioError) as info:
        decode_audio(data, max_duration_s=2.0)
    assert info.value.code == "audio_too_long"
    assert decode_audio(data, max_duration_s=5.0).duration == pytest.approx(3.0, abs=0.01)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(bad: float) -> None:
    x = tone(0.5, 16000)
    x[100] = bad
    with pytest.raises(AudioError) as info:
        decode_audio(encode(x, 16000, "WAV", "FLOAT"), max_duration_s=10)
    assert info.value.code == "non_finite_audio"


def test_truncated_body_keeps_decodable_part() -> None:
    data = encode(tone(2.0, 16000), 16000, "WAV")
    audio = decode_audio(data[: len(data) // 2], max_duration_s=10)
    assert 0.9 < audio.duration < 1.1
