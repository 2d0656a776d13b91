"""A lean Whisper forward pass over Hugging Face weights, built for decoding speed.

Why not ``model.generate``: the decode loop is where CPU time goes (weights.md §4), and we need
per-window log-probabilities, the no-speech probability and OpenAI's timestamp rules, batched
across requests. So the encoder runs as transformers ships it, and the decoder runs here with:

* cross-attention keys/values computed once per window, not per step;
* a preallocated self-attention KV cache (no per-step concatenation);
* ``scaled_dot_product_attention`` for both attentions;
* the output projection read from a transposed, contiguous copy of the tied embedding: on the CPU
  the logits GEMV over the 51k-token vocabulary is memory-bound, and ``x @ W.T`` with ``W`` stored
  [vocab, d] streams it twice as slowly as ``x @ Wt`` with ``Wt`` stored [d, vocab] (measured:
  5.5 ms vs 2.7 ms per step for tiny.en on 2 cores, half of the whole decoder step);
* any torch device: inputs are moved to the weights' device and logits come back to the CPU,
  where the per-row timestamp and suppression rules run (one [B, vocab] copy per step);
* groups of rows decoding the same window (``start(..., group_size=K)``: K sampled rollouts of one
  clip in RL): cross-attention keys/values are stored once per window and the K rows' queries
  attend to them together, so they are neither projected nor read K times (the K x 1,500-position
  copies made each rollout step memory-bound: measured 30 s of a 54 s RL step at 16 x 8 rows);
* encoder windows shorter than 30 s (``encode`` takes any frame count up to 3000), with a
  cross-attention mask so rows of one batch may have different encoder lengths.

The weights are the very modules of the loaded ``WhisperForConditionalGeneration`` (no copy), so
a LoRA adapter merged into them, or applied with peft, is seen here unchanged. The one derived copy,
the transposed output projection, is keyed on the weight's storage and version counter and rebuilt
when either changes; it is only used for a plain ``nn.Linear`` (a quantised or wrapped projection
is called as it is).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

N_MELS_FRAMES = 3000  # one 30-second window of log-mel frames


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[B, L, d] -> [B, H, L, d / H]."""
    batch, length, d = x.shape
    return x.view(batch, length, n_heads, d // n_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, dh] -> [B, L, H * dh]: the inverse of :func:`split_heads`."""
    batch, heads, length, dh = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * dh)


