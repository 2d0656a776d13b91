"""A toy Whisper decoder for the decoding tests: a next-token table per window instead of weights."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

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
        windows = encoder_states[:, 0, 0].long().tolist()  # each row's table: see windows()
        rows = encoder_states.shape[0] * group_size
        return ToyState([[] for _ in range(rows)], [windows[r // group_size] for r in range(rows)])

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


def windows(*ids: int) -> torch.Tensor:
    """Encoder states for the toy: each row names the table (window) it is decoded with."""
    return torch.tensor(ids, dtype=torch.float32)[:, None, None].expand(len(ids), 4, 8).contiguous()
