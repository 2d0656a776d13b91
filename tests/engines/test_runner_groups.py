"""Rows that decode one window in a group share its cross-attention keys and get the logits of rows
that each carry their own copy (what RL's K rollouts per clip rely on)."""

from __future__ import annotations

import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from service.engines.whisper_runner import WhisperRunner


def _small_whisper() -> WhisperForConditionalGeneration:
    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=300, d_model=64, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
                           max_source_positions=50, max_target_positions=32, num_mel_bins=80, pad_token_id=0,
                           bos_token_id=0, eos_token_id=0, decoder_start_token_id=1)
    return WhisperForConditionalGeneration(config).eval()


def test_grouped_rows_decode_as_rows_with_their_own_copy_of_the_window() -> None:
    runner = WhisperRunner(_small_whisper())
    windows, k = 3, 2
    states = torch.randn(windows, 50, 64, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([50, 30, 40])  # padded windows: the cross mask is per window too
    grouped = runner.start(states, 8, lengths, group_size=k)
    copied = runner.start(states.repeat_interleave(k, dim=0), 8, lengths.repeat_interleave(k))
    prompt = torch.tensor([[1, 5, 7]] * windows * k)
    assert torch.allclose(runner.step(prompt, grouped), runner.step(prompt, copied), atol=1e-5)
    tokens = torch.arange(10, 10 + windows * k)[:, None]  # each row its own token
    assert torch.allclose(runner.step(tokens, grouped), runner.step(tokens, copied), atol=1e-5)
    keep = torch.tensor([0, 1, 4, 5])  # windows 0 and 2 stay, whole
    grouped, copied = grouped.select(keep), copied.select(keep)
    tokens = torch.tensor([[20], [21], [22], [23]])
    out = runner.step(tokens, grouped)
    assert out.shape == (4, 1, 300)
    assert torch.allclose(out, runner.step(tokens, copied), atol=1e-5)
    with pytest.raises(ValueError, match="whole groups of 2 rows"):
        grouped.select(torch.tensor([0, 2]))


def test_beams_reorder_within_their_window_as_rows_with_their_own_copy() -> None:
    runner = WhisperRunner(_small_whisper())
    states = torch.randn(3, 50, 64, generator=torch.Generator().manual_seed(2))
    grouped = runner.start(states, 8, group_size=2)
    copied = runner.start(states.repeat_interleave(2, dim=0), 8)
    prompt = torch.tensor([[1, 5, 7]] * 6)
    runner.step(prompt, grouped), runner.step(prompt, copied)
    tokens = torch.arange(30, 36)[:, None]
    runner.step(tokens, grouped), runner.step(tokens, copied)
    order = torch.tensor([1, 0, 3, 3, 4, 5])  # window 0 swaps its beams, window 1 doubles its second one
    grouped, copied = grouped.select(order), copied.select(order)
    nxt = torch.tensor([[40], [41], [42], [43], [44], [45]])
    assert torch.allclose(runner.step(nxt, grouped), runner.step(nxt, copied), atol=1e-5)
    with pytest.raises(ValueError, match="each from one window"):
        grouped.select(torch.tensor([0, 2, 2, 3, 4, 5]))
