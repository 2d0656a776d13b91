"""ROVER (service.engines.rover): the vote worked by hand, keys vs surface forms, empty transcripts."""

from __future__ import annotations

import pytest

from service.engines.rover import combine, combine_tokens, medoid, tokens


def _t(*words: str) -> list[tuple[str, str]]:
    return [(w, w) for w in words]


def _words(out: list[tuple[str, str]]) -> list[str]:
    return [w for _, w in out]


def test_a_majority_overrules_the_pivot() -> None:
    assert _words(combine_tokens([_t("a", "b", "c"), _t("a", "x", "c"), _t("a", "x", "c")])) == ["a", "x", "c"]


def test_a_tie_keeps_the_pivot_word() -> None:
    assert _words(combine_tokens([_t("a", "b"), _t("a", "x")])) == ["a", "b"]
    assert _words(combine_tokens([_t("a", "b"), _t("a", "x")], pivot=1)) == ["a", "x"]


def test_a_majority_of_deletions_drops_the_word() -> None:
    assert _words(combine_tokens([_t("a", "b", "c"), _t("a", "c"), _t("a", "c")])) == ["a", "c"]
    assert _words(combine_tokens([_t("a", "b", "c"), _t("a", "c"), _t("a", "b", "c")])) == ["a", "b", "c"]


def test_an_insertion_needs_more_than_half_of_the_transcripts() -> None:
    assert _words(combine_tokens([_t("a", "c"), _t("a", "b", "c"), _t("a", "b", "c")])) == ["a", "b", "c"]
    assert _words(combine_tokens([_t("a", "c"), _t("a", "b", "c"), _t("a", "c")])) == ["a", "c"]
    # two of four is not more than half
    assert _words(combine_tokens([_t("a", "c"), _t("a", "b", "c"), _t("a", "b", "c"), _t("a", "c")])) == ["a", "c"]


def test_empty_transcripts() -> None:
    assert _words(combine_tokens([[], _t("x", "y"), _t("x", "y")])) == ["x", "y"]  # an empty pivot outvoted
    assert combine_tokens([[], _t("x"), []]) == []
    assert combine_tokens([_t("x"), [], []]) == []  # two transcripts hold nothing
    assert combine_tokens([[], [], []]) == []
    assert combine(["", "", ""]) == ""


def test_medoid_is_the_transcript_closest_to_the_others() -> None:
    assert medoid([["q"], ["a", "b", "c"], ["a", "b", "d"], ["a", "b", "c"]]) == 1
    assert medoid([["a"], ["a"]]) == 0  # ties go to the first


def test_words_vote_by_normalised_key_and_keep_a_surface_form() -> None:
    assert tokens("Press 1, then -- hang up.") == [("press", "Press"), ("one", "1,"), ("then", "then"),
                                                   ("hang", "hang"), ("up", "up.")]
    # "1," and "one!" share the key "one": they outvote the pivot's "two."; the first voter's form is kept
    assert combine(["Press two.", "press 1,", "Press one!"], pivot="first") == "Press 1,"
    # the medoid ("press 1,") is the pivot: its own surface forms win where it voted with the majority
    assert combine(["Press two.", "press 1,", "Press one!"], pivot="medoid") == "press 1,"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="pivot must be"):
        combine(["a"], pivot="best")
    with pytest.raises(ValueError, match="at least one"):
        combine([])
    with pytest.raises(ValueError, match="at least one"):
        combine_tokens([])
    with pytest.raises(ValueError, match="pivot 3"):
        combine_tokens([_t("a")], pivot=3)
