"""Audio-quality router (paper §5): decides per clip whether the robust LoRA branch should decode it.

Built from the *released checkpoint's* tensor shapes, which the paper's appendix table contradicts:

    log-mel [B, T, 80] → Conv1d(80→128, k3, s2) → BN → GELU → Dropout
                       → Conv1d(128→256, k3, s2) → BN → GELU → Dropout          (4× fewer frames)
                       → + sinusoidal positions (max_len 3000//4 + 100 = 850)
                       → 1 pre-norm TransformerEncoderLayer(256, 4 heads, FFN 1024, GELU) → LayerNorm
                       → attention pooling (Linear 256→1, softmax over valid frames)
                       → Linear 256→128 → GELU → Dropout → Linear 128→2;  p_dirty = softmax[1]

Choices the sources leave open, and why:

* **Parameter count.** The paper's 1,172,229 counts every tensor of the 35-tensor state dict: 953,859
  trainable parameters + 770 BatchNorm buffers (2×(128+256) running stats + 2 step counters) + the
  217,600-value positional table (850×256), which is therefore a *persistent* buffer here too.
* **Conv padding** is 1 (shapes cannot show it): T frames → ceil(T/2) → ceil(T/4), the "4×" of the paper.
* **Padding invariance.** Padded frames are zero in the features and are zeroed again before the second
  convolution, so a conv window that runs past a clip's end sees exactly the zeros of ordinary conv
  padding; the encoder ignores them via ``src_key_padding_mask`` and pooling gives them zero weight. A clip
  therefore scores the same alone or padded inside a batch. Masks must be prefix masks (valid frames
  first), which is what :func:`features_from_audio` builds.
* **Length.** Clips longer than 30 s (3000 frames, the router's training limit) are cut to their first
  30 s; clips shorter than one FFT window are zero-padded to ``n_fft`` samples.
* **Front end.** torchaudio is not available: the power spectrogram comes from ``torch.stft`` (periodic
  Hann, centre/reflect) and the Slaney filterbank from ``transformers.audio_utils.mel_filter_bank``, which
  builds the same triangles as torchaudio's ``melscale_fbanks(norm="slaney", mel_scale="slaney")``.
* **Untrained networks.** ``save``/``load`` carry ``trained`` and training metadata so the service can
  refuse to route on random weights.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.audio_utils import mel_filter_bank

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class RouterConfig:
    """Front end and network sizes; defaults reproduce the released checkpoint."""

    sample_rate: int = 16_000
    n_fft: int = 400
    hop_length: int = 160
    win_length: int = 400
    n_mels: int = 80
    max_frames: int = 3000  # 30 s of 10 ms frames: longest input the router looks at
    conv_channels: int = 128
    d_model: int = 256
    n_heads: int = 4
    ffn_dim: int = 1024
    n_layers: int = 1
    head_hidden: int = 128
    n_classes: int = 2
    dropout: float = 0.1
    max_len: int = 3000 // 4 + 100  # positional table length, as released

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RouterConfig:
        """Build from JSON, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# --- front end ---------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _mel_filters(n_fft: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """Slaney-scale, Slaney-normalised triangular filters, shape [n_fft//2 + 1, n_mels]."""
    filters = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=sample_rate / 2,
        sampling_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(filters.astype(np.float32))


def log_mel(audio: np.ndarray, cfg: RouterConfig = RouterConfig()) -> torch.Tensor:
    """Log-mel frames [T, n_mels] of one 16 kHz mono clip: log10(max(mel, 1e-10)), then (x + 4) / 4."""
    samples = torch.as_tensor(np.asarray(audio, dtype=np.float32).reshape(-1))
    if samples.numel() == 0:
        raise ValueError("cannot route an empty clip")
    samples = samples[: cfg.max_frames * cfg.hop_length]
    if samples.numel() < cfg.n_fft:  # reflect padding needs more samples than half a window
        samples = torch.nn.functional.pad(samples, (0, cfg.n_fft - samples.numel()))
    spectrum = torch.stft(
        samples,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window=torch.hann_window(cfg.win_length),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    power = spectrum.abs().pow(2)  # [freq, T]
    mel = _mel_filters(cfg.n_fft, cfg.n_mels, cfg.sample_rate).T @ power  # [n_mels, T]
    features = (torch.log10(mel.clamp(min=1e-10)) + 4.0) / 4.0
    return features.T[: cfg.max_frames].contiguous()


def features_from_audio(
    clips: Sequence[np.ndarray], cfg: RouterConfig = RouterConfig()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded log-mel batch [B, T, n_mels] and its validity mask [B, T] (True = real frame)."""
    if not clips:
        raise ValueError("need at least one clip")
    per_clip = [log_mel(clip, cfg) for clip in clips]
    longest = max(f.shape[0] for f in per_clip)
    features = torch.zeros(len(per_clip), longest, cfg.n_mels)
    mask = torch.zeros(len(per_clip), longest, dtype=torch.bool)
    for i, f in enumerate(per_clip):
        features[i, : f.shape[0]] = f
        mask[i, : f.shape[0]] = True
    return features, mask


# --- network -----------------------------------------------------------------------------------------


def sinusoidal_table(max_len: int, d_model: int) -> torch.Tensor:
    """The Transformer paper's fixed positional encoding, shape [max_len, d_model]."""
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10_000.0) / d_model))
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


