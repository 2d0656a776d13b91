"""`megaasr eval` on an ensemble bundle: every member decodes the clips and the transcript is their vote."""

from __future__ import annotations

from pathlib import Path

import training.eval as ev
from tests.conftest import model_dir
from tests.training.helpers import tiny_whisper
from training.export import export_bundle
from training.lora import add_lora
from training.whisper import load_model


class _Decoder:
    """Records the models it is given (the real Decoder swaps its runner's model the same way)."""

    def __init__(self) -> None:
        self.models = []

    def use_model(self, model):
        self.models.append(model)
        return self


def _ensemble_bundle(tmp_path: Path, ensemble_pick: str = "vote"):
    """A tiny random Whisper with three random LoRA adapters, exported as a main adapter and two members."""
    model_path = tiny_whisper(tmp_path / "model", model_dir("whisper-tiny.en"))
    adapters = []
    for seed in (0, 1, 2):
        model, _, _ = load_model(str(model_path))
        adapters.append(tmp_path / f"lora{seed}")
        add_lora(model, "joint", 1, 4, 8, 0.0).save_pretrained(adapters[-1])
    return export_bundle(tmp_path / "bundle", str(model_path), [adapters[0]], None, None, 0.5, "card",
                         ensemble=[[adapters[1]], [adapters[2]]], ensemble_pick=ensemble_pick)


def test_each_member_decodes_and_the_robust_transcript_is_the_vote(tmp_path: Path, monkeypatch) -> None:
    bundle = _ensemble_bundle(tmp_path)
    answers = {str(bundle.ensemble[0]): ["press one for sales", ""], str(bundle.ensemble[1]): ["press one for sales", ""]}
    cached = []

    def fake_cached_hyps(path, model_id, clips, decoder, label="base"):
        cached.append((path.name, label))
        return answers[model_id]

    monkeypatch.setattr(ev, "cached_hyps", fake_cached_hyps)
    clips = [{"text": "press one for sales", "robust_hyp": "press two for males"},
             {"text": "goodbye", "robust_hyp": "goodbye"}]
    decoder = _Decoder()
    ev.vote_ensemble(clips, str(bundle.root), decoder, tmp_path / "out")
    assert cached == [("robust_hyps-member1.json", "robust member 1"), ("robust_hyps-member2.json", "robust member 2")]
    assert len(decoder.models) == 2 and decoder.models[0] is not decoder.models[1]
    assert [c["robust_hyp"] for c in clips] == ["press one for sales", ""]  # two members outvote the main adapter
    assert clips[0]["robust_member_hyps"] == ["press two for males", "press one for sales", "press one for sales"]
    assert ev.ensemble_members(str(bundle.root)) == bundle.ensemble
    assert ev.ensemble_members(str(tmp_path / "model")) == ()  # a checkpoint folder has no ensemble


def test_a_bundle_without_members_is_left_alone(tmp_path: Path) -> None:
    model_path = tiny_whisper(tmp_path / "model", model_dir("whisper-tiny.en"))
    model, _, _ = load_model(str(model_path))
    add_lora(model, "joint", 1, 4, 8, 0.0).save_pretrained(tmp_path / "lora")
    bundle = export_bundle(tmp_path / "bundle", str(model_path), [tmp_path / "lora"], None, None, 0.5, "card")
    clips = [{"text": "a", "robust_hyp": "b"}]
    decoder = _Decoder()
    ev.vote_ensemble(clips, str(bundle.root), decoder, tmp_path / "out")
    assert clips == [{"text": "a", "robust_hyp": "b"}] and decoder.models == []


def test_a_likelihood_bundle_answers_the_candidate_its_members_score_best(tmp_path: Path, monkeypatch) -> None:
    """`ensemble_pick = "likelihood"`: every member (main first) scores the clip's candidates; clips with one
    candidate or over 30 s are not scored and keep the vote, as the engine answers them."""
    from types import SimpleNamespace

    import numpy as np

    import service.engines.candidate_scores as cs

    bundle = _ensemble_bundle(tmp_path, ensemble_pick="likelihood")
    answers = ["press one for sales", "goodbye", "press one for sales"]
    monkeypatch.setattr(ev, "cached_hyps", lambda path, model_id, clips, decoder, label="base": answers)
    scored = []

    def window_scores(model, log_mel, vocab, tokenizer, audio, texts, language="en"):
        scored.append((model, list(texts)))
        return [-0.5 if t == "press two for males" else -1.0 for t in texts]  # every member prefers the main's

    monkeypatch.setattr(cs, "window_scores", window_scores)
    loaded = []
    adapted = ev._adapted

    def recording_adapted(base_model, adapter, device):
        loaded.append(adapter)
        return adapted(base_model, adapter, device)

    monkeypatch.setattr(ev, "_adapted", recording_adapted)
    short, long = np.zeros(16_000, np.float32), np.zeros(31 * 16_000, np.float32)
    clips = [{"text": "press one for sales", "robust_hyp": "press two for males", "audio": short},
             {"text": "goodbye", "robust_hyp": "goodbye", "audio": short},
             {"text": "press one for sales", "robust_hyp": "press two for males", "audio": long}]
    decoder = _Decoder()
    decoder.transcriber = SimpleNamespace(log_mel=None, vocab=None, tokenizer=None)
    ev.vote_ensemble(clips, str(bundle.root), decoder, tmp_path / "out")
    assert [c["robust_hyp"] for c in clips] == ["press two for males", "goodbye", "press one for sales"]
    assert [texts for _, texts in scored] == [["press two for males", "press one for sales"]] * 3
    assert loaded[-3:] == [bundle.adapter, *bundle.ensemble]  # after the decodes: main, then each member, score
    assert clips[0]["robust_pick_scores"] == [[-0.5, -1.0]] * 3 and "robust_pick_scores" not in clips[1]
