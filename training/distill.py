"""Clean-teacher encoder distillation: a dense target for the adapted encoder (round 10).

Why: the token CE of SFT gives a degraded clip about twenty labels, and on a 2-core CPU the recipe
sees each clip about once; nine rounds of CE-only SFT stayed 6-9 % below the base model's WER. The
simulator knows every degraded clip's clean source (the same samples, time-aligned: the effect
chains keep the length), so the unadapted encoder's states on that clean source are a target for
*every* 20-ms frame of the degraded clip: the adapted encoder is asked to hear the degraded clip as
the frozen model hears the clean one (teacher-student learning for noise robustness, Li et al.,
Interspeech 2017; Whisper's decoder then reads states it already knows).

The targets: a degraded clip's clean source (``clean_id``), a clean clip itself (which keeps clean
speech where it was), and for non-speech clips (noise-only, silence: no clean source) digital
silence, so that noise is pulled towards what the decoder reads as nothing. The loss is the mean
squared difference over the clip's own frames (Whisper pads every clip to 30 s; the padding frames
are left out) and over the state dimensions, averaged over the rows of a step.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from training.data import CLEAN
from training.device import model_device
from training.encoder_cache import StateStore

#: Whisper's encoder emits one state per 20 ms (two 10-ms mel frames, stride-2 convolution).
SECONDS_PER_STATE = 0.02
#: The target key of every clip without a clean source.
SILENCE = "<silence>"


def clean_sources(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Clean clip id -> its audio path, from a manifest's clean rows (the sources of its simulated rows)."""
    return {r["id"]: r["audio"] for r in rows if r["scenario"] == CLEAN}


def target_key(row: dict[str, Any]) -> str:
    """Which clean recording a row's encoder states should match: its source, itself, or silence."""
    if row["scenario"] == CLEAN:
        return row["id"]
    return row.get("clean_id") or SILENCE


def frame_mask(durations: Sequence[float], n_states: int) -> torch.Tensor:
    """(batch, n_states) booleans: the states that cover each clip's own audio (not the 30-s padding)."""
    counts = torch.tensor([min(n_states, max(1, math.ceil(d / SECONDS_PER_STATE))) for d in durations])
    return torch.arange(n_states)[None, :] < counts[:, None]


def masked_mse_sum(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over rows of each row's mean squared difference over its masked states and all dimensions."""
    mask = mask.to(student.device, student.dtype)
    per_state = (student - teacher).pow(2).mean(dim=-1)  # (batch, n_states)
    return ((per_state * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)).sum()


class CleanTeacher:
    """The unadapted encoder's final states on clean sources, computed once per source and cached.

    The teacher is a frozen copy of the encoder as it was before any phase, so it does not follow the
    merges between phases. States are kept in a :class:`training.encoder_cache.StateStore` (CPU, fp16:
    1.2 MB per clip for whisper-tiny) and moved to the device per step.
    """

    def __init__(self, model: nn.Module, sources: dict[str, str],
                 features: Callable[[list[np.ndarray]], torch.Tensor],
                 load_audio: Callable[[str], np.ndarray], dtype: torch.dtype = torch.float16) -> None:
        self.encoder = copy.deepcopy(model.get_encoder()).eval().requires_grad_(False)
        self.sources = sources
        self.features = features
        self.load_audio = load_audio
        self.store = StateStore(dtype)

    def __len__(self) -> int:
        return len(self.store)

    @torch.no_grad()
    def _encode(self, key: str) -> torch.Tensor:
        if key == SILENCE:
            audio = np.zeros(16000, dtype=np.float32)
        elif key in self.sources:
            audio = self.load_audio(self.sources[key])
        else:
            raise KeyError(f"no clean source {key!r} in the manifest (its clean row is missing)")
        features = self.features([audio]).to(model_device(self.encoder))
        return self.encoder(features).last_hidden_state[0]

    def states(self, rows: Sequence[dict[str, Any]], device: torch.device) -> torch.Tensor:
        """fp32 teacher states of ``rows`` stacked on ``device`` (one clip at a time: batch-independent)."""
        return self.store.stacked([target_key(r) for r in rows], self._encode, device)

    def loss_sum(self, student: torch.Tensor, rows: Sequence[dict[str, Any]]) -> torch.Tensor:
        """Summed per-row masked MSE between the student's states and the clean teacher's."""
        teacher = self.states(rows, student.device)
        mask = frame_mask([float(r["duration"]) for r in rows], student.shape[1])
        return masked_mse_sum(student, teacher, mask)
