"""Beam search finds the answer greedy decoding misses, ranks by log-prob per token, and keeps each
window's beams apart; a beam of width 1 is the greedy decode."""

from __future__ import annotations

import math

import pytest
import torch

from service.engines.decoding import TokenDecoder
from tests.engines.toy_decoder import EOT, NO_TS, SOT, TS, VOCAB, A, B, C, D, ToyRunner, windows


def decode(beam_size: int, n: int = 2) -> list:
    decoder = TokenDecoder(ToyRunner(), VOCAB)  # type: ignore[arg-type]
    return decoder.decode(windows(*range(n)), [[SOT, NO_TS]] * n, 0.0, 10, beam_size=beam_size)


def text(tokens: list[int]) -> list[int]:
    return [t for t in tokens if t < EOT]


def test_greedy_keeps_the_locally_best_token_and_loses() -> None:
    greedy = decode(1)
    assert text(greedy[0].tokens)[0] == A


def test_beam_search_finds_the_sequence_greedy_misses() -> None:
    out = decode(3)
    assert text(out[0].tokens) == [B, C]
    assert out[0].tokens[0] == TS  # the timestamp rule still applies at the first step
    # sum of log-probs: the forced timestamp (~0), B, C and the EOT
    assert out[0].sum_logprob == pytest.approx(math.log(0.4) + math.log(0.98) + math.log(1.0), abs=1e-3)
    assert out[0].temperature == 0.0


def test_each_window_keeps_its_own_beams() -> None:
    out = decode(3)
    assert text(out[1].tokens) == [D]
    alone = TokenDecoder(ToyRunner(), VOCAB).decode(windows(0), [[SOT, NO_TS]], 0.0, 10, beam_size=3)  # type: ignore[arg-type]
    assert out[0].tokens == alone[0].tokens and out[0].sum_logprob == pytest.approx(alone[0].sum_logprob)


def test_width_one_is_the_greedy_decode() -> None:
    from service.engines.beam_search import beam_search

    decoder = TokenDecoder(ToyRunner(), VOCAB)  # type: ignore[arg-type]
    states, prompts = windows(0, 1), [[SOT, NO_TS]] * 2
    greedy = decoder.decode(states, prompts, 0.0, 10)
    beam = beam_search(decoder, states, prompts, 10, 1)
    assert [g.tokens for g in greedy] == [b.tokens for b in beam]
    assert [g.sum_logprob for g in greedy] == pytest.approx([b.sum_logprob for b in beam])


def test_out_of_tokens_the_best_open_beam_is_the_answer() -> None:
    out = TokenDecoder(ToyRunner(), VOCAB).decode(windows(0), [[SOT, NO_TS]], 0.0, 2, beam_size=2)  # type: ignore[arg-type]
    assert out[0].tokens[0] == TS and len(out[0].tokens) == 2  # no EOT fitted in 2 tokens


def test_sampled_fallback_ignores_the_beam() -> None:
    gen = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)]
    decoder = TokenDecoder(ToyRunner(), VOCAB)  # type: ignore[arg-type]
    sampled = decoder.decode(windows(0, 1), [[SOT, NO_TS]] * 2, 1.0, 10, generators=gen, beam_size=3)
    assert all(d.temperature == 1.0 for d in sampled)
