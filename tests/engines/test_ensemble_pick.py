"""The likelihood pick: candidates, the averaged-score choice, and which result is answered (scores stubbed)."""

from __future__ import annotations

import numpy as np
import pytest

import service.engines.ensemble_pick as ep
from service.engines.base import Segment, TranscriptionResult
from service.engines.ensemble_pick import best_candidate, candidate_texts, ensemble_answer

SECOND = np.zeros(16_000, dtype=np.float32)


def _result(text: str, start: float = 0.0) -> TranscriptionResult:
    segment = Segment(id=0, seek=0, start=start, end=start + 1.0, text=" " + text, tokens=[7], temperature=0.0,
                      avg_logprob=-0.2, compression_ratio=1.0, no_speech_prob=0.0)
    return TranscriptionResult(text=text, segments=[segment], language="en", duration=3.0, adapter="robust")


def test_candidates_are_the_distinct_transcripts_then_the_vote() -> None:
    assert candidate_texts(["a b c", "a x c", "a b c"]) == ["a b c", "a x c"]  # the vote equals the first
    assert candidate_texts(["a b", "a  b ", "c d"]) == ["a b", "c d"]  # same words: one candidate
    assert candidate_texts(["a b c", "a x c", "y b c"]) == ["a b c", "a x c", "y b c"]
    assert candidate_texts(["one three", "four two", "one two"]) == ["one three", "four two", "one two"]  # vote = #3


def test_the_best_average_wins_and_ties_go_to_the_first() -> None:
    assert best_candidate([[-1.0, -0.5], [-1.0, -2.0]], 2) == 0  # means -1.0 and -1.25
    assert best_candidate([[-1.0, -0.5], [-1.0, -0.9]], 2) == 1
    assert best_candidate([[-1.0, -1.0]], 2) == 0
    with pytest.raises(ValueError, match="each of the 3 candidates"):
        best_candidate([[-1.0, -1.0]], 3)


class _Scorer:
    """Stands in for a member's transcriber: window_scores is stubbed to read ``table`` by text."""

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table


@pytest.fixture
def stub_scores(monkeypatch):
    calls: list[list[str]] = []

    def window_scores(model, log_mel, vocab, tokenizer, audio, texts, language):
        calls.append(list(texts))
        return [model.table[t] for t in texts]

    monkeypatch.setattr(ep, "window_scores", window_scores)
    monkeypatch.setattr(_Scorer, "runner", property(lambda self: type("R", (), {"model": self})()), raising=False)
    for name in ("log_mel", "vocab", "tokenizer"):
        monkeypatch.setattr(_Scorer, name, None, raising=False)
    return calls


def test_a_members_own_result_is_answered_when_the_members_find_it_likeliest(stub_scores) -> None:
    results = [_result("please hold"), _result("please hold on", start=0.5), _result("lease old")]
    table = {"please hold": -1.0, "please hold on": -0.4, "lease old": -2.0}
    answer = ensemble_answer(results, SECOND, "likelihood", [_Scorer(table)] * 3)
    assert answer.text == "please hold on" and answer.segments[0].start == 0.5  # member 1's own segment
    assert answer.extras["ensemble_pick"] == "likelihood"
    assert stub_scores == [["please hold", "please hold on", "lease old"]] * 3


def test_the_vote_is_answered_when_it_is_the_likeliest_candidate(stub_scores) -> None:
    results = [_result("a b c"), _result("a x y"), _result("z x c")]
    texts = candidate_texts([r.text for r in results])
    assert texts[-1] == "a x c"
    answer = ensemble_answer(results, SECOND, "likelihood", [_Scorer({**dict.fromkeys(texts, -3.0), "a x c": -0.1})] * 3)
    assert answer.text == "a x c" and answer.extras["ensemble_voted"] is True


def test_agreement_long_audio_and_the_vote_setting_score_nothing(stub_scores) -> None:
    same = [_result("please hold")] * 3
    assert ensemble_answer(same, SECOND, "likelihood", [_Scorer({})] * 3) is same[0]
    differ = [_result("a b"), _result("a c"), _result("a c")]
    long_audio = np.zeros(31 * 16_000, dtype=np.float32)
    voted = ensemble_answer(differ, long_audio, "likelihood", [_Scorer({})] * 3)
    assert voted.text == "a c" and voted.extras["ensemble_pick"] == "vote"
    assert ensemble_answer(differ, SECOND, "vote", [_Scorer({})] * 3).text == "a c"
    assert stub_scores == []
