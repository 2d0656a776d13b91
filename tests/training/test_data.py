"""The evaluation split stays out of training; train and validation are speaker- and sentence-disjoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import DataConfig
from training.data import plan_clean, text_split
from training.sources import (
    CleanUtterance,
    ReservedGuard,
    ReservedPromptError,
    check_not_reserved,
    read_asterisk_transcripts,
    read_reserved_names,
    sentence_keys,
)

CFG = DataConfig()


@pytest.fixture(scope="module")
def guard() -> ReservedGuard:
    return ReservedGuard.from_files(CFG.reserved_prompts, CFG.asterisk_transcripts)


def test_reserved_recordings_and_their_sentences_are_refused(guard):
    transcripts = read_asterisk_transcripts(CFG.asterisk_transcripts)
    name = min(read_reserved_names(CFG.reserved_prompts))
    text = transcripts[name]
    recording = CleanUtterance("a", text, "allison", "asterisk", f"/x/{name}.wav", name)
    tts = CleanUtterance("b", text.upper(), "flite-slt", "tts", None, None)  # same words, other casing
    longer = CleanUtterance("c", "Hello there. " + text, "flite-awb", "tts", None, None)
    for utt in (recording, tts, longer):
        assert guard.violation(utt) is not None
        with pytest.raises(ReservedPromptError):
            check_not_reserved([utt], guard)
    check_not_reserved([CleanUtterance("d", "A sentence nobody reserved.", "flite-slt", "tts")], guard)


def test_the_plan_is_clean_and_disjoint(guard):
    plan = plan_clean(CFG, guard)
    assert plan["train"] and plan["val"]
    for utt in plan["train"] + plan["val"]:
        assert guard.violation(utt) is None
        assert utt.speaker != "allison"  # the eval speaker is not trained on (use_asterisk_speaker=false)
    train_sentences = set().union(*(sentence_keys(u.text) for u in plan["train"]))
    val_sentences = set().union(*(sentence_keys(u.text) for u in plan["val"]))
    assert not train_sentences & val_sentences
    assert not {u.speaker for u in plan["train"]} & {u.speaker for u in plan["val"]}
    assert not train_sentences & guard.sentences


def test_a_text_whose_sentences_disagree_is_dropped():
    sides = {text_split(f"Sentence number {i}.", 0.5, 0) for i in range(40)}
    assert sides == {"train", "val"}
    mixed = next(f"Sentence number {i}. Sentence number {j}." for i in range(40) for j in range(40)
                 if text_split(f"Sentence number {i}.", 0.5, 0) != text_split(f"Sentence number {j}.", 0.5, 0))
    assert text_split(mixed, 0.5, 0) is None


def _effect_shares(cfg: DataConfig, draws: int = 6000) -> dict[str, float]:
    import numpy as np

    from simulation import resolve_scenarios
    from simulation.scenarios import IMPORTANT_DOUBLES, get_scenario
    from training.data import draw_scenario

    names = resolve_scenarios("all")
    rng = np.random.default_rng(0)
    drawn = [draw_scenario(rng, cfg, names) for _ in range(draws)]
    singles = sum(len(get_scenario(n).effects) == 1 for n in drawn) / draws
    important = sum(n in IMPORTANT_DOUBLES for n in drawn) / draws
    three_plus = sum(len(get_scenario(n).effects) >= 3 for n in drawn) / draws
    return {"singles": singles, "important": important, "three_plus": three_plus, "distinct": len(set(drawn))}


def test_paper_scheduler_shares():
    shares = _effect_shares(DataConfig(scenario_weighting="paper"))
    assert abs(shares["singles"] - 0.6) < 0.03
    assert abs(shares["important"] - 0.24) < 0.03
    assert shares["distinct"] == 54


def test_uniform_weighting_matches_the_evaluation_mix():
    from simulation import resolve_scenarios
    from simulation.scenarios import get_scenario

    names = resolve_scenarios("all")
    expected_three_plus = sum(len(get_scenario(n).effects) >= 3 for n in names) / len(names)
    shares = _effect_shares(DataConfig(scenario_weighting="uniform"))
    assert abs(shares["three_plus"] - expected_three_plus) < 0.03
    assert abs(shares["singles"] - 7 / 54) < 0.03
    assert shares["distinct"] == 54


def _rendered(tmp_path, name: str, workers: int) -> tuple[list[dict], dict[str, bytes]]:
    from simulation import resolve_scenarios
    from training.data import plan_jobs, render_all
    from training.sources import librivox_utterances

    cfg = DataConfig(out_dir=str(tmp_path / name), train_copies=2, narrowband_fraction=0.5, workers=workers,
                     scenario_weighting="uniform")
    utts = librivox_utterances(cfg.librivox_dir)[:3]
    plan = {"train": utts[:2], "val": utts[2:]}
    rows = render_all(plan_jobs(plan, cfg, resolve_scenarios("all")), cfg.severity_mapping, tmp_path / name, workers)
    flat = [r for split in ("train", "val") for r in rows[split]]
    audio = {r["id"]: Path(r["audio"]).read_bytes() for r in flat}
    for r in flat:
        r["audio"] = r["audio"].replace(name, "<out>")
    return flat, audio


def test_worker_processes_write_the_same_clips_as_one_process(tmp_path, librivox):
    """`[data].workers` only spreads the rendering: the draws are made up front, so manifests and audio match."""
    one_rows, one_audio = _rendered(tmp_path, "one", 1)
    two_rows, two_audio = _rendered(tmp_path, "two", 2)
    assert one_rows == two_rows
    assert one_audio == two_audio
    assert sum(r["seed"] is not None for r in one_rows) == 2 * 2 + 1  # train: 2 copies x 2, val: 1 copy
    assert len({r["scenario"] for r in one_rows}) > 2  # really simulated, several scenarios


def test_the_plan_reproduces_the_sequential_draws():
    """The up-front draws are the ones the builder has always made: narrowband, then each copy's scenario, seed."""
    import numpy as np

    from simulation import resolve_scenarios
    from training.data import draw_scenario, plan_jobs

    cfg = DataConfig(train_copies=3, narrowband_fraction=0.5)
    utts = [CleanUtterance(f"u{i}", f"Sentence number {i}.", "flite-slt", "tts") for i in range(6)]
    names = resolve_scenarios("all")
    jobs = plan_jobs({"train": utts[:4], "val": utts[4:]}, cfg, names)
    rng, band = np.random.default_rng(cfg.seed), np.random.default_rng([cfg.seed, 8000])
    for job in jobs:
        assert job.narrowband == (job.split == "train" and band.random() < cfg.narrowband_fraction)
        copies = cfg.train_copies if job.split == "train" else cfg.val_copies
        assert job.draws == tuple((draw_scenario(rng, cfg, names), int(rng.integers(2**31))) for _ in range(copies))


