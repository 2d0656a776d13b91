"""best_of: at a sampled temperature each window draws several samples and keeps the most likely per token.

The toy model (``toy_decoder``): window 0's best answer is B C (log-prob per token ~ -0.31), which a single
sample at temperature 1 draws only 40 % of the time; A x and D score about -1.0 and -1.15.
"""

from __future__ import annotations

import torch

from service.engines.decoding import TokenDecoder
from tests.engines.toy_decoder import EOT, NO_TS, SOT, VOCAB, B, C, D, ToyRunner, windows

PROMPT = [SOT, NO_TS]


def _decoder() -> TokenDecoder:
    return TokenDecoder(ToyRunner(), VOCAB)  # type: ignore[arg-type]


def _text(tokens: list[int]) -> list[int]:
    return [t for t in tokens if t < EOT]


def _rank(d) -> float:
    return d.sum_logprob / max(1, len(d.tokens))


def _samples(seed: int, n: int, window: int = 0) -> list:
    """n single samples of one window, drawn one after the other from one generator."""
    gen = torch.Generator().manual_seed(seed)
    return _decoder().decode(windows(*[window] * n), [PROMPT] * n, 1.0, 10, generators=[gen] * n)


def test_best_of_keeps_the_most_likely_of_the_same_samples() -> None:
    for seed in range(6):
        best = _decoder().decode(windows(0), [PROMPT], 1.0, 10,
                                 generators=[torch.Generator().manual_seed(seed)], best_of=5)[0]
        samples = _samples(seed, 5)
        assert best.tokens in [s.tokens for s in samples]
        assert _rank(best) == max(_rank(s) for s in samples)
        assert best.temperature == 1.0


def test_best_of_finds_the_likely_answer_a_single_sample_often_misses() -> None:
    singles = [_samples(seed, 1)[0] for seed in range(20)]
    bests = [_decoder().decode(windows(0), [PROMPT], 1.0, 10,
                               generators=[torch.Generator().manual_seed(seed)], best_of=8)[0] for seed in range(20)]
    assert sum(_text(s.tokens) == [B, C] for s in singles) < 16
    assert all(_text(b.tokens) == [B, C] for b in bests)


def test_each_window_draws_from_its_own_generator() -> None:
    """A seeded window's answer does not depend on the other windows decoded beside it."""
    together = _decoder().decode(windows(0, 1), [PROMPT] * 2, 1.0, 10,
                                 generators=[torch.Generator().manual_seed(3), torch.Generator().manual_seed(9)],
                                 best_of=4)
    alone = _decoder().decode(windows(0), [PROMPT], 1.0, 10,
                              generators=[torch.Generator().manual_seed(3)], best_of=4)
    assert together[0].tokens == alone[0].tokens
    assert _text(together[1].tokens) in ([D], [1])  # window 1 reads D or A and stops


def test_temperature_zero_ignores_best_of() -> None:
    states = windows(0, 1)
    greedy = _decoder().decode(states, [PROMPT] * 2, 0.0, 10)
    with_best_of = _decoder().decode(states, [PROMPT] * 2, 0.0, 10, best_of=5)
    assert [d.tokens for d in greedy] == [d.tokens for d in with_best_of]
