"""Whisper's log-mel front end in torch (the same numbers as OpenAI's ``log_mel_spectrogram``).

Computed once per request over the whole audio plus 30 s of zero padding, then sliced into
30-second windows, exactly as OpenAI's and faster-whisper's transcribe loops do: the log-mel
normalisation (max - 8 dB floor) is global to the request, not per window.
"""

from __future__ import annotations

import numpy as np
import torch

SAMPLE_RATE = 16_000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 frames per window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100
TOKENS_PER_SECOND = 50  # one timestamp step is 0.02 s = 2 mel frames


class LogMel:
    """Callable front end holding the mel filterbank and the STFT window."""

    def __init__(self, mel_filters: np.ndarray) -> None:
        # transformers stores the bank as [n_freqs, n_mels]; we want [n_mels, n_freqs].
        bank = np.asarray(mel_filters, dtype=np.float32)
        if bank.shape[0] == N_FFT // 2 + 1:
            bank = bank.T
        self.filters = torch.from_numpy(np.ascontiguousarray(bank))
        self.window = torch.hann_window(N_FFT)

    @property
    def n_mels(self) -> int:
        return int(self.filters.shape[0])

    def __call__(self, audio: np.ndarray, pad_seconds: int = CHUNK_SECONDS) -> torch.Tensor:
        """float32 16 kHz mono → [n_mels, frames] log-mel, with ``pad_seconds`` of silence appended."""
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        if pad_seconds:
            x = torch.nn.functional.pad(x, (0, pad_seconds * SAMPLE_RATE))
        stft = torch.stft(x, N_FFT, HOP_LENGTH, window=self.window, return_complex=True)
        power = stft[..., :-1].abs() ** 2
        mel = self.filters @ power
        log_spec = torch.clamp(mel, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0


def pad_or_trim(mel: torch.Tensor, frames: int = N_FRAMES) -> torch.Tensor:
    """Zero-pad (in normalised log-mel space, as OpenAI does) or cut to ``frames`` frames."""
    if mel.shape[-1] > frames:
        return mel[..., :frames]
    if mel.shape[-1] < frames:
        return torch.nn.functional.pad(mel, (0, frames - mel.shape[-1]))
    return mel