def test_first_copy_numbers_the_clips_and_draws_its_own_scenarios():
    """An extension build (copies 3..5) keeps the recipe's telephone-band draws and makes new scenario draws."""
    from simulation import resolve_scenarios
    from training.data import plan_jobs

    utts = [CleanUtterance(f"u{i}", f"Sentence number {i}.", "flite-slt", "tts") for i in range(8)]
    names = resolve_scenarios("all")
    base = plan_jobs({"train": utts}, DataConfig(train_copies=3, narrowband_fraction=0.5), names)
    more = plan_jobs({"train": utts}, DataConfig(train_copies=3, narrowband_fraction=0.5, first_copy=3), names)
    assert [j.narrowband for j in base] == [j.narrowband for j in more]
    assert [j.first_copy for j in more] == [3] * len(utts)
    assert [j.draws for j in base] != [j.draws for j in more]


def _data_folder(root, name: str, cfg: DataConfig, rows: dict[str, list[dict]]):
    import json

    from training.data import write_manifest

    folder = root / name
    for split, split_rows in rows.items():
        write_manifest(split_rows, folder / f"{split}.jsonl")
    (folder / "summary.json").write_text(json.dumps({"config": cfg.model_dump()}))
    return str(folder)


def test_merge_from_joins_the_splits_and_keeps_shared_rows_once(tmp_path):
    from training.data import merged_rows

    clean, old, new = {"id": "u1"}, {"id": "u1__noise__0"}, {"id": "u1__noise__3"}
    older = _data_folder(tmp_path, "r3", DataConfig(), {"train": [clean, old], "val": [{"id": "v1"}]})
    cfg = DataConfig(first_copy=3, merge_from=[older])
    assert merged_rows(cfg, "train", [clean, new]) == [clean, old, new]
    assert merged_rows(cfg, "val", [{"id": "v1"}]) == [{"id": "v1"}]
    other = _data_folder(tmp_path, "other", DataConfig(val_sentence_fraction=0.3), {"train": [old], "val": []})
    with pytest.raises(ValueError, match="val_sentence_fraction"):
        merged_rows(DataConfig(merge_from=[other]), "train", [new])


