"""Run Whisper's frozen lower encoder blocks once per clip and reuse their output.

Why: on a CPU the encoder (1500 positions for every clip, even a 3-second one) is most of the
cost of a training step. The LoRA scopes used here never touch the lower blocks, so their output
for a clip never changes during training; caching it lets each step run only the adapted upper
block(s) and the decoder. The split forward is numerically the encoder's own forward (tested).

Device: the states are computed on the model's device (the expensive part) but stored on the
CPU, in fp16, and only a step's batch is moved to the device. A stored clip of whisper-tiny is
1.2 MB (3.8 MB for large models), so a cache of a full training split would take GPU memory the
training step needs, and copying 8 clips per step costs far less than the step itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from training.device import model_device


def whisper_encoder(model: nn.Module) -> nn.Module:
    """The encoder module of a plain or peft-wrapped WhisperForConditionalGeneration."""
    return model.get_encoder()


@torch.no_grad()
def lower_states(model: nn.Module, features: torch.Tensor, n_frozen: int) -> torch.Tensor:
    """Hidden states after the stem and the first ``n_frozen`` encoder blocks (no dropout)."""
    enc = whisper_encoder(model)
    x = nn.functional.gelu(enc.conv1(features))
    x = nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
    x = x + enc.embed_positions.weight[: x.shape[1]]
    for layer in enc.layers[:n_frozen]:
        x = layer(x, None)
    return x


def upper_states(model: nn.Module, hidden: torch.Tensor, n_frozen: int) -> torch.Tensor:
    """The remaining encoder blocks and the final norm (with autograd, so LoRA there trains)."""
    enc = whisper_encoder(model)
    for layer in enc.layers[n_frozen:]:
        hidden = layer(hidden, None)
    return enc.layer_norm(hidden)


def decoder_logits(model: nn.Module, encoder_states: torch.Tensor, decoder_input_ids: torch.Tensor) -> torch.Tensor:
    """Teacher-forced decoder logits given encoder states."""
    out = model(encoder_outputs=BaseModelOutput(last_hidden_state=encoder_states),
                decoder_input_ids=decoder_input_ids)
    return out.logits


class StateStore:
    """key -> per-clip encoder states, kept in CPU memory (fp16) and computed on first use.

    What the lower-block cache and the distillation teacher (``training.distill``) share. Each key is
    computed alone: a clip's states must not depend on which clips share its batch (GEMM blocking changes
    the last bits), or a resumed or multi-rank run would drift.
    """

    def __init__(self, dtype: torch.dtype = torch.float16) -> None:
        self.dtype = dtype
        self._store: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        self._store.clear()

    def stacked(self, keys: Sequence[str], compute: Callable[[str], torch.Tensor], device: torch.device) -> torch.Tensor:
        """fp32 states of ``keys`` stacked on ``device``; ``compute(key)`` runs once per missing key."""
        for key in dict.fromkeys(keys):
            if key not in self._store:
                self._store[key] = compute(key).to(device="cpu", dtype=self.dtype)
        return torch.stack([self._store[k] for k in keys]).to(device).float()


class LowerStateCache:
    """clip id -> lower-block states (a :class:`StateStore`), computed on the model's device on first use."""

    def __init__(self, model: nn.Module, n_frozen: int, features: Callable[[list[np.ndarray]], torch.Tensor],
                 load_audio: Callable[[str], np.ndarray], dtype: torch.dtype = torch.float16) -> None:
        self.model = model
        self.n_frozen = n_frozen
        self.features = features
        self.load_audio = load_audio
        self.states = StateStore(dtype)

    def __len__(self) -> int:
        return len(self.states)

    def get(self, keys: Sequence[str], paths: Sequence[str]) -> torch.Tensor:
        """fp32 states of ``keys`` stacked on the model's device (computed and stored on first use)."""
        device = model_device(self.model)
        path_of = dict(zip(keys, paths))

        def compute(key: str) -> torch.Tensor:  # only on a cache miss: no mode switching on a warm step
            was_training = self.model.training
            self.model.eval()
            try:
                features = self.features([self.load_audio(path_of[key])]).to(device)
                return lower_states(self.model, features, self.n_frozen)[0]
            finally:
                self.model.train(was_training)

        return self.states.stacked(keys, compute, device)
