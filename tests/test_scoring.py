"""Tests for service.scoring: normalisers, counts, empty-reference conventions, repetition and flags."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from service.scoring import (
    EMPTY_SCORE,
    Score,
    compression_ratio,
    corpus_score,
    error_rate,
    hallucination_flag,
    max_ngram_count,
    normalise_basic,
    normalise_english,
    normalise_text,
    omission_flag,
    repeated_ngram,
    score,
)

words = st.lists(st.sampled_from(["a", "b", "c", "dog", "cat"]), max_size=8).map(" ".join)


# --- normalisers -------------------------------------------------------------------------------------


def test_english_normaliser_maps_british_spelling() -> None:
    assert normalise_english("The colour of the neighbours' organisation") == (
        "the color of the neighbors organization"
    )


def test_english_normaliser_turns_number_words_into_digits() -> None:
    assert normalise_english("twenty five") == "25"
    assert normalise_english("Mr. Smith paid three point five percent.") == "mister smith paid 3.5%"


def test_english_normaliser_expands_contractions_and_drops_punctuation() -> None:
    assert normalise_english("It's fine, isn't it?") == "it is fine is not it"


def test_english_normaliser_agrees_with_transformers_copy_of_the_same_algorithm() -> None:
    # Two independent packagings of OpenAI's normaliser, given the same spelling map, must agree.
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer
    from whisper_normalizer.english import EnglishTextNormalizer as Packaged

    mapping = Packaged().standardize_spellings.mapping
    reference = EnglishTextNormalizer(mapping)
    for text in ["The colour of twenty five apples, Mr. Smith!", "I'd've paid £3.50 on the 1st of May."]:
        assert normalise_english(text) == " ".join(reference(text).split())


def test_basic_normaliser_for_other_languages_keeps_letters_and_drops_symbols() -> None:
    assert normalise_basic("Héllo, Wörld! [Lärm] (x)") == "héllo wörld"
    assert normalise_text("Bonjour, le Monde !", language="fr") == "bonjour le monde"
    assert normalise_text("colour", language="en-GB") == "color"


# --- score -------------------------------------------------------------------------------------------


def test_score_counts_each_edit_type() -> None:
    # ref: a b c d   hyp: a x c d e   → hits a,c,d = 3; b→x = 1 S; e = 1 I; WER = 2/4.
    s = score("a b c d", "a x c d e", normalise=False)
    assert (s.hits, s.substitutions, s.deletions, s.insertions) == (3, 1, 0, 1)
    assert (s.reference_words, s.hypothesis_words) == (4, 5)
    assert s.wer == pytest.approx(0.5)


def test_score_cer_ignores_whitespace() -> None:
    # ref chars "abcd" (4), hyp chars "abxd": one substitution → CER 1/4.
    s = score("ab cd", "ab xd", normalise=False)
    assert (s.char_edits, s.reference_chars) == (1, 4)
    assert s.cer == pytest.approx(0.25)


def test_normalisation_removes_case_punctuation_and_spelling_errors() -> None:
    assert score("The colour is twenty five.", "the color is 25").wer == 0.0
    assert score("The colour.", "the color", normalise=False).wer == 1.0


def test_empty_reference_and_empty_hypothesis_is_perfect() -> None:
    s = score("", "")
    assert s == EMPTY_SCORE
    assert s.wer == 0.0 and s.cer == 0.0


def test_empty_reference_with_words_counts_insertions_and_stays_finite() -> None:
    s = score("", "hello there world")
    assert (s.insertions, s.reference_words) == (3, 0)
    assert s.wer == 3.0  # edits / max(0, 1)
    assert math.isfinite(s.cer)
    json.dumps(s.model_dump())  # no inf/nan: safe for API responses


def test_empty_hypothesis_deletes_every_reference_word() -> None:
    s = score("red green blue", "")
    assert (s.deletions, s.wer) == (3, 1.0)


def test_noise_tags_and_punctuation_normalise_to_empty() -> None:
    # Whisper's normaliser drops bracketed tags and hesitations ("um"), so these are silence.
    assert score("[music] !?", "um").wer == 0.0


def test_corpus_score_is_micro_averaged() -> None:
    # utt 1: 1 deletion of 2 words; utt 2: 0 of 4; utt 3: empty ref, 1 insertion.
    # micro: (1 + 0 + 1) / (2 + 4 + 0) = 2/6; a macro mean of per-utterance WERs would be (0.5+0+1)/3.
    s = corpus_score([("a b", "a"), ("c d e f", "c d e f"), ("", "g")], normalise=False)
    assert s.wer == pytest.approx(2 / 6)
    assert (s.deletions, s.insertions, s.reference_words) == (1, 1, 6)


def test_corpus_score_of_nothing_is_zero() -> None:
    assert corpus_score([]).wer == 0.0


def test_error_rate_convention() -> None:
    assert error_rate(0, 0) == 0.0
    assert error_rate(2, 0) == 2.0
    assert error_rate(1, 4) == 0.25


def test_score_is_immutable() -> None:
    with pytest.raises(ValidationError):
        score("a", "a").hits = 5  # type: ignore[misc]


@settings(max_examples=60, deadline=None)
@given(words, words)
def test_counts_are_consistent(reference: str, hypothesis: str) -> None:
    s = score(reference, hypothesis, normalise=False)
    assert s.hits + s.substitutions + s.deletions == s.reference_words
    assert s.hits + s.substitutions + s.insertions == s.hypothesis_words
    assert s.wer >= 0.0
    assert corpus_score([(reference, hypothesis)], normalise=False) == s


@settings(max_examples=30, deadline=None)
@given(words)
def test_identical_text_scores_zero(text: str) -> None:
    assert score(text, text).wer == 0.0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(words, words), max_size=5))
def test_corpus_sum_equals_sum_of_scores(pairs: list[tuple[str, str]]) -> None:
    total = sum((score(r, h, normalise=False) for r, h in pairs), EMPTY_SCORE)
    assert corpus_score(pairs, normalise=False) == total
    assert isinstance(total, Score)


# --- repetition --------------------------------------------------------------------------------------


def test_decoder_loop_is_a_repeated_ngram() -> None:
    # "the the the the the": trigrams at positions 0,1,2 are all "the the the" → 3 occurrences.
    assert max_ngram_count("the the the the the") == 3
    assert repeated_ngram("the the the the the")
    assert not repeated_ngram("the the the the")  # only 2 trigrams


def test_repeated_phrase_ignores_case_and_punctuation() -> None:
    # 4 × "thank you": 8 words, trigrams alternate between two forms, each occurring 3 times.
    assert max_ngram_count("Thank you. Thank you. THANK you. Thank you.") == 3
    assert repeated_ngram("Thank you. Thank you. THANK you. Thank you.")


def test_natural_sentence_is_not_repetitive() -> None:
    assert not repeated_ngram("the cat sat on the mat and the dog sat on the rug")


def test_repeated_ngram_parameters() -> None:
    assert repeated_ngram("no no", n=1, threshold=2)
    assert not repeated_ngram("no no", n=3, threshold=1)  # too short for any trigram
    assert repeated_ngram("哈哈哈哈哈", n=2, threshold=3, unit="char")
    with pytest.raises(ValueError):
        max_ngram_count("a", n=0)


def test_compression_ratio_separates_loops_from_speech() -> None:
    assert compression_ratio("") == 0.0
    assert compression_ratio("I will be there " * 20) > 2.4
    assert compression_ratio("The quick brown fox jumps over the lazy dog near the riverbank.") < 2.4


# --- flags -------------------------------------------------------------------------------------------


def test_hallucination_flag_on_insertions() -> None:
    hyp = "a b c d e f g"
    # 5 reference words, 2 inserted → insertion rate 0.4 > 0.2.
    assert hallucination_flag(score("a b c d e", hyp, normalise=False), hyp)
    # 1 inserted of 5 → 0.2, not above the default bound.
    assert not hallucination_flag(score("a b c d e", "a b c d e f", normalise=False), "a b c d e f")
    assert not hallucination_flag(score("a b c d e", hyp, normalise=False), hyp, max_insertion_rate=0.5)


def test_hallucination_flag_on_silence_and_loops() -> None:
    assert hallucination_flag(score("", "thanks for watching"), "thanks for watching")
    loop = "go go go go go"
    assert hallucination_flag(score(loop, loop), loop)  # perfect WER, still a loop


def test_omission_flag_on_deletions() -> None:
    assert omission_flag(score("a b c d e", "a b c", normalise=False))  # 2/5 = 0.4
    assert not omission_flag(score("a b c d e", "a b c d", normalise=False))  # 1/5 = 0.2
    assert not omission_flag(score("", ""))
    assert omission_flag(score("a b c d e", "a b c d", normalise=False), max_deletion_rate=0.1)
