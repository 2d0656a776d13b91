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


def _result(text: str, segments: int = 1, duration: float = 4.0):
    from service.engines.base import Segment, TranscriptionResult, Word

    segs = [Segment(id=i, seek=0, start=i * 2.0, end=i * 2.0 + 1.5, text=f" {text}", tokens=[1], temperature=0.0,
                    avg_logprob=-0.5 - i, compression_ratio=1.2, no_speech_prob=0.1,
                    words=[Word(0.0, 0.5, text.split()[0], 0.9)] if text else None)
            for i in range(segments if text else 0)]
    return TranscriptionResult(text=text, segments=segs, language="en", duration=duration, adapter="robust")


def test_ensemble_result_keeps_the_main_result_when_the_vote_agrees() -> None:
    from service.engines.rover import ensemble_result

    main = _result("Press one.")
    assert ensemble_result([main, _result("press 1"), _result("dress one")]) is main


def test_ensemble_result_serves_the_vote_in_one_segment_without_word_timings() -> None:
    from service.engines.rover import ensemble_result

    main = _result("Press two for sales.", segments=2)
    voted = ensemble_result([main, _result("press one for sales"), _result("Press one for sales")])
    assert voted.text == "press one for sales"  # the medoid (the first member) is the pivot: its forms
    assert len(voted.segments) == 1
    seg = voted.segments[0]
    assert (seg.start, seg.end, seg.text, seg.words) == (0.0, 3.5, " press one for sales", None)
    assert seg.avg_logprob == -1.0  # the mean of the main result's segments
    assert voted.extras["ensemble_voted"] is True and voted.adapter == "robust"
    # the main result heard nothing, the members outvote it: one segment over the whole audio
    voted = ensemble_result([_result(""), _result("hello there"), _result("hello there")])
    assert voted.text == "hello there" and (voted.segments[0].start, voted.segments[0].end) == (0.0, 4.0)
    # the members heard nothing: no segment
    assert ensemble_result([_result("hello"), _result(""), _result("")]).segments == []


class _Stub:
    """A transcriber that answers every audio with one fixed text and records how it was called."""

    def __init__(self, text: str) -> None:
        self.text, self.calls = text, []

    def transcribe(self, audios, options):
        self.calls.append(len(audios))
        return [_result(self.text) for _ in audios]


def test_the_engine_votes_robust_requests_only(monkeypatch) -> None:
    import numpy as np

    from service.config import Settings
    from service.engines.base import TranscriptionOptions
    from service.engines.embedded import EmbeddedEngine

    engine = EmbeddedEngine("unused", "whisper-tiny.en", Settings())
    engine._transcriber, engine._robust = _Stub("base says this"), _Stub("press two")
    engine._members = [_Stub("press one"), _Stub("press one")]
    items = [(np.zeros(16000, np.float32), TranscriptionOptions(adapter=a)) for a in ("robust", "base", "robust")]
    results = engine._run_batch(items)
    assert [r.text for r in results] == ["press one", "base says this", "press one"]
    assert [r.adapter for r in results] == ["robust", "base", "robust"]
    assert engine._members[0].calls == [2] and engine._transcriber.calls == [1]  # members see robust audio only
    engine._members = []  # no ensemble: the main adapter's own answer
    assert engine._run_batch(items[:1])[0].text == "press two"
