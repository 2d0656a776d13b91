"""`train data --regrade-from`: a build graded again by another model, its audio reused, not rendered."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.training.helpers import write_jsonl
from training.config import DataConfig
from training.data import read_manifest
from training.regrade import regrade_build


def _row(tmp: Path, rid: str, scenario: str, text: str, base_wer: float | None, n: int) -> dict:
    audio = tmp / "src" / "sim" / f"{rid}.wav"
    audio.parent.mkdir(parents=True, exist_ok=True)
    sf.write(audio, np.full(n, 0.01, dtype=np.float32), 16000)
    row = {"id": rid, "audio": str(audio), "text": text, "scenario": scenario, "speaker": "s", "n_effects": 0}
    if base_wer is not None:
        row.update(base_hyp="old", base_wer=base_wer)
    return row


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    train = [_row(tmp_path, "c", "clean", "hold the line please", None, 800),
             _row(tmp_path, "easy", "noise", "hold the line please", 0.9, 1600),   # the new grader reads it well
             _row(tmp_path, "hard", "noise", "hold the line please", 0.1, 3200),   # ... and this one badly
             _row(tmp_path, "n", "noise_only", "", None, 400)]
    train[-1].update(base_hyp="", base_wer=0.0)
    write_jsonl(train, src / "train.jsonl")
    write_jsonl([_row(tmp_path, "v", "noise", "call me back", 0.5, 1600)], src / "val.jsonl")
    (src / "summary.json").write_text(json.dumps({"base_model": "whisper-tiny.en"}))
    return src


def _grader(audios: list[np.ndarray]) -> list[str]:
    """Reads short clips right and long ones as one word: grades follow the audio, not the old grade."""
    return ["hold the line please" if len(a) <= 1600 else "hold" for a in audios]


def test_regrade_writes_a_new_build_graded_by_the_new_model(source: Path, tmp_path: Path) -> None:
    cfg = DataConfig(out_dir=str(tmp_path / "out"), wer_grades=[0.3, 0.5, 0.7])
    paths = regrade_build(source, cfg, "whisper-base", transcribe=_grader)
    train = {r["id"]: r for r in read_manifest(paths["train"])}
    assert (train["easy"]["base_wer"], train["hard"]["base_wer"]) == (0.0, 0.75)
    assert train["easy"]["grade_previous"] == {"model": "whisper-tiny.en", "base_wer": 0.9}
    assert "base_wer" not in train["c"] and train["n"]["base_hyp"] == ""  # ungraded rows copied as they were
    assert train["easy"]["audio"] == str(source / "sim" / "easy.wav")  # the source's audio, not rendered again
    assert [r["id"] for r in read_manifest(paths["train-wer30"])] == ["easy"]  # was "hard" under the old grades
    assert [r["id"] for r in read_manifest(paths["train-wer70"])] == ["easy"]
    val = read_manifest(paths["val"])[0]
    assert val["base_hyp"] == "hold the line please" and val["grade_previous"]["base_wer"] == 0.5
    summary = json.loads(paths["summary"].read_text())
    assert summary["base_model"] == "whisper-base" and summary["previous_grader"] == "whisper-tiny.en"
    assert summary["regraded_from"] == str(source)
    assert [r["base_wer"] for r in read_manifest(source / "train.jsonl") if r["id"] == "easy"] == [0.9]  # untouched


def test_regrade_refuses_its_own_folder_a_non_build_and_missing_audio(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="another folder"):
        regrade_build(source, DataConfig(out_dir=str(source)), "whisper-base", transcribe=_grader)
    with pytest.raises(FileNotFoundError, match="summary.json is missing"):
        regrade_build(tmp_path, DataConfig(out_dir=str(tmp_path / "o")), "whisper-base", transcribe=_grader)
    (source / "sim" / "hard.wav").unlink()
    with pytest.raises(FileNotFoundError, match="1 audio files"):
        regrade_build(source, DataConfig(out_dir=str(tmp_path / "o")), "whisper-base", transcribe=_grader)
