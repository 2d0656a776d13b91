"""Extra training text: speakable sentences only, training split only, nothing of the evaluation split."""

from __future__ import annotations

import gzip

import pytest

from training.config import DataConfig
from training.data import plan_clean
from training.sources import (
    ReservedGuard,
    read_asterisk_transcripts,
    read_reserved_names,
    sentence_keys,
    sentence_split,
)
from training.text_corpus import extra_text_utterances, prose_sentences, read_text

CFG = DataConfig()

PROSE = """ABASEMENT, n.  A decent and customary mental attitude in the
presence of wealth or power.  Peculiarly appropriate in an employee
when addressing an employer.

    _The Devil's Dictionary_ was begun in a weekly paper in 1881.
It was continued in a desultory way -- at long intervals -- until the end.
Short one.
"Is it fair?" he asked the judge.  Is it fair to ask the judge twice?
A decent and customary mental attitude in the presence of wealth or power.
"""


@pytest.fixture(scope="module")
def guard() -> ReservedGuard:
    return ReservedGuard.from_files(CFG.reserved_prompts, CFG.asterisk_transcripts)


def test_only_speakable_sentences_are_kept_once_each():
    assert prose_sentences(PROSE) == [
        "A decent and customary mental attitude in the presence of wealth or power.",
        "Peculiarly appropriate in an employee when addressing an employer.",
        "It was continued in a desultory way, at long intervals, until the end.",
        "Is it fair to ask the judge twice?",
    ]  # headword, digits, too short, quotes: dropped; italics and double hyphens cleaned; the repeat once
    assert prose_sentences(PROSE, max_words=8) == ["Is it fair to ask the judge twice?"]


def test_gzip_and_plain_files_read_the_same(tmp_path):
    (tmp_path / "a.txt").write_text(PROSE)
    (tmp_path / "a.dict.dz").write_bytes(gzip.compress(PROSE.encode()))
    assert read_text(tmp_path / "a.txt") == read_text(tmp_path / "a.dict.dz") == PROSE


def test_extra_utterances_rotate_voices_and_stay_on_the_training_side(tmp_path, guard):
    lines = [f"The number {w} follows the one before it in this long and quiet list." for w in
             ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")]
    (tmp_path / "t.txt").write_text("\n\n".join(lines))
    utts = extra_text_utterances([str(tmp_path / "t.txt")], ["awb", "slt"], None, 40, 0.3, 7, guard)
    train_side = [s for s in lines if sentence_split(next(iter(sentence_keys(s))), 0.3, 7) == "train"]
    assert 0 < len(train_side) < len(lines)  # the seed sends some to validation: those are not used
    assert [u.text for u in utts] == train_side
    assert [u.speaker for u in utts] == [f"flite-{v}" for v in ("awb", "slt") * 10][:len(utts)]
    assert len({u.id for u in utts}) == len(utts) and all(u.source == "tts" and u.audio_path is None for u in utts)
    subset = extra_text_utterances([str(tmp_path / "t.txt")], ["awb"], 2, 40, 0.3, 7, guard)
    assert len(subset) == 2 and {u.text for u in subset} <= set(train_side)
    assert subset == extra_text_utterances([str(tmp_path / "t.txt")], ["awb"], 2, 40, 0.3, 7, guard)
    with pytest.raises(ValueError, match="voice"):
        extra_text_utterances([str(tmp_path / "t.txt")], [], None, 40, 0.3, 7, guard)


def test_a_reserved_prompt_in_the_prose_is_dropped(tmp_path, guard):
    transcripts = read_asterisk_transcripts(CFG.asterisk_transcripts)
    reserved = [transcripts[n] for n in sorted(read_reserved_names(CFG.reserved_prompts)) if n in transcripts]
    reserved = [t for t in reserved if len(prose_sentences(t)) == 1][:5]
    assert reserved
    (tmp_path / "r.txt").write_text("\n\n".join(reserved))
    assert extra_text_utterances([str(tmp_path / "r.txt")], ["awb"], None, 40, 0.0, 1, guard) == []


def test_the_plan_with_extra_text_keeps_validation_as_it_was_and_disjoint(tmp_path, guard):
    transcripts = read_asterisk_transcripts(CFG.asterisk_transcripts)
    base = plan_clean(CFG, guard)
    val_sentence = next(u.text for u in base["val"] if u.source == "tts" and len(prose_sentences(u.text)) == 1)
    (tmp_path / "p.txt").write_text(PROSE + "\n\n" + val_sentence + "\n")
    cfg = CFG.model_copy(update={"extra_texts": [str(tmp_path / "p.txt")]})
    plan = plan_clean(cfg, guard)
    assert plan["val"] == base["val"]
    extra = plan["train"][len(base["train"]):]
    assert plan["train"][:len(base["train"])] == base["train"]
    assert extra and val_sentence not in {u.text for u in extra}
    train_keys = set().union(*(sentence_keys(u.text) for u in plan["train"]))
    assert not train_keys & set().union(*(sentence_keys(u.text) for u in plan["val"]))
    assert transcripts  # the fixture's sources are the Debian ones