def group_queries(q: torch.Tensor, group_size: int) -> torch.Tensor:
    """[B, H, L, Dh] -> [B / K, H, K * L, Dh]: a group's queries as one sequence over its window's K/V
    (cross-attention has no mask between query positions, so this is exact)."""
    if group_size == 1:
        return q
    batch, heads, length, dh = q.shape
    return q.view(batch // group_size, group_size, heads, length, dh).transpose(1, 2).reshape(
        batch // group_size, heads, group_size * length, dh)


def ungroup_queries(o: torch.Tensor, group_size: int) -> torch.Tensor:
    """[B / K, H, K * L, Dh] -> [B, H, L, Dh]: the inverse of :func:`group_queries`."""
    if group_size == 1:
        return o
    windows, heads, grouped, dh = o.shape
    length = grouped // group_size
    return o.view(windows, heads, group_size, length, dh).transpose(1, 2).reshape(
        windows * group_size, heads, length, dh)


@dataclass
class DecoderState:
    """Per-batch decoding state: cross-attention K/V and the self-attention cache."""

    cross_k: list[torch.Tensor]  # per layer [B / group_size, H, T_enc, Dh]
    cross_v: list[torch.Tensor]
    self_k: torch.Tensor  # [L, B, H, max_len, Dh]
    self_v: torch.Tensor
    length: int = 0
    cross_mask: torch.Tensor | None = None  # [B / group_size, 1, 1, T_enc] bool, True = attend; None = all
    group_size: int = 1  # consecutive rows sharing one encoder window

    def select(self, rows: torch.Tensor) -> DecoderState:
        """Keep only ``rows`` of the batch, in that order (finished sequences dropped, beams reordered).

        With groups, each run of ``group_size`` consecutive kept rows must come from one window: a
        window's rows may be reordered or repeated among themselves (what beam search does when one
        beam's continuations replace another's), but never mixed with another window's.
        """
        windows = rows
        if self.group_size > 1:
            groups = rows.view(-1, self.group_size)
            owners = groups // self.group_size
            windows = owners[:, 0]
            if not torch.equal(owners, windows[:, None].expand_as(owners)):
                raise ValueError(f"select must keep whole groups of {self.group_size} rows, each from one window")
        mask = self.cross_mask[windows] if self.cross_mask is not None else None
        return DecoderState([k[windows] for k in self.cross_k], [v[windows] for v in self.cross_v],
                            self.self_k[:, rows], self.self_v[:, rows], self.length, mask, self.group_size)


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
        self.encoder = model.model.encoder
        self._proj_t: torch.Tensor | None = None
        self._proj_key: tuple[int, int] | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    @torch.inference_mode()
    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, F] log-mel (F even, at most 3000) → [B, F / 2, d] encoder states.

        F = 3000 is the model's own 30-second window; shorter F runs the same layers on fewer
        positions (the first F / 2 position embeddings), which is what trimming the padding means.
        """
        enc = self.encoder
        frames = mel.shape[-1]
        if frames > N_MELS_FRAMES or frames % 2:
            raise ValueError(f"encoder input must have an even frame count <= {N_MELS_FRAMES}, got {frames}")
        x = F.gelu(enc.conv1(mel.to(device=self.device, dtype=self.dtype)))
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = x + enc.embed_positions.weight[:x.shape[1]]
        for layer in enc.layers:
            out = layer(x, None)
            x = out[0] if isinstance(out, tuple) else out
        return enc.layer_norm(x)

    @torch.inference_mode()
    def start(self, encoder_states: torch.Tensor, max_len: int,
              lengths: torch.Tensor | None = None, group_size: int = 1) -> DecoderState:
        """Precompute cross-attention K/V and allocate the self-attention cache.

        ``lengths`` [B] gives each row's valid encoder positions when rows were padded to a common
        length; the padded positions are then masked out of cross-attention. With ``group_size`` K,
        each of the B windows is decoded by K consecutive rows (B * K in all), which share its K/V.
        """
        windows, t_enc, _ = encoder_states.shape
        batch = windows * group_size
        if lengths is not None:
            lengths = lengths.to(encoder_states.device)
        cross_k, cross_v = [], []
        for layer in self.layers:
            attn = layer.encoder_attn
            # Contiguous once here, so attention does not re-layout them at every step.
            cross_k.append(split_heads(attn.k_proj(encoder_states), self.n_heads).contiguous())
            cross_v.append(split_heads(attn.v_proj(encoder_states), self.n_heads).contiguous())
        shape = (len(self.layers), batch, self.n_heads, min(max_len, self.max_positions), self.head_dim)
        empty = torch.empty(shape, dtype=encoder_states.dtype, device=encoder_states.device)
        mask = None
        if lengths is not None and bool((lengths < t_enc).any()):
            mask = (torch.arange(t_enc, device=encoder_states.device)[None, :] < lengths[:, None])[:, None, None, :]
        return DecoderState(cross_k, cross_v, empty, torch.empty_like(empty), cross_mask=mask, group_size=group_size)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """Feed ``tokens`` [B, L] after ``state.length`` cached ones; returns logits [B, L, V].

        L > 1 is only allowed at the start (the prompt), where a causal mask applies.
        """
        new = tokens.shape[1]
        tokens = tokens.to(self.device)
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
            q = split_heads(attn.q_proj(h), self.n_heads)
            state.self_k[i, :, :, start:start + new] = split_heads(attn.k_proj(h), self.n_heads)
            state.self_v[i, :, :, start:start + new] = split_heads(attn.v_proj(h), self.n_heads)
            k = state.self_k[i, :, :, :start + new]
            v = state.self_v[i, :, :, :start + new]
            o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            x = x + attn.out_proj(merge_heads(o))
            # Cross-attention over the cached encoder K/V.
            h = layer.encoder_attn_layer_norm(x)
            cattn = layer.encoder_attn
            q = group_queries(split_heads(cattn.q_proj(h), self.n_heads), state.group_size)
            o = F.scaled_dot_product_attention(q, state.cross_k[i], state.cross_v[i], attn_mask=state.cross_mask)
            x = x + cattn.out_proj(merge_heads(ungroup_queries(o, state.group_size)))
            # Feed-forward.
            h = layer.final_layer_norm(x)
            x = x + layer.fc2(layer.activation_fn(layer.fc1(h)))
        state.length = start + new
        # The decoding rules run on the CPU (small per-row work): logits come back there.
        return self._logits(self.final_norm(x)).float().cpu()

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        proj = self.proj_out
        if type(proj) is not nn.Linear or proj.bias is not None or torch.is_grad_enabled():
            return proj(x)
        weight = proj.weight
        key = (weight.data_ptr(), weight._version)
        if self._proj_t is None or key != self._proj_key:
            self._proj_t = weight.detach().t().contiguous()
            self._proj_key = key
        return x @ self._proj_t
