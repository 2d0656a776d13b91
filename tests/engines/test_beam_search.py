"""Beam search finds the answer greedy decoding misses, ranks by log-prob per token, and keeps each
window's beams apart; a beam of width 1 is the greedy decode."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from service.engines.decoding import TokenDecoder
from service.engines.vocabulary import WhisperVocabulary

# Toy vocabulary: text tokens 0-9, then the control tokens, then 7 timestamps.
A, B, C, D = 1, 2, 3, 4
EOT, SOT, NO_SPEECH, NO_TS, TS = 10, 11, 12, 13, 14
VOCAB = WhisperVocabulary(sot=SOT, eot=EOT, transcribe=15, translate=16, no_timestamps=NO_TS, no_speech=NO_SPEECH,
                          sot_prev=17, timestamp_begin=TS, vocab_size=21, language_tokens={}, suppress_tokens=(),
                          begin_suppress_tokens=(), max_initial_timestamp_index=0)


@dataclass
class ToyState:
    histories: list[list[int]]
    window: list[int]

    def select(self, rows: torch.Tensor) -> ToyState:
        rows = rows.tolist()
        return ToyState([list(self.histories[r]) for r in rows], [self.window[r] for r in rows])


class ToyRunner:
    """A language model given as a table: next-token probabilities after each text history.

    Window 0: greedy takes A (0.5) and then has only weak continuations; A's rival B (0.4) leads to C
    with certainty. Window 1 reads D and stops whichever way it is decoded.
    """

    max_positions = 32

    def __init__(self) -> None:
        self.tables = [
            {(): {A: 0.5, B: 0.4, D: 0.1}, (A,): {k: 0.1 - 0.005 * k for k in range(10)},
             (B,): {C: 0.98, EOT: 0.02}, (B, C): {EOT: 1.0}},
            {(): {D: 0.9, A: 0.1}, (D,): {EOT: 1.0}, (A,): {EOT: 1.0}},
        ]
        self.steps = 0

    def start(self, encoder_states: torch.Tensor, max_len: int, lengths=None, group_size: int = 1) -> ToyState:
        rows = encoder_states.shape[0] * group_size
        return ToyState([[] for _ in range(rows)], [r // group_size for r in range(rows)])

    def step(self, tokens: torch.Tensor, state: ToyState) -> torch.Tensor:
        self.steps += 1
        out = torch.full((tokens.shape[0], tokens.shape[1], VOCAB.vocab_size), -30.0)
        for r, row in enumerate(tokens.tolist()):
            if len(row) > 1:  # the prompt: the first position gets a timestamp, as Whisper's rules demand
                out[r, -1, TS] = 0.0
                continue
            state.histories[r].append(row[0])
            text = tuple(t for t in state.histories[r] if t < EOT)
            table = self.tables[state.window[r]].get(text, {EOT: 1.0})
            for token, p in table.items():
                out[r, -1, token] = math.log(p)
        return out


def decode(beam_size: int, windows: int = 2) -> list:
    decoder = TokenDecoder(ToyRunner(), VOCAB)  # type: ignore[arg-type]
    return decoder.decode(torch.zeros(windows, 4, 8), [[SOT, NO_TS]] * windows, 0.0, 10, beam_size=beam_size)


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
    alone = TokenDecoder(ToyRunner(), VOCAB).decode(torch.zeros(1, 4, 8), [[SOT, NO_TS]], 0.0, 10, beam_size=3)  # type: ignore[arg-type]
    assert out[0].tokens == alone[0].tokens and out[0].sum_logprob == pytest.approx(alone[0].sum_logprob)


def test_width_one_is_the_greedy_decode() -> None:
    from service.engines.beam_search import beam_search

    decoder = TokenDecoder(ToyRunner(), VOCAB)  # type: ignore[arg-type]
    states, prompts = torch.zeros(2, 4, 8), [[SOT, NO_TS]] * 2
    greedy = decoder.decode(states, prompts, 0.0, 10)
    beam = beam_search(decoder, states, prompts, 10, 1)
    assert [g.tokens for g in greedy] == [b.tokens for b in beam]
    assert [g.sum_logprob for g in greedy] == pytest.approx([b.sum_logprob for b in beam])


def test_out_of_tokens_the_best_open_beam_is_the_answer() -> None:
    out = TokenDecoder(ToyRunner(), VOCAB).decode(torch.zeros(1, 4, 8), [[SOT, NO_TS]], 0.0, 2, beam_size=2)  # type: ignore[arg-type]
    assert out[0].tokens[0] == TS and len(out[0].tokens) == 2  # no EOT fitted in 2 tokens


def test_sampled_fallback_ignores_the_beam() -> None:
    gen = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)]
    decoder = TokenDecoder(ToyRunner(), VOCAB)  # type: ignore[arg-type]
    sampled = decoder.decode(torch.zeros(2, 4, 8), [[SOT, NO_TS]] * 2, 1.0, 10, generators=gen, beam_size=3)
    assert all(d.temperature == 1.0 for d in sampled)
