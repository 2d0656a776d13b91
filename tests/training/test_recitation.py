"""Recitation counts the degraded clips whose output is a training sentence rather than what was said."""

from __future__ import annotations

from tests.training.helpers import write_jsonl
from training.recitation import is_recited, main, recitation, training_sentences

TRAIN = ["Please enter your account number followed by the pound key.",
         "The party you are calling is not available."]


def test_training_sentences_are_normalised_and_distinct(tmp_path):
    rows = [{"text": TRAIN[0]}, {"text": TRAIN[0].upper()}, {"text": TRAIN[1]}, {"text": ""}, {"text": None}]
    assert training_sentences([write_jsonl(rows, tmp_path / "t.jsonl")]) == sorted(
        ["please enter your account number followed by the pound key",
         "the party you are calling is not available"])


def test_a_training_sentence_said_over_another_prompt_is_recited():
    sentences = training_sentences_of(TRAIN)
    reference = "Your call has been forwarded to voicemail."
    assert is_recited("Please enter your account number, followed by the pound key.", reference, sentences)
    assert not is_recited("Your call has been forwarded to voice mail.", reference, sentences)  # heard it
    assert not is_recited("the party", reference, sentences)  # too short to say
    assert not is_recited("Purple monkeys dance on the piano at noon.", reference, sentences)  # invented, not recited
    assert not is_recited(TRAIN[1], reference, [])


def test_a_reference_close_to_a_training_sentence_needs_the_margin():
    sentences = training_sentences_of(TRAIN)
    reference = "The party you are calling is not available now."
    # the output is both the reference (nearly) and a training sentence: not counted as recited
    assert not is_recited("The party you are calling is not available.", reference, sentences)


def test_recitation_counts_degraded_clips_only(tmp_path):
    clips = [
        {"scenario": "clean", "n_effects": 0, "text": "Your call has been forwarded.", "robust_hyp": TRAIN[0]},
        {"scenario": "noise", "n_effects": 1, "text": "Your call has been forwarded.", "robust_hyp": TRAIN[0]},
        {"scenario": "noise", "n_effects": 1, "text": "Goodbye.", "robust_hyp": ""},
        {"scenario": "noise_only", "n_effects": 1, "text": "", "robust_hyp": TRAIN[1]},
    ]
    report = recitation(clips, training_sentences_of(TRAIN), "robust")
    assert report == {"system": "robust", "degraded": 2, "attempted": 1, "recited": 1, "recited_pct": 50.0}


def test_the_command_line_reads_eval_runs(tmp_path, capsys):
    train = write_jsonl([{"text": t} for t in TRAIN], tmp_path / "train.jsonl")
    run = tmp_path / "run"
    run.mkdir()
    write_jsonl([{"scenario": "noise", "n_effects": 1, "text": "Goodbye now, and thank you.",
                  "base_hyp": "", "robust_hyp": TRAIN[1]}], run / "clips.jsonl")
    assert main(["--train", str(train), "--run", f"r={run}", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "| r | base | 1 | 0 | 0 (0.0 %) |" in out and "| r | robust | 1 | 1 | 1 (100.0 %) |" in out
    assert (tmp_path / "out" / "recitation.json").exists()


def training_sentences_of(texts: list[str]) -> list[str]:
    from service.scoring import normalise_english

    return sorted({normalise_english(t) for t in texts})
