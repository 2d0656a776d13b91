"""Routing rules, bundle loading and base-model choice, without loading Whisper."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.models.bundle import FORMAT, BundleError, load_bundle, served_base_model
from service.models.router_net import AudioQualityRouter, RouterConfig
from service.routing import QualityRouter

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "whisper-tiny.en-robust"
SHIPPED_BASE = SHIPPED.parent / "whisper-base-robust"


def _bundle(root: Path, *, router: AudioQualityRouter | None, threshold: float = 0.5, adapter: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if adapter:
        (root / "adapter").mkdir()
    if router is not None:
        router.save(root / "router")
    meta = {"format": FORMAT, "base_model": "whisper-tiny.en", "adapter": "adapter" if adapter else None,
            "merged": None, "router": "router" if router is not None else None, "router_threshold": threshold}
    (root / "bundle.json").write_text(json.dumps(meta))
    return root


def _small_router(trained: bool) -> AudioQualityRouter:
    net = AudioQualityRouter(RouterConfig(d_model=32, conv_channels=16, ffn_dim=64, head_hidden=16, n_heads=2))
    if trained:
        net.mark_trained({"val_at_threshold": {"auc": 0.9}})
    return net


def test_without_checkpoint_auto_means_base_and_says_why() -> None:
    router = QualityRouter.from_bundle(None, robust_loaded=False)
    assert not router.active and router.status.startswith("untrained")
    decision = router.decide("auto", np.ones(1600, dtype=np.float32))
    assert (decision.adapter, decision.p_degraded) == ("base", None)
    assert router.decide("robust", np.ones(10, dtype=np.float32)).adapter == "robust"  # obeyed as asked
    with pytest.raises(RuntimeError):
        router.p_degraded(np.ones(1600, dtype=np.float32))


def test_an_untrained_network_is_never_used(tmp_path: Path) -> None:
    bundle = load_bundle(_bundle(tmp_path / "b", router=_small_router(trained=False)))
    router = QualityRouter.from_bundle(bundle, robust_loaded=True)
    assert not router.active and "not marked trained" in router.status
    assert router.decide("auto", np.ones(16000, dtype=np.float32)).adapter == "base"


def test_no_router_or_no_robust_model_keeps_auto_on_base(tmp_path: Path) -> None:
    no_router = QualityRouter.from_bundle(load_bundle(_bundle(tmp_path / "a", router=None)), robust_loaded=True)
    assert not no_router.active and "has no router" in no_router.status
    trained = load_bundle(_bundle(tmp_path / "b", router=_small_router(trained=True)))
    no_robust = QualityRouter.from_bundle(trained, robust_loaded=False)
    assert not no_robust.active and "no robust model" in no_robust.status


@pytest.mark.parametrize(("threshold", "expected"), [(0.0, "robust"), (1.0, "base")])
def test_threshold_decides(tmp_path: Path, threshold: float, expected: str) -> None:
    """p_degraded of a softmax lies strictly inside (0, 1): threshold 0 always routes, 1 never does."""
    bundle = load_bundle(_bundle(tmp_path / "b", router=_small_router(trained=True), threshold=threshold))
    router = QualityRouter.from_bundle(bundle, robust_loaded=True)
    assert router.active and router.status.startswith("trained") and "AUC 0.900" in router.status
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    decision = router.decide("auto", audio)
    assert decision.adapter == expected and 0.0 < decision.p_degraded < 1.0
    assert router.decide("base", audio).p_degraded is None
    assert router.decide("auto", np.zeros(0, dtype=np.float32)).adapter == "base"  # nothing to judge


def test_bundle_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="bundle.json is missing"):
        load_bundle(tmp_path)
    (tmp_path / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path)
    (tmp_path / "bundle.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(BundleError, match="unsupported bundle format"):
        load_bundle(tmp_path)
    outside = tmp_path.parent / "outside-adapter"
    outside.mkdir(exist_ok=True)
    (tmp_path / "bundle.json").write_text(json.dumps(
        {"format": FORMAT, "base_model": "whisper-tiny.en", "adapter": "../outside-adapter"}))
    with pytest.raises(BundleError, match="outside the bundle"):
        load_bundle(tmp_path)


def test_the_confidence_gate_is_read_and_checked(tmp_path: Path) -> None:
    root = _bundle(tmp_path / "b", router=None)
    assert load_bundle(root).robust_logprob_gate is None  # bundles written before the gate load unchanged
    meta = json.loads((root / "bundle.json").read_text())
    for good, read in ((-1.0, -1.0), (-2, -2.0), (0, 0.0), (None, None)):
        (root / "bundle.json").write_text(json.dumps({**meta, "robust_logprob_gate": good}))
        assert load_bundle(root).robust_logprob_gate == read
    for bad in (0.5, "-1", True, float("nan")):
        (root / "bundle.json").write_text(json.dumps({**meta, "robust_logprob_gate": bad}))
        with pytest.raises(BundleError, match="robust_logprob_gate must be a log-probability"):
            load_bundle(root)


def test_the_no_speech_gate_is_read_and_checked(tmp_path: Path) -> None:
    root = _bundle(tmp_path / "b", router=None)
    assert load_bundle(root).robust_no_speech_gate is None  # bundles written before the gate load unchanged
    meta = json.loads((root / "bundle.json").read_text())
    for good, read in ((0.8, 0.8), (0.05, 0.05), (None, None)):
        (root / "bundle.json").write_text(json.dumps({**meta, "robust_no_speech_gate": good}))
        assert load_bundle(root).robust_no_speech_gate == read
    for bad in (0, 1, 1.5, -0.2, "0.8", True, float("nan")):
        (root / "bundle.json").write_text(json.dumps({**meta, "robust_no_speech_gate": bad}))
        with pytest.raises(BundleError, match="robust_no_speech_gate must be a probability"):
            load_bundle(root)


def test_the_robust_ensemble_is_read_and_checked(tmp_path: Path) -> None:
    root = _bundle(tmp_path / "b", router=None)
    assert load_bundle(root).ensemble == ()  # bundles written before ensembles load unchanged
    meta = json.loads((root / "bundle.json").read_text())
    for name in ("members/1", "members/2"):
        (root / name).mkdir(parents=True)
    (root / "bundle.json").write_text(json.dumps({**meta, "ensemble": ["members/1", "members/2"]}))
    assert load_bundle(root).ensemble == (root.resolve() / "members/1", root.resolve() / "members/2")
    for bad, message in (([], "non-empty list"), ("members/1", "non-empty list"), ([""], "non-empty list"),
                         (["members/3"], "is missing"), (["members/1", "members/1"], "twice"),
                         (["adapter"], "twice, or the main adapter"), (["../../x"], "outside the bundle")):
        (root / "bundle.json").write_text(json.dumps({**meta, "ensemble": bad}))
        with pytest.raises(BundleError, match=message):
            load_bundle(root)
    (root / "bundle.json").write_text(json.dumps({**meta, "adapter": None, "ensemble": ["members/1"]}))
    with pytest.raises(BundleError, match="needs the bundle's own 'adapter'"):
        load_bundle(root)


def test_the_ensemble_pick_is_read_and_checked(tmp_path: Path) -> None:
    root = _bundle(tmp_path / "b", router=None)
    meta = json.loads((root / "bundle.json").read_text())
    (root / "members/1").mkdir(parents=True)
    ensemble = {**meta, "ensemble": ["members/1"]}
    (root / "bundle.json").write_text(json.dumps(ensemble))
    assert load_bundle(root).ensemble_pick == "vote"  # round 31's bundles (no key) vote, as they were measured
    (root / "bundle.json").write_text(json.dumps({**ensemble, "ensemble_pick": "likelihood"}))
    assert load_bundle(root).ensemble_pick == "likelihood"
    for bad, message in (({**ensemble, "ensemble_pick": "best"}, "must be one of vote, likelihood"),
                         ({**meta, "ensemble_pick": "likelihood"}, "no 'ensemble' to pick from")):
        (root / "bundle.json").write_text(json.dumps(bad))
        with pytest.raises(BundleError, match=message):
            load_bundle(root)


def test_the_served_no_speech_gate_is_the_bundles_unless_the_setting_says_otherwise(tmp_path: Path) -> None:
    from dataclasses import replace

    from pydantic import ValidationError

    from service.config import Settings
    from service.models.bundle import served_no_speech_gate

    bundle = replace(load_bundle(_bundle(tmp_path / "b", router=None)), robust_no_speech_gate=0.7)
    assert served_no_speech_gate("bundle", bundle) == 0.7
    assert served_no_speech_gate("bundle", replace(bundle, robust_no_speech_gate=None)) is None
    assert served_no_speech_gate("off", bundle) is None
    assert served_no_speech_gate(0.55, bundle) == 0.55
    assert served_no_speech_gate(0.55, None) is None  # no checkpoint: no robust path to gate
    assert Settings().robust_no_speech_gate == "bundle"
    assert Settings(robust_no_speech_gate="0.8").robust_no_speech_gate == 0.8  # a flag or env value is a string
    for bad in ("0", "1", "1.5", "-0.1", "sometimes"):
        with pytest.raises(ValidationError):
            Settings(robust_no_speech_gate=bad)


def test_explicit_model_beats_the_bundle_which_beats_the_default(tmp_path: Path) -> None:
    bundle = load_bundle(_bundle(tmp_path / "b", router=None))
    assert served_base_model(None, None, "whisper-tiny.en") == "whisper-tiny.en"
    assert served_base_model(None, bundle, "whisper-base") == "whisper-tiny.en"
    assert served_base_model("/my/folder", bundle, "whisper-base") == "/my/folder"


@pytest.mark.parametrize(("folder", "base_model"), [(SHIPPED, "whisper-tiny.en"), (SHIPPED_BASE, "whisper-base")])
def test_the_shipped_checkpoint_is_a_complete_bundle(folder: Path, base_model: str) -> None:
    bundle = load_bundle(folder)
    assert bundle.base_model == base_model and bundle.adapter is not None and bundle.router is not None
    assert bundle.router_threshold == AudioQualityRouter.load(bundle.router).training_metadata["threshold"]
    assert (bundle.adapter / "adapter_model.safetensors").stat().st_size > 100_000
    assert AudioQualityRouter.load(bundle.router).trained
    assert bundle.card is not None and "routed" in bundle.card.read_text()
    assert bundle.robust_logprob_gate is None  # the confidence gate cost WER on the eval (docs/training.md, round 7)
    # whisper-base ships the base-model no-speech gate chosen on validation clips (docs/training.md, round 28)
    assert bundle.robust_no_speech_gate == (0.7 if base_model == "whisper-base" else None)


def test_serve_with_a_broken_checkpoint_fails_fast(tmp_path: Path, capsys) -> None:
    from service.cli import main

    assert main(["serve", "--checkpoint", str(tmp_path), "--home", str(tmp_path / "home")]) == 2
    assert "bundle.json is missing" in capsys.readouterr().err