def _halve(lengths: torch.Tensor) -> torch.Tensor:
    """Frames left after a kernel-3, stride-2, padding-1 convolution: ceil(T / 2)."""
    return (lengths + 1) // 2


def _prefix_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    return torch.arange(width, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


class _ConvStage(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels_in, channels_out, kernel_size=3, stride=2, padding=1)
        self.norm = nn.BatchNorm1d(channels_out)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.act(self.norm(self.conv(x))))


class AttentionPooling(nn.Module):
    """Weighted mean over valid frames, weights from a learned score per frame."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.score = nn.Linear(d_model, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(x).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return torch.einsum("bt,btd->bd", weights, x)


class AudioQualityRouter(nn.Module):
    """Clean-vs-degraded classifier over log-mel frames; class 1 means "dirty" (use the LoRA branch)."""

    def __init__(self, config: RouterConfig = RouterConfig()) -> None:
        super().__init__()
        self.config = config
        self.trained = False
        self.training_metadata: dict[str, Any] = {}
        self.conv1 = _ConvStage(config.n_mels, config.conv_channels, config.dropout)
        self.conv2 = _ConvStage(config.conv_channels, config.d_model, config.dropout)
        self.register_buffer("positional", sinusoidal_table(config.max_len, config.d_model), persistent=True)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(
                d_model=config.d_model,
                nhead=config.n_heads,
                dim_feedforward=config.ffn_dim,
                dropout=config.dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            ),
            num_layers=config.n_layers,
            norm=nn.LayerNorm(config.d_model),
            enable_nested_tensor=False,
        )
        self.pool = AttentionPooling(config.d_model)
        self.head = nn.Sequential(
            nn.Linear(config.d_model, config.head_hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.head_hidden, config.n_classes),
        )

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, n_classes] from features [B, T, n_mels] and a prefix mask [B, T] (True = valid)."""
        batch, frames, _ = features.shape
        if mask is None:
            mask = torch.ones(batch, frames, dtype=torch.bool, device=features.device)
        lengths = mask.sum(dim=1)
        if bool((lengths == 0).any()):
            raise ValueError("every clip needs at least one valid frame")
        x = features.masked_fill(~mask.unsqueeze(-1), 0.0).transpose(1, 2)  # [B, n_mels, T]
        x = self.conv1(x)
        lengths = _halve(lengths)
        x = x.masked_fill(~_prefix_mask(lengths, x.shape[-1]).unsqueeze(1), 0.0)
        x = self.conv2(x)
        lengths = _halve(lengths)
        reduced = _prefix_mask(lengths, x.shape[-1])
        x = x.transpose(1, 2)  # [B, T/4, d_model]
        if x.shape[1] > self.positional.shape[0]:
            raise ValueError(f"{frames} frames exceed the positional table ({self.config.max_len} after 4x)")
        x = x + self.positional[: x.shape[1]]
        x = self.encoder(x, src_key_padding_mask=~reduced)
        return self.head(self.pool(x, reduced))

    def features_from_audio(self, clips: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Front end with this router's configuration."""
        return features_from_audio(clips, self.config)

    def predict_proba(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """p_dirty per clip, shape [B]; always in eval mode (the module's own mode is restored after)."""
        features, mask = self.features_from_audio(clips)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                logits = self(features.to(device), mask.to(device))
        finally:
            self.train(was_training)
        return torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()

    def mark_trained(self, metadata: Mapping[str, Any]) -> None:
        """Record that real training produced these weights (and how), so ``save`` persists it."""
        self.trained = True
        self.training_metadata = dict(metadata)

    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` and ``config.json`` (network config, ``trained``, training metadata)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE))
        document = {
            "config": asdict(self.config),
            "trained": self.trained,
            "training": self.training_metadata,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(document, indent=2, sort_keys=True))
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> AudioQualityRouter:
        """Rebuild a router saved by :meth:`save`, in eval mode."""
        directory = Path(directory)
        document = json.loads((directory / CONFIG_FILE).read_text())
        model = cls(RouterConfig.from_dict(document.get("config", {})))
        model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)), strict=True)
        model.trained = bool(document.get("trained", False))
        model.training_metadata = dict(document.get("training", {}))
        return model.to(device).eval()


def trainable_parameter_count(model: nn.Module) -> int:
    """Parameters an optimiser updates."""
    return sum(p.numel() for p in model.parameters())


def state_dict_size(model: nn.Module) -> int:
    """Values stored in the checkpoint (parameters and persistent buffers): the paper's "params"."""
    return sum(t.numel() for t in model.state_dict().values())
