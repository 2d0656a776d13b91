"""DG-WGPO reward tests. Every expected number is worked out by hand in the comment above it.

Notation: N = reference words, C = correct, S_soft / S_hard, I, D; eps (1e-8) is ignored in the arithmetic
and covered by ``approx``. Defaults: τ = 0.3, α_s = 0.4, α_dyn = 0.6, gate weights 0.75 / 0.25.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.reward import (
    DEFAULT_CONFIG,
    RewardConfig,
    char_similarity,
    group_advantages,
    group_rewards,
    reward,
    structure_reward,
    zero_variance_group,
)

RAW = RewardConfig(normalise=False)
REF6 = "i will receive the parcel today"


def test_soft_substitution_misspelling() -> None:
    # recieve→receive: Levenshtein 2 (a transposition), sim = 1 − 2/7 = 0.714 >= 0.5 → soft.
    # N=6, C=5, S_soft=1 → WER = 1/6 = 0.1667 < τ → below the gate.
    # R_wer = 1 − 1/6 = 0.833333 = R_static (no repeats)
    # R_fine = 5 / (5 + 0.4·1) = 5/5.4 = 0.925926
    # R_struc = ½·5/6 + ½·(1 − 0/6) = 0.416667 + 0.5 = 0.916667
    # R_dyn = 0.75·0.925926 + 0.25·0.916667 = 0.694444 + 0.229167 = 0.923611
    # R = 0.4·0.833333 + 0.6·0.923611 = 0.333333 + 0.554167 = 0.8875
    b = reward("i will recieve the parcel today", REF6)
    assert (b.n_correct, b.n_soft, b.n_hard) == (5, 1, 0)
    assert b.wer == pytest.approx(1 / 6)
    assert b.below_tau
    assert b.r_wer == pytest.approx(5 / 6)
    assert b.r_fine == pytest.approx(5 / 5.4)
    assert b.r_struc == pytest.approx(11 / 12)
    assert b.r_dyn == pytest.approx(0.923611, abs=1e-6)
    assert b.total == pytest.approx(0.8875, abs=1e-6)


def test_hard_substitution_scores_below_the_soft_one() -> None:
    # buy→receive: no common letters, Levenshtein 7, sim = 1 − 7/7 = 0 → hard.
    # WER = 1/6 below τ; R_static = 0.833333
    # R_fine = 5 / (5 + 1) = 0.833333;  R_struc = 0.916667 (same as above)
    # R_dyn = 0.75·0.833333 + 0.25·0.916667 = 0.625 + 0.229167 = 0.854167
    # R = 0.333333 + 0.6·0.854167 = 0.333333 + 0.5125 = 0.845833
    b = reward("i will buy the parcel today", REF6)
    assert (b.n_correct, b.n_soft, b.n_hard) == (5, 0, 1)
    assert b.r_fine == pytest.approx(5 / 6)
    assert b.total == pytest.approx(0.845833, abs=1e-6)
    assert b.total < reward("i will recieve the parcel today", REF6).total


def test_british_spelling_is_soft_without_normalising_and_exact_with_it() -> None:
    # Raw: colour→color, Levenshtein 1, sim = 1 − 1/6 = 0.833 → soft. N=3, C=2, WER = 1/3 >= τ → above.
    # R_wer = 2/3 = 0.666667; R_fine = 2/(2 + 0.4) = 0.833333
    # R_struc = ½·2/3 + ½·1 = 0.833333
    # R_dyn = 0.25·0.833333 + 0.75·0.833333 = 0.833333
    # R = 0.4·0.666667 + 0.6·0.833333 = 0.266667 + 0.5 = 0.766667
    raw = reward("the color red", "the colour red", RAW)
    assert (raw.n_soft, raw.n_hard, raw.below_tau) == (1, 0, False)
    assert raw.total == pytest.approx(0.766667, abs=1e-6)
    # Normalised (default): colour → color, everything matches: every component 1 (up to eps).
    assert reward("the color red", "The colour red.").total == pytest.approx(1.0)


def test_char_similarity_matches_the_paper_formula() -> None:
    assert char_similarity("color", "colour") == pytest.approx(1 - 1 / 6)
    assert char_similarity("recieve", "receive") == pytest.approx(1 - 2 / 7)
    assert char_similarity("buy", "receive") == 0.0


def test_gate_above_tau() -> None:
    # ref "the cat sat down", hyp "the cat ate fish": sat→ate Levenshtein 2, sim 1/3 → hard;
    # down→fish Levenshtein 4, sim 0 → hard. N=4, C=2, S_hard=2, WER = 2/4 = 0.5 >= 0.3 → above.
    # R_wer = 0.5 = R_static;  R_fine = 2/(2+2) = 0.5
    # R_struc = ½·2/4 + ½·(1 − 0/4) = 0.25 + 0.5 = 0.75
    # R_dyn = 0.25·0.5 + 0.75·0.75 = 0.125 + 0.5625 = 0.6875
    # R = 0.4·0.5 + 0.6·0.6875 = 0.2 + 0.4125 = 0.6125
    b = reward("the cat ate fish", "the cat sat down", RAW)
    assert (b.n_correct, b.n_hard, b.below_tau) == (2, 2, False)
    assert b.r_struc == pytest.approx(0.75)
    assert b.r_dyn == pytest.approx(0.6875)
    assert b.total == pytest.approx(0.6125)


def test_gate_below_tau_when_tau_is_raised() -> None:
    # Same pair, τ = 0.6: WER 0.5 < 0.6 → below.
    # R_dyn = 0.75·0.5 + 0.25·0.75 = 0.375 + 0.1875 = 0.5625
    # R = 0.2 + 0.6·0.5625 = 0.2 + 0.3375 = 0.5375
    b = reward("the cat ate fish", "the cat sat down", RewardConfig(normalise=False, tau=0.6))
    assert b.below_tau
    assert b.total == pytest.approx(0.5375)


def test_gate_is_strict_at_tau() -> None:
    # τ = 0.5 (the appendix value) and WER exactly 0.5 → the "otherwise" branch: R = 0.6125 as above.
    b = reward("the cat ate fish", "the cat sat down", RewardConfig(normalise=False, tau=0.5))
    assert not b.below_tau
    assert b.total == pytest.approx(0.6125)


def test_insertions_are_hard_and_cost_structure() -> None:
    # ref "open the door now" (N=4), hyp adds "right away": C=4, I=2 (hard). WER = 2/4 = 0.5 → above.
    # R_wer = 0.5;  R_fine = 4/(4+2) = 0.666667
    # R_struc = ½·4/4 + ½·max(0, 1 − |6−4|/4) = 0.5 + 0.25 = 0.75
    # R_dyn = 0.25·0.666667 + 0.75·0.75 = 0.166667 + 0.5625 = 0.729167
    # R = 0.2 + 0.6·0.729167 = 0.2 + 0.4375 = 0.6375
    b = reward("open the door now right away", "open the door now", RAW)
    assert (b.n_correct, b.n_hard, b.lcs) == (4, 2, 4)
    assert b.total == pytest.approx(0.6375)


def test_deletions_are_hard() -> None:
    # hyp "open door": C=2, D=2. WER = 0.5 → above. R_wer = 0.5; R_fine = 2/4 = 0.5
    # R_struc = ½·2/4 + ½·(1 − 2/4) = 0.25 + 0.25 = 0.5;  R_dyn = 0.25·0.5 + 0.75·0.5 = 0.5
    # R = 0.4·0.5 + 0.6·0.5 = 0.5
    b = reward("open door", "open the door now", RAW)
    assert (b.n_correct, b.n_hard) == (2, 2)
    assert b.total == pytest.approx(0.5)


def test_hallucinated_loop_is_gated() -> None:
    # ref "i will see you tomorrow" (N=5); hyp appends "see you tomorrow" twice more (11 words):
    # trigram "see you tomorrow" occurs 3 times → R_rep = 0 → R_static = 0.
    # C=5, I=6 → WER = 6/5 = 1.2 → R_wer = clip(1 − 1.2) = 0;  R_fine = 5/(5+6) = 0.454545
    # R_struc = ½·5/5 + ½·max(0, 1 − 6/5) = 0.5 + 0 = 0.5
    # R_dyn (above) = 0.25·0.454545 + 0.75·0.5 = 0.113636 + 0.375 = 0.488636
    # R = 0.4·0 + 0.6·0.488636 = 0.293182
    b = reward("i will see you tomorrow see you tomorrow see you tomorrow", "i will see you tomorrow", RAW)
    assert (b.r_rep, b.r_wer, b.r_static) == (0.0, 0.0, 0.0)
    assert b.r_fine == pytest.approx(5 / 11)
    assert b.total == pytest.approx(0.293182, abs=1e-6)


def test_repetition_gate_only_zeroes_the_static_part() -> None:
    # A loop that matches its (repetitive) reference exactly: WER 0 → R_wer = 1, but the 3-gram
    # "go go go" occurs 3 times → R_rep = 0, R_static = 0. R_fine = R_struc = 1 → R_dyn = 1.
    # R = 0.4·0 + 0.6·1 = 0.6 (the paper gates R_static only).
    b = reward("go go go go go", "go go go go go", RAW)
    assert (b.wer, b.r_wer, b.r_rep) == (0.0, 1.0, 0.0)
    assert b.total == pytest.approx(0.6)
    # Loosen the detector (threshold 4) and the same text earns the full reward.
    assert reward(
        "go go go go go", "go go go go go", RewardConfig(normalise=False, repeat_threshold=4)
    ).total == (pytest.approx(1.0))


def test_empty_hypothesis_earns_nothing() -> None:
    # N=4, D=4: WER 1 → R_wer 0; R_fine = 0/(0+4) = 0; R_struc = ½·0/4 + ½·max(0, 1 − 4/4) = 0 → R = 0.
    b = reward("", "open the door now")
    assert (b.wer, b.r_fine, b.r_struc, b.total) == (1.0, 0.0, 0.0, 0.0)


def test_words_over_an_empty_reference_earn_nothing() -> None:
    # N=0, I=2: WER = 2/max(0,1) = 2 → R_wer 0; R_fine = 0/(0+2) = 0; R_struc defined as 0 → R = 0.
    b = reward("hello there", "")
    assert (b.wer, b.r_wer, b.r_fine, b.r_struc, b.total) == (2.0, 0.0, 0.0, 0.0, 0.0)


def test_silence_transcribed_as_silence_earns_everything() -> None:
    assert reward("", "").total == 1.0
    # Both normalise to nothing ("um" is a hesitation, "[music]" a tag).
    b = reward("um", "[music]")
    assert (b.total, b.r_fine, b.r_struc, b.wer) == (1.0, 1.0, 1.0, 0.0)


def test_structure_reward_on_reordered_words() -> None:
    # H = c a b, R = a b c: LCS = 2 (a b); equal lengths → ½·2/3 + ½·1 = 0.833333.
    assert structure_reward(["c", "a", "b"], ["a", "b", "c"]) == pytest.approx(5 / 6)
    # Twice as long as the reference: length term max(0, 1 − 3/3) = 0 → ½·3/3 = 0.5.
    assert structure_reward(["a", "b", "c", "x", "y", "z"], ["a", "b", "c"]) == pytest.approx(0.5)


def test_final_weighting_follows_alpha_dyn() -> None:
    # "the cat ate fish" pair: R_static 0.5, R_dyn 0.6875. α_dyn = 1 → R = R_dyn; α_dyn = 0 → R = R_static.
    pair = ("the cat ate fish", "the cat sat down")
    assert reward(*pair, RewardConfig(normalise=False, alpha_dyn=1.0)).total == pytest.approx(0.6875)
    assert reward(*pair, RewardConfig(normalise=False, alpha_dyn=0.0)).total == pytest.approx(0.5)


def test_alpha_soft_weighs_soft_substitutions() -> None:
    # α_s = 1: a soft substitution costs as much as a hard one → R_fine = 5/6, same as "buy".
    cfg = RewardConfig(alpha_soft=1.0)
    assert reward("i will recieve the parcel today", REF6, cfg).r_fine == pytest.approx(5 / 6)


def test_char_unit_for_unspaced_scripts() -> None:
    # Chars 今天天气好 vs 今天天汽好: N=5, C=4, 1 hard substitution (single chars, sim 0).
    # CER = 0.2 < τ. R_wer = 0.8; R_fine = 4/5 = 0.8; R_struc = ½·4/5 + ½·1 = 0.9
    # R_dyn = 0.75·0.8 + 0.25·0.9 = 0.825;  R = 0.4·0.8 + 0.6·0.825 = 0.32 + 0.495 = 0.815
    cfg = RewardConfig(unit="char", language="zh")
    assert reward("今天天汽好", "今天天气好", cfg).total == pytest.approx(0.815)


def test_config_is_frozen_and_validated() -> None:
    assert DEFAULT_CONFIG.tau == 0.3 and DEFAULT_CONFIG.alpha_dyn == 0.6 and DEFAULT_CONFIG.alpha_soft == 0.4
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_CONFIG.tau = 0.5  # type: ignore[misc]
    with pytest.raises(ValueError):
        RewardConfig(alpha_dyn=1.5)
    with pytest.raises(ValueError):
        RewardConfig(tau=0.0)
    with pytest.raises(ValueError):
        RewardConfig(unit="byte")  # type: ignore[arg-type]


def test_breakdown_serialises_for_logging() -> None:
    d = reward("the cat ate fish", "the cat sat down", RAW).as_dict()
    assert {
        "total",
        "r_static",
        "r_dyn",
        "r_wer",
        "r_rep",
        "r_fine",
        "r_struc",
        "wer",
        "below_tau",
    } <= d.keys()


# --- groups ------------------------------------------------------------------------------------------


def test_group_rewards_score_each_rollout_against_the_same_reference() -> None:
    rewards = group_rewards([REF6, "", "i will buy the parcel today"], REF6)
    assert rewards == pytest.approx([1.0, 0.0, 0.845833], abs=1e-6)


def test_group_advantages_are_standardised() -> None:
    # [1, 0.5, 0]: mean 0.5; unbiased std = sqrt((0.25 + 0 + 0.25)/2) = 0.5 → [1, 0, −1] (eps aside).
    assert group_advantages([1.0, 0.5, 0.0]) == pytest.approx([1.0, 0.0, -1.0], abs=1e-5)
    # [0.8, 0.2]: mean 0.5, std = sqrt((0.09 + 0.09)/1) = 0.424264 → ±0.3/0.424264 = ±0.707107.
    assert group_advantages([0.8, 0.2]) == pytest.approx([0.707107, -0.707107], abs=1e-5)


def test_zero_variance_groups_are_flagged_and_get_zero_advantage() -> None:
    assert zero_variance_group([0.7, 0.7, 0.7])
    assert group_advantages([0.7, 0.7, 0.7]) == [0.0, 0.0, 0.0]
    assert zero_variance_group([0.3])  # one rollout: no baseline
    assert group_advantages([0.3]) == [0.0]
    assert group_advantages([]) == []
    assert not zero_variance_group([0.7, 0.2])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "cat", "cats", "dog", "sat"]), max_size=7).map(" ".join),
    st.lists(st.sampled_from(["a", "cat", "cats", "dog", "sat"]), max_size=7).map(" ".join),
)
def test_reward_is_bounded(hypothesis: str, reference: str) -> None:
    b = reward(hypothesis, reference, RAW)
    for value in (b.total, b.r_static, b.r_dyn, b.r_wer, b.r_fine, b.r_struc):
        assert 0.0 <= value <= 1.0
    # hits + substitutions + deletions = N, and soft + hard also counts the insertions.
    assert b.n_correct + b.n_soft + b.n_hard >= b.reference_length


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=16))
def test_advantages_have_zero_mean(rewards: list[float]) -> None:
    advantages = group_advantages(rewards)
    assert sum(advantages) == pytest.approx(0.0, abs=1e-6)
