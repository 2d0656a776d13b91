"""Teacher-forced log-probabilities of sampled responses, computed only where they are scored.

Why not ``model(encoder_outputs=..., decoder_input_ids=...).logits``: DG-WGPO scores K rollouts of each
clip (16 clips x 8 rollouts per step in the GPU recipe), four times per step (old, reference, and two
updates). Measured on the 2-core CPU (2026-11-28, whisper-tiny.en, 16 x 8): that forward took ~120 s of
a ~150 s step, for two reasons this module removes:

* **cross-attention keys/values per rollout.** The plain forward projects the encoder states (1,500
  positions) to keys and values once per *row*, so each clip's projection is repeated K times. Here it
  runs once per clip, and the K rollouts' queries attend to it together: cross-attention has no mask, so
  the K x W queries of one clip are one query sequence over that clip's keys (exact, no copy).
* **the vocabulary projection on padding.** Every position of the padded batch (the width of its longest
  rollout, often a 96-token loop) went through the 51,864-way output projection and a log-softmax. Here
  only the scored positions (``mask``: the responses of finished rollouts) are projected, and the width
  is that of the longest scored row.

The layers are the model's own modules (LoRA layers included, dropout as the modules apply it), so the
result is the plain forward's up to float rounding (tested, values and gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from service.engines.whisper_runner import group_queries, merge_heads, split_heads, ungroup_queries
from training.whisper import unwrap


def decoder_hidden(model: nn.Module, encoder_states: torch.Tensor, group_size: int,
                   inputs: torch.Tensor) -> torch.Tensor:
    """Final-norm decoder states [C * K, W, d] for ``inputs`` [C * K, W] (rows grouped clip by clip, K per
    clip) over ``encoder_states`` [C, T, d] (one per clip, not repeated)."""
    whisper = unwrap(model)
    decoder = whisper.model.decoder
    clips = encoder_states.shape[0]
    rows, width = inputs.shape
    if rows != clips * group_size:
        raise ValueError(f"{rows} response rows for {clips} clips x {group_size} rollouts")
    n_heads = whisper.config.decoder_attention_heads
    x = decoder.embed_tokens(inputs) + decoder.embed_positions.weight[:width]
    for layer in decoder.layers:
        h = layer.self_attn_layer_norm(x)
        attn = layer.self_attn
        q, k, v = (split_heads(proj(h), n_heads) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
        x = x + attn.out_proj(merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=True)))
        h = layer.encoder_attn_layer_norm(x)
        cross = layer.encoder_attn
        # One clip's K rollouts as one query sequence of K * W positions over its keys and values.
        q = group_queries(split_heads(cross.q_proj(h), n_heads), group_size)
        k = split_heads(cross.k_proj(encoder_states), n_heads)
        v = split_heads(cross.v_proj(encoder_states), n_heads)
        o = ungroup_queries(F.scaled_dot_product_attention(q, k, v), group_size)
        x = x + cross.out_proj(merge_heads(o))
        h = layer.final_layer_norm(x)
        x = x + layer.fc2(layer.activation_fn(layer.fc1(h)))
    return decoder.layer_norm(x)


def scored_log_softmax(model: nn.Module, encoder_states: torch.Tensor, group_size: int, inputs: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor:
    """log pi(. | prefix) [M, V] at the M positions where ``mask`` is set, in row-major order (with autograd)."""
    hidden = decoder_hidden(model, encoder_states, group_size, inputs)
    return torch.log_softmax(unwrap(model).proj_out(hidden[mask.bool()]).float(), dim=-1)


def at_scored(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-position values [M] back in the response layout [N, W], 0 where ``mask`` is not set."""
    out = torch.zeros(mask.shape, dtype=values.dtype, device=values.device)
    return out.index_put((mask.bool(),), values)


def response_logprobs(model: nn.Module, encoder_states: torch.Tensor, group_size: int, inputs: torch.Tensor,
                      targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log pi(target) [C * K, W] at the positions where ``mask`` is set, 0 elsewhere (with autograd)."""
    return response_logprobs_and_entropy(model, encoder_states, group_size, inputs, targets, mask, entropy=False)[0]


def response_logprobs_and_entropy(model: nn.Module, encoder_states: torch.Tensor, group_size: int,
                                  inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                                  entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`response_logprobs` and, with ``entropy``, the policy's entropy at the same positions [C * K, W]
    (from the same log-softmax: the entropy bonus of ``[rl].entropy_coef`` costs no second forward)."""
    logp_all = scored_log_softmax(model, encoder_states, group_size, inputs, mask)
    picked = logp_all.gather(-1, targets[mask.bool()][:, None])[:, 0]
    spread = -(logp_all.exp() * logp_all).sum(dim=-1) if entropy else None
    return at_scored(picked, mask), (at_scored(spread, mask) if spread is not None else None)
