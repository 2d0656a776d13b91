"""A lean Whisper forward pass over Hugging Face weights, built for decoding speed.

Why not ``model.generate``: the decode loop is where CPU time goes (weights.md §4), and we need
per-window log-probabilities, the no-speech probability and OpenAI's timestamp rules, batched
across requests. So the encoder runs as transformers ships it, and the decoder runs here with:

* cross-attention keys/values computed once per window, not per step;
* a preallocated self-attention KV cache (no per-step concatenation);
* ``scaled_dot_product_attention`` for both attentions.

The weights are the very modules of the loaded ``WhisperForConditionalGeneration`` (no copy), so
a LoRA adapter merged into them, or applied with peft, is seen here unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

N_MELS_FRAMES = 3000  # one 30-second window of log-mel frames


@dataclass
class DecoderState:
    """Per-batch decoding state: cross-attention K/V and the self-attention cache."""

    cross_k: list[torch.Tensor]  # per layer [B, H, T_enc, Dh]
    cross_v: list[torch.Tensor]
    self_k: torch.Tensor  # [L, B, H, max_len, Dh]
    self_v: torch.Tensor
    length: int = 0

    def select(self, rows: torch.Tensor) -> "DecoderState":
        """Keep only ``rows`` of the batch (used when finished sequences are dropped)."""
        return DecoderState([k[rows] for k in self.cross_k], [v[rows] for v in self.cross_v],
                            self.self_k[:, rows], self.self_v[:, rows], self.length)


class WhisperRunner:
    """Encoder + cached decoder steps for one loaded Whisper model."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        cfg = model.config
        self.n_heads = cfg.decoder_attention_heads
        self.d_model = cfg.d_model
        self.head_dim = self.d_model // self.n_heads
        self.max_positions = cfg.max_target_positions
        self.n_mels = cfg.num_mel_bins
        decoder = model.model.decoder
        self.layers = list(decoder.layers)
        self.embed_tokens = decoder.embed_tokens
        self.embed_positions = decoder.embed_positions
        self.final_norm = decoder.layer_norm
        self.proj_out = model.proj_out

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    @torch.inference_mode()
    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, 3000] log-mel → [B, 1500, d] encoder states."""
        return self.model.model.encoder(mel.to(self.dtype)).last_hidden_state

    @torch.inference_mode()
    def start(self, encoder_states: torch.Tensor, max_len: int) -> DecoderState:
        """Precompute cross-attention K/V and allocate the self-attention cache."""
        batch, t_enc, _ = encoder_states.shape
        cross_k, cross_v = [], []
        for layer in self.layers:
            attn = layer.encoder_attn
            cross_k.append(self._heads(attn.k_proj(encoder_states), batch, t_enc))
            cross_v.append(self._heads(attn.v_proj(encoder_states), batch, t_enc))
        shape = (len(self.layers), batch, self.n_heads, min(max_len, self.max_positions), self.head_dim)
        empty = torch.empty(shape, dtype=encoder_states.dtype, device=encoder_states.device)
        return DecoderState(cross_k, cross_v, empty, torch.empty_like(empty))

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """Feed ``tokens`` [B, L] after ``state.length`` cached ones; returns logits [B, L, V].

        L > 1 is only allowed at the start (the prompt), where a causal mask applies.
        """
        batch, new = tokens.shape
        start = state.length
        if start + new > state.self_k.shape[3]:
            raise ValueError("decoder cache exhausted: sequence longer than max_len")
        x = self.embed_tokens(tokens) + self.embed_positions.weight[start:start + new]
        causal = new > 1
        if causal and start != 0:
            raise ValueError("multi-token steps are only supported for the prompt")
        for i, layer in enumerate(self.layers):
            # Self-attention with the preallocated cache.
            h = layer.self_attn_layer_norm(x)
            attn = layer.self_attn
            q = self._heads(attn.q_proj(h), batch, new)
            state.self_k[i, :, :, start:start + new] = self._heads(attn.k_proj(h), batch, new)
            state.self_v[i, :, :, start:start + new] = self._heads(attn.v_proj(h), batch, new)
            k = state.self_k[i, :, :, :start + new]
            v = state.self_v[i, :, :, :start + new]
            o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            x = x + attn.out_proj(self._merge(o, batch, new))
            # Cross-attention over the cached encoder K/V.
            h = layer.encoder_attn_layer_norm(x)
            cattn = layer.encoder_attn
            q = self._heads(cattn.q_proj(h), batch, new)
            o = F.scaled_dot_product_attention(q, state.cross_k[i], state.cross_v[i])
            x = x + cattn.out_proj(self._merge(o, batch, new))
            # Feed-forward.
            h = layer.final_layer_norm(x)
            x = x + layer.fc2(layer.activation_fn(layer.fc1(h)))
        state.length = start + new
        return self.proj_out(self.final_norm(x)).float()

    def _heads(self, x: torch.Tensor, batch: int, length: int) -> torch.Tensor:
        return x.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)

    def _merge(self, x: torch.Tensor, batch: int, length: int) -> torch.Tensor:
        return x.transpose(1, 2).reshape(batch, length, self.d_model)
