"""training.soup: a weighted sum of bundle adapters is one LoRA whose merged weights are base + sum(w * delta)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from service.models.router_net import AudioQualityRouter
from tests.conftest import model_dir
from tests.training.helpers import tiny_whisper
from training.export import apply_adapter, combine_adapters, export_bundle
from training.lora import add_lora
from training.soup import main, make_soup, parse_weighted
from training.whisper import load_model


def _bundle(tmp_path, model_path, name: str, seed: int, base_model: str):
    """A bundle whose adapter has random (non-zero) B matrices, so its delta is not zero."""
    model, _, _ = load_model(str(model_path))
    peft_model = add_lora(model, "joint", 1, 4, 8, 0.0)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param_name, param in peft_model.named_parameters():
            if "lora_B" in param_name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    peft_model.save_pretrained(tmp_path / f"{name}-adapter")
    router = AudioQualityRouter()
    router.mark_trained({"test": True})
    router.save(tmp_path / f"{name}-router")
    export_bundle(tmp_path / name, base_model, [tmp_path / f"{name}-adapter"], None, tmp_path / f"{name}-router",
                  0.3 + seed / 100, f"# {name}\n", robust_logprob_gate=-1.0, robust_no_speech_gate=0.7 + seed / 100)
    return tmp_path / name


def _merged_weights(model_path, adapter_dir) -> dict[str, torch.Tensor]:
    base, _, _ = load_model(str(model_path))
    merged = apply_adapter(base, adapter_dir).merge_and_unload()
    return {k: v.detach().clone() for k, v in merged.state_dict().items()}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("soup")
    model_path = tiny_whisper(root / "model", model_dir("whisper-tiny.en"))
    first = _bundle(root, model_path, "first", 1, str(model_path))
    second = _bundle(root, model_path, "second", 2, str(model_path))
    base, _, _ = load_model(str(model_path))
    return root, model_path, first, second, {k: v.detach().clone() for k, v in base.state_dict().items()}


def test_soup_merges_to_the_weighted_sum_of_the_deltas(setup, tmp_path):
    _, model_path, first, second, base = setup
    delta_a = {k: v - base[k] for k, v in _merged_weights(model_path, first / "adapter").items()}
    delta_b = {k: v - base[k] for k, v in _merged_weights(model_path, second / "adapter").items()}
    soup = make_soup([(str(first), 0.25), (str(second), 0.75)], tmp_path / "soup")
    got = _merged_weights(model_path, soup.adapter)
    changed = [k for k in base if delta_a[k].abs().max() > 0]
    assert changed, "the test adapters must change some weights"
    for key in base:
        torch.testing.assert_close(got[key], base[key] + 0.25 * delta_a[key] + 0.75 * delta_b[key],
                                   atol=1e-6, rtol=1e-5)
    # router, threshold and gate are the first bundle's; the card and soup.json say what went in
    assert soup.router_threshold == pytest.approx(0.31) and soup.robust_logprob_gate == -1.0
    assert soup.robust_no_speech_gate == pytest.approx(0.71)
    assert AudioQualityRouter.load(soup.router).trained
    recipe = json.loads((tmp_path / "soup" / "soup.json").read_text())
    assert recipe == {"bundles": [{"path": str(first), "weight": 0.25}, {"path": str(second), "weight": 0.75}]}
    card = soup.card.read_text()
    assert f"--bundle {first}=0.25 --bundle {second}=0.75" in card
    assert "rank 8." in card and "--max-lora-rank" not in card  # 4 + 4: within vLLM's default 16
    assert "weighted sum of adapters" in card and card.index("## Soup") < card.index("## Training configuration")


def test_vllm_rank_flag_is_the_next_allowed_value():
    from training.soup import _vllm_rank

    assert [_vllm_rank(r) for r in (4, 16, 17, 32, 48)] == [8, 16, 32, 32, 64]


def test_soup_refuses_to_overwrite_an_input_bundle(setup):
    _, _, first, _, _ = setup
    with pytest.raises(ValueError, match="one of the input bundles"):
        make_soup([(str(first), 1.0)], first)
    with pytest.raises(ValueError, match="one of the input bundles"):
        make_soup([(str(first), 1.0)], first.parent)  # a folder holding the input: replacing it deletes the input
    assert (first / "adapter" / "adapter_model.safetensors").exists()


def test_scaling_one_bundle_scales_its_delta(setup, tmp_path):
    _, model_path, first, _, base = setup
    delta = {k: v - base[k] for k, v in _merged_weights(model_path, first / "adapter").items()}
    assert main(["--bundle", f"{first}=1.5", "--out", str(tmp_path / "scaled")]) == 0
    got = _merged_weights(model_path, tmp_path / "scaled" / "adapter")
    for key in base:
        torch.testing.assert_close(got[key], base[key] + 1.5 * delta[key], atol=1e-6, rtol=1e-5)


def test_soup_refuses_bundles_on_different_base_models(setup, tmp_path):
    _root, model_path, first, _, _ = setup
    other = _bundle(tmp_path, model_path, "other", 3, "whisper-base")
    with pytest.raises(ValueError, match="different base models"):
        make_soup([(str(first), 0.5), (str(other), 0.5)], tmp_path / "bad")
    with pytest.raises(ValueError, match="at least one"):
        make_soup([], tmp_path / "none")


def test_weights_must_match_the_adapters(setup, tmp_path):
    _, _, first, _second, _ = setup
    with pytest.raises(ValueError, match="2 weights for 1 adapters"):
        combine_adapters([first / "adapter"], tmp_path / "c", [0.5, 0.5])


def test_bundle_weight_parsing():
    assert parse_weighted("runs/a=0.5") == ("runs/a", 0.5)
    assert parse_weighted("runs/a") == ("runs/a", 1.0)
    assert parse_weighted("runs/x=y=1.25") == ("runs/x=y", 1.25)
    with pytest.raises(argparse.ArgumentTypeError, match="DIR=WEIGHT"):
        parse_weighted("runs/a=half")


def test_soup_card_carries_the_eval_and_the_vllm_rank():
    from tests.training.test_eval_summary import CLIPS
    from training.eval import SYSTEMS, summarise
    from training.soup import soup_card

    summary = {**summarise(CLIPS, SYSTEMS), "config": {"decode": "served", "beam_size": 5}}
    card = soup_card("whisper-base", [("a", 1.0), ("b", 0.5)], 32, summary, {"threshold": 0.8})
    assert "routed" in card and "--beam-size 5" in card and "--max-lora-rank 32" in card
    assert "| `b` | 0.5 |" in card and '"threshold": 0.8' in card