class _CountingDecoder:
    """Stands in for the base model: says nothing, and counts the clips it was asked to decode."""

    decoded = 0

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __call__(self, batch: list) -> list[str]:
        _CountingDecoder.decoded += len(batch)
        return [""] * len(batch)


def test_incremental_build_renders_and_grades_only_the_new_utterances(tmp_path, librivox, monkeypatch):
    """``merge_new_only``: an earlier build's clips are reused, the new source's utterances alone are rendered."""
    import training.data
    import training.whisper
    from training.data import build_datasets, read_manifest
    from training.sources import librivox_utterances

    monkeypatch.setattr(training.whisper, "Decoder", _CountingDecoder)
    monkeypatch.setattr(training.whisper, "resolve_model", lambda name: name)
    utts = librivox_utterances(DataConfig().librivox_dir)[:4]
    old_plan = {"train": utts[:2], "val": utts[3:]}
    new_plan = {"train": utts[:3], "val": utts[3:]}  # utts[2] plays the extra text
    settings = {"train_copies": 2, "val_copies": 1, "nonspeech_fraction": 0.5, "scenario_weighting": "uniform"}

    monkeypatch.setattr(training.data, "plan_clean", lambda cfg, guard: old_plan)
    _CountingDecoder.decoded = 0
    old = DataConfig(out_dir=str(tmp_path / "old"), **settings)
    build_datasets(old, "fake")
    assert _CountingDecoder.decoded == 2 * 2 + 1

    monkeypatch.setattr(training.data, "plan_clean", lambda cfg, guard: new_plan)
    _CountingDecoder.decoded = 0
    new = DataConfig(out_dir=str(tmp_path / "new"), merge_from=[old.out_dir], merge_new_only=True,
                     extra_texts=["prose.txt"], **settings)
    build_datasets(new, "fake")
    assert _CountingDecoder.decoded == 2  # the new utterance's two copies; nothing of the old build again
    old_train = read_manifest(tmp_path / "old" / "train.jsonl")
    new_train = read_manifest(tmp_path / "new" / "train.jsonl")
    assert new_train[:len(old_train)] == old_train
    added = new_train[len(old_train):]
    assert {r["clean_id"] for r in added if r["clean_id"]} == {utts[2].id}
    noise = [r["id"] for r in new_train if r["scenario"] in ("noise_only", "silent")]
    assert len(noise) == len(set(noise)) == 2 + 1  # the old build's two, then one more numbered after them
    assert read_manifest(tmp_path / "new" / "val.jsonl") == read_manifest(tmp_path / "old" / "val.jsonl")
    assert not (tmp_path / "new" / "sim" / "val").exists()


def test_incremental_build_may_differ_in_extra_text_only(tmp_path):
    from training.data import check_merge_sources

    older = _data_folder(tmp_path, "r3", DataConfig(), {"train": [], "val": []})
    check_merge_sources(DataConfig(merge_from=[older], merge_new_only=True, extra_texts=["devil.dict.dz"]))
    with pytest.raises(ValueError, match="extra_texts"):
        check_merge_sources(DataConfig(merge_from=[older], extra_texts=["devil.dict.dz"]))
    with pytest.raises(ValueError, match="max_words"):
        check_merge_sources(DataConfig(merge_from=[older], merge_new_only=True, max_words=12))
    with pytest.raises(ValueError, match="needs merge_from"):
        check_merge_sources(DataConfig(merge_new_only=True))
