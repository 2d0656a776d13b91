"""Router training metrics, a few-step router run, and the bundle format the service loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from service.models.bundle import BundleError
from service.models.router_net import AudioQualityRouter
from tests.conftest import model_dir
from tests.training.helpers import spoken_rows, tiny_whisper, write_jsonl
from training.config import RouterTrainConfig
from training.export import FORMAT, export_bundle, load_bundle, router_summary
from training.lora import add_lora
from training.router import auc, pick_threshold, train_router
from training.whisper import load_model


def test_auc_and_threshold_by_hand():
    labels = np.array([0, 0, 1, 1])
    assert auc(labels, np.array([0.1, 0.4, 0.35, 0.8])) == 0.75  # 3 of 4 pairs ordered
    assert auc(labels, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert pick_threshold(labels, np.array([0.1, 0.2, 0.3, 0.4])) == 0.3
    assert pick_threshold(labels, np.array([0.1, 0.2, 0.6, 0.9])) == 0.5  # ties keep the default


def _router_data(tmp_path):
    from simulation import simulate
    from training.sources import read_audio, write_audio

    rows = []
    for split, voices in (("train", ("slt", "awb")), ("val", ("rms",))):
        clips = spoken_rows(tmp_path / split, voices)
        out = []
        for row in clips:
            out.append({**row, "scenario": "clean"})
            noisy = simulate(read_audio(row["audio"]), 16000, "noise", 1.0, seed=1).audio
            write_audio(tmp_path / split / f"{row['id']}-noisy.wav", noisy)
            out.append({**row, "id": row["id"] + "-noisy", "audio": str(tmp_path / split / f"{row['id']}-noisy.wav")})
        write_jsonl(out, tmp_path / f"{split}.jsonl")
        rows += out
    return rows


def test_router_trains_and_saves_marked(tmp_path):
    _router_data(tmp_path)
    cfg = RouterTrainConfig(out_dir=str(tmp_path / "router"), epochs=2, batch_size=8)
    final = train_router(cfg, tmp_path)
    router = AudioQualityRouter.load(final)
    assert router.trained
    summary = json.loads((tmp_path / "router" / "metrics.json").read_text())
    assert 0.0 <= summary["threshold"] <= 1.0 and summary["val_at_threshold"]["n"] == 8
    assert summary["history"][0]["train_loss"] > 0


def test_bundle_has_the_agreed_format(tmp_path):
    model_path = tiny_whisper(tmp_path / "model", model_dir("whisper-tiny.en"))
    model, _, _ = load_model(str(model_path))
    add_lora(model, "joint", 1, 4, 8, 0.0).save_pretrained(tmp_path / "phase0")
    router = AudioQualityRouter()
    router.mark_trained({"test": True})
    router.save(tmp_path / "router")
    bundle = export_bundle(tmp_path / "bundle", "whisper-tiny.en", [tmp_path / "phase0"], model_path,
                           tmp_path / "router", 0.4, "# card\n", robust_logprob_gate=-1.5,
                           robust_no_speech_gate=0.75)
    meta = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert meta == {"format": FORMAT, "base_model": "whisper-tiny.en", "adapter": "adapter", "merged": "merged",
                    "router": "router", "router_threshold": 0.4, "robust_logprob_gate": -1.5,
                    "robust_no_speech_gate": 0.75}
    assert bundle.robust_logprob_gate == -1.5 and bundle.robust_no_speech_gate == 0.75
    assert (bundle.adapter / "adapter_config.json").exists() and (bundle.adapter / "adapter_model.safetensors").exists()
    assert (bundle.merged / "config.json").exists() and (bundle.merged / "tokenizer_config.json").exists()
    assert AudioQualityRouter.load(bundle.router).trained and bundle.router_threshold == 0.4
    untrained = AudioQualityRouter()
    untrained.save(tmp_path / "raw-router")
    with pytest.raises(ValueError):
        export_bundle(tmp_path / "b2", "whisper-tiny.en", [tmp_path / "phase0"], None, tmp_path / "raw-router", 0.5, "")
    meta["merged"] = "missing"
    (tmp_path / "bundle" / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="merged='missing'"):
        load_bundle(tmp_path / "bundle")


def _training_outputs(tmp_path, stage: str):
    """A training run's final folder (one LoRA phase of a tiny Whisper, `stage` in its record) and a trained
    router at tmp_path/router, as `megaasr export` reads them."""
    model_path = tiny_whisper(tmp_path / "model", model_dir("whisper-tiny.en"))
    model, _, _ = load_model(str(model_path))
    add_lora(model, "joint", 1, 4, 8, 0.0).save_pretrained(tmp_path / "phase0")
    robust = tmp_path / "final"
    robust.mkdir()
    (robust / "megaasr_training.json").write_text(json.dumps({"adapters": [str(tmp_path / "phase0")], "stage": stage}))
    router = AudioQualityRouter()
    router.mark_trained({"threshold": 0.6})
    router.save(tmp_path / "router")
    return robust


def test_export_command_writes_the_gates_it_was_given_into_bundle_and_card(tmp_path):
    """`megaasr export --no-speech-gate P --logprob-gate L`: both land in bundle.json, and the card's recipe
    shows them (not the recipe file's null) so the card describes the bundle it comes with."""
    from service.cli import main
    from training.config import DEFAULT_CONFIG

    robust = _training_outputs(tmp_path, "sft")
    assert main(["export", "--config", str(DEFAULT_CONFIG), "--robust", str(robust), "--router", str(tmp_path / "router"),
                 "--no-merged", "--no-speech-gate", "0.7", "--logprob-gate", "-2", "--out", str(tmp_path / "b")]) == 0
    bundle = load_bundle(tmp_path / "b")
    assert (bundle.robust_no_speech_gate, bundle.robust_logprob_gate, bundle.merged) == (0.7, -2.0, None)
    card = bundle.card.read_text()
    assert '"robust_no_speech_gate": 0.7' in card and '"robust_logprob_gate": -2.0' in card
    assert "## Robust-path gates" in card and "vLLM engine cannot" in card
    assert main(["export", "--config", str(DEFAULT_CONFIG), "--robust", str(robust), "--no-merged",
                 "--out", str(tmp_path / "plain")]) == 0
    assert load_bundle(tmp_path / "plain").robust_no_speech_gate is None  # the recipe's default: no gate
    assert "Robust-path gates" not in load_bundle(tmp_path / "plain").card.read_text()


def test_export_writes_an_exported_bundle_again_with_new_gates(tmp_path, capsys):
    """`megaasr export --robust BUNDLE`: the adapter comes over unchanged, the new gate is written, the card keeps
    the stage the adapter went through (read back from the old card), and a bad source or an --out that is the
    source itself is a one-line error, not a traceback or a deleted bundle."""
    from safetensors.torch import load_file

    from service.cli import main
    from training.config import DEFAULT_CONFIG

    robust = _training_outputs(tmp_path, "rl")
    export = ["export", "--config", str(DEFAULT_CONFIG), "--router", str(tmp_path / "router"), "--threshold", "0.8"]
    assert main([*export, "--robust", str(robust), "--no-merged", "--out", str(tmp_path / "first")]) == 0
    first = load_bundle(tmp_path / "first")
    assert first.robust_no_speech_gate is None

    assert main([*export, "--robust", str(tmp_path / "first"), "--no-speech-gate", "0.55",
                 "--out", str(tmp_path / "again")]) == 0
    again = load_bundle(tmp_path / "again")
    assert (again.robust_no_speech_gate, again.router_threshold, again.merged) == (0.55, 0.8, None)
    before = load_file(first.adapter / "adapter_model.safetensors")
    after = load_file(again.adapter / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    card = again.card.read_text()
    assert "followed by DG-WGPO" in card and '"robust_no_speech_gate": 0.55' in card

    assert main([*export, "--robust", str(tmp_path / "first"), "--out", str(tmp_path / "first")]) == 2
    assert "is the --robust folder" in capsys.readouterr().err
    assert load_bundle(tmp_path / "first").adapter.exists()  # not replaced
    # exporting training outputs over the bundle whose router it reads would delete that router first
    assert main(["export", "--config", str(DEFAULT_CONFIG), "--robust", str(robust), "--no-merged",
                 "--router", str(tmp_path / "first" / "router"), "--out", str(tmp_path / "first")]) == 2
    assert "is the --router folder" in capsys.readouterr().err
    assert load_bundle(tmp_path / "first").router.exists()
    assert main([*export, "--robust", str(tmp_path / "router"), "--out", str(tmp_path / "x")]) == 2
    assert "neither a training output" in capsys.readouterr().err


def test_export_writes_a_robust_ensemble_of_members(tmp_path, capsys):
    """`megaasr export --ensemble-member PATH`: each member's adapter lands in members/N unchanged, bundle.json
    lists them, the card says what an ensemble costs and where it is not served; a member that --out would
    replace is refused."""
    from safetensors.torch import load_file

    from service.cli import main
    from training.config import DEFAULT_CONFIG

    robust = _training_outputs(tmp_path, "sft")
    export = ["export", "--config", str(DEFAULT_CONFIG), "--router", str(tmp_path / "router"), "--no-merged"]
    assert main([*export, "--robust", str(robust), "--out", str(tmp_path / "member")]) == 0
    assert main([*export, "--robust", str(robust), "--ensemble-member", str(tmp_path / "member"),
                 "--ensemble-member", str(robust), "--out", str(tmp_path / "ens")]) == 0
    bundle = load_bundle(tmp_path / "ens")
    assert [p.relative_to(bundle.root).as_posix() for p in bundle.ensemble] == ["members/1", "members/2"]
    main_adapter = load_file(bundle.adapter / "adapter_model.safetensors")
    for member in bundle.ensemble:
        weights = load_file(member / "adapter_model.safetensors")
        assert weights.keys() == main_adapter.keys() and all(torch.equal(weights[k], main_adapter[k]) for k in weights)
    card = bundle.card.read_text()
    assert "## Robust ensemble" in card and "2 more robust adapters" in card and "vLLM engine votes too" in card
    assert "Robust ensemble" not in load_bundle(tmp_path / "member").card.read_text()
    assert main([*export, "--robust", str(robust), "--ensemble-member", str(tmp_path / "member"),
                 "--out", str(tmp_path / "member")]) == 2
    assert "is the --ensemble-member folder" in capsys.readouterr().err
    assert load_bundle(tmp_path / "member").adapter.exists()
    assert bundle.ensemble_pick == "vote" and "ROVER vote of their transcripts" in card
    assert main([*export, "--robust", str(robust), "--ensemble-member", str(tmp_path / "member"),
                 "--ensemble-pick", "likelihood", "--out", str(tmp_path / "likeliest")]) == 0
    likeliest = load_bundle(tmp_path / "likeliest")
    assert likeliest.ensemble_pick == "likelihood" and "find likeliest" in likeliest.card.read_text()
    # an ensemble bundle exported again: its own members/N folders are taken as they are
    assert main([*export, "--robust", str(tmp_path / "ens"), "--ensemble-member", str(tmp_path / "ens/members/1"),
                 "--ensemble-member", str(tmp_path / "ens/members/2"), "--ensemble-pick", "likelihood",
                 "--out", str(tmp_path / "again")]) == 0
    again = load_bundle(tmp_path / "again")
    assert again.ensemble_pick == "likelihood" and len(again.ensemble) == 2
    for old, new in zip(bundle.ensemble, again.ensemble):
        assert (old / "adapter_model.safetensors").read_bytes() == (new / "adapter_model.safetensors").read_bytes()
    assert main([*export, "--robust", str(robust), "--ensemble-pick", "likelihood", "--out", str(tmp_path / "x")]) == 2
    assert "needs ensemble members to pick from" in capsys.readouterr().err


def test_model_card_names_only_the_stages_the_model_went_through():
    from training.export import model_card

    sft_only = model_card("whisper-tiny.en", {"sft": {}}, None, None, stage="sft")
    with_rl = model_card("whisper-tiny.en", {"sft": {}}, None, None, stage="rl")
    assert "A2S-SFT" in sft_only and "DG-WGPO" not in sft_only
    assert "followed by DG-WGPO" in with_rl


def test_model_card_says_how_the_eval_decoded():
    from tests.training.test_eval_summary import CLIPS
    from training.eval import SYSTEMS, summarise
    from training.export import model_card

    summary = {**summarise(CLIPS, SYSTEMS), "config": {"decode": "served"}, "markdown": "stale"}
    card = model_card("whisper-tiny.en", {"sft": {}}, summary, None)
    assert "Decode: served" in card and "stale" not in card
    assert "## Serving" not in card  # measured with the service's defaults: nothing to add


def test_model_card_tells_how_to_serve_a_bundle_measured_with_a_beam():
    from tests.training.test_eval_summary import CLIPS
    from training.eval import SYSTEMS, summarise
    from training.export import model_card

    summary = {**summarise(CLIPS, SYSTEMS), "config": {"decode": "served", "beam_size": 5}}
    card = model_card("whisper-base", {"sft": {}}, summary, None)
    serving = card.split("## Serving", 1)[1]
    assert "--beam-size 5" in serving and "MEGAASR_BEAM_SIZE=5" in serving and "--best-of" not in serving


def test_router_threshold_is_found_beside_the_run_or_in_the_saved_router(tmp_path):
    router = AudioQualityRouter()
    router.mark_trained({"threshold": 0.77})
    router.save(tmp_path / "bundle" / "router")  # a router copied out of a bundle: no metrics.json beside it
    assert router_summary(tmp_path / "bundle" / "router")["threshold"] == 0.77
    router.save(tmp_path / "run" / "final")
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"threshold": 0.6, "history": []}))
    assert router_summary(tmp_path / "run" / "final")["threshold"] == 0.6  # train router's own record first
    AudioQualityRouter().save(tmp_path / "bare")
    assert router_summary(tmp_path / "bare") is None
