"""The checked-in recipes load, and ``[data].grade_model`` picks the model that grades the training clips."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import soundfile as sf

import training.data
from tests.training.helpers import write_jsonl
from training.cli import grade_model, register
from training.config import CONFIG_DIR, DEFAULT_CONFIG, load_config
from training.sft import graded_by, own_base_hyps

RECIPES = sorted(CONFIG_DIR.glob("*.toml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_checked_in_recipe_loads(path):
    cfg = load_config(path)
    assert cfg.sft.phases, path


def test_grades_come_from_the_adapted_model_unless_the_recipe_names_another():
    tiny = load_config(DEFAULT_CONFIG)
    assert tiny.data.grade_model is None
    assert grade_model(tiny) == tiny.sft.base_model == "whisper-tiny.en"
    base = load_config(CONFIG_DIR / "base.toml")
    assert base.sft.base_model == "whisper-base"
    assert grade_model(base) == "whisper-tiny.en"
    # reusing round 3's clips is only sound if they are built exactly as round 3 built them
    assert base.data.model_dump(exclude={"grade_model"}) == tiny.data.model_dump(exclude={"grade_model"})


def test_train_data_decodes_with_the_grade_model(monkeypatch, capsys):
    seen = {}

    def fake_build(cfg, model, threads):
        seen["model"] = model
        return {}

    monkeypatch.setattr(training.data, "build_datasets", fake_build)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "data", "--config", str(CONFIG_DIR / "base.toml")])
    assert args.func(args) == 0
    assert seen["model"] == "whisper-tiny.en"


def test_validation_baseline_is_the_adapted_models_own_decode(tmp_path):
    audio = tmp_path / "a.wav"
    sf.write(audio, np.zeros(1600, dtype=np.float32), 16000)
    rows = [{"id": "x", "audio": str(audio), "text": "hold the line", "base_hyp": "hold"}]
    write_jsonl(rows, tmp_path / "val.jsonl")
    assert graded_by(tmp_path) is None  # no summary: nothing to say who graded
    (tmp_path / "summary.json").write_text('{"base_model": "whisper-tiny.en"}')
    assert graded_by(tmp_path) == "whisper-tiny.en"
    calls = []

    def decode(audios):
        calls.append(len(audios))
        return ["hold the line"]

    assert own_base_hyps(rows, "whisper-tiny.en", "whisper-tiny.en", decode) == rows  # graded by itself
    assert calls == []
    mine = own_base_hyps(rows, "whisper-tiny.en", "whisper-base", decode)
    assert calls == [1]
    assert mine[0]["base_hyp"] == "hold the line" and mine[0]["grade_hyp"] == "hold"
    assert rows[0]["base_hyp"] == "hold"  # the caller's rows are not changed
