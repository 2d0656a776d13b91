"""Clean-teacher distillation: targets, mask and loss by hand, the frozen teacher, and that it trains."""

from __future__ import annotations

import json

import pytest
import torch

from simulation import simulate
from tests.training.helpers import sft_workspace
from training.config import PhaseConfig, SFTConfig
from training.distill import SILENCE, CleanTeacher, clean_sources, frame_mask, masked_mse_sum, target_key
from training.encoder_cache import LowerStateCache
from training.sft import Pieces, step_losses, train_phase
from training.sources import read_audio, write_audio
from training.whisper import FeatureMaker, TargetTokens, load_model


def test_each_row_targets_its_clean_source_itself_or_silence():
    assert target_key({"id": "a", "scenario": "clean", "clean_id": "a"}) == "a"
    assert target_key({"id": "a@8k", "scenario": "clean", "clean_id": "a@8k"}) == "a@8k"
    assert target_key({"id": "a__noise__0", "scenario": "noise", "clean_id": "a"}) == "a"
    assert target_key({"id": "noise_only-0", "scenario": "noise_only", "clean_id": None}) == SILENCE
    assert target_key({"id": "silent-1", "scenario": "silent"}) == SILENCE
    rows = [{"id": "a", "scenario": "clean", "audio": "a.wav"}, {"id": "a__noise__0", "scenario": "noise",
                                                                 "audio": "b.wav"}]
    assert clean_sources(rows) == {"a": "a.wav"}


def test_the_mask_covers_each_clip_and_not_the_padding():
    mask = frame_mask([0.05, 0.5, 0.0, 100.0], 50)
    assert mask.sum(dim=1).tolist() == [3, 25, 1, 50]  # ceil(d / 20 ms), at least 1, at most the window
    assert mask[1, :25].all() and not mask[1, 25:].any()


def test_masked_mse_by_hand():
    student = torch.zeros(2, 3, 2)
    teacher = torch.ones(2, 3, 2)
    teacher[0, 2] = 5.0  # outside row 0's mask: must not count
    teacher[1, 1] = 3.0  # inside row 1's mask: (3-0)^2 = 9 on that state
    mask = torch.tensor([[True, True, False], [True, True, True]])
    # row 0: states 1, 1 -> mean 1; row 1: states 1, 9, 1 -> mean 11/3
    assert float(masked_mse_sum(student, teacher, mask)) == pytest.approx(1.0 + 11.0 / 3.0)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Clean spoken rows, a simulated noisy copy of each (with ``clean_id``) and a noise-only row."""
    root, model_path, spoken = sft_workspace(tmp_path_factory.mktemp("distill"))
    rows = []
    for i, r in enumerate(spoken):
        audio = read_audio(r["audio"])
        clean = {**r, "scenario": "clean", "clean_id": r["id"], "duration": len(audio) / 16000, "effects": []}
        noisy_path = root / f"noisy-{i}.wav"
        write_audio(noisy_path, simulate(audio, 16000, "noise", 0.9, seed=i).audio)
        rows += [clean, {**clean, "id": f"{r['id']}__noise__0", "audio": str(noisy_path), "scenario": "noise",
                         "effects": ["noise"], "base_wer": 0.2}]
    silent = root / "silent.wav"
    write_audio(silent, 1e-3 * torch.randn(8000).numpy())
    rows.append({"id": "silent-0", "audio": str(silent), "text": "", "speaker": "none", "scenario": "silent",
                 "clean_id": None, "duration": 0.5, "speech_end": 0.0, "base_wer": 0.0, "base_hyp": "",
                 "effects": []})
    return root, model_path, rows


def _pieces(model, processor, rows, n_frozen=1) -> Pieces:
    features = FeatureMaker(processor, model.config)
    return Pieces(processor, TargetTokens.from_processor(processor, model.config), features,
                  LowerStateCache(model, n_frozen, features, read_audio), n_frozen,
                  CleanTeacher(model, clean_sources(rows), features, read_audio))


def _distill_of(model, pieces, rows) -> float:
    with torch.no_grad():
        _, _, states = step_losses(model.eval(), rows, pieces, False)
        return float(pieces.teacher.loss_sum(states, rows)) / len(rows)


def test_the_teacher_is_the_unadapted_encoder_on_the_clean_source(workspace):
    _, model_path, rows = workspace
    model, processor, _ = load_model(str(model_path))
    pieces = _pieces(model, processor, rows)
    clean = [r for r in rows if r["scenario"] == "clean"]
    noisy = [r for r in rows if r["scenario"] == "noise"]
    assert _distill_of(model, pieces, clean) < 1e-4  # the unadapted student on clean audio is the teacher
    assert _distill_of(model, pieces, noisy) > 100 * max(1e-6, _distill_of(model, pieces, clean))
    silent = pieces.teacher.states([rows[-1]], torch.device("cpu"))
    expected = pieces.teacher.encoder(pieces.features([torch.zeros(16000).numpy()])).last_hidden_state
    torch.testing.assert_close(silent, expected.to(torch.float16).float())
    before = pieces.teacher.states(noisy, torch.device("cpu"))
    with torch.no_grad():  # the student's weights move; the teacher is a frozen copy and must not
        for p in model.get_encoder().parameters():
            p.add_(0.1)
    pieces.teacher.store.clear()
    assert torch.equal(before, pieces.teacher.states(noisy, torch.device("cpu")))
    with pytest.raises(KeyError, match="no clean source 'missing'"):
        pieces.teacher.states([{"id": "x", "scenario": "noise", "clean_id": "missing"}], torch.device("cpu"))


def _cfg(model_path, out, weight: float) -> SFTConfig:
    phase = PhaseConfig(name="I", scope="upper_encoder", curriculum=[1.0], steps_per_stage=10, lr_encoder=3e-3,
                        lr_decoder=0.0, warmup_fraction=0.1)
    return SFTConfig(base_model=str(model_path), out_dir=str(out), upper_encoder_blocks=1, phases=[phase],
                     batch_size=4, eval_every=0, save_every=0, threads=2, distill_weight=weight)


@pytest.mark.parametrize("weight", [0.0, 1e4])  # a random tiny encoder: MSE ~6e-4, CE ~11
def test_distillation_pulls_the_degraded_states_towards_the_clean_ones(workspace, tmp_path, weight):
    _, model_path, rows = workspace
    noisy = [r for r in rows if r["scenario"] == "noise"]
    model, processor, _ = load_model(str(model_path))
    pieces = _pieces(model, processor, rows)
    before = _distill_of(model, pieces, noisy)
    cfg = _cfg(model_path, tmp_path, weight)
    peft_model = train_phase(model, 0, cfg.phases[0], cfg, noisy, noisy, pieces, None, tmp_path, 0.0)
    after = _distill_of(peft_model, pieces, noisy)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    if weight:
        assert after < 0.7 * before, (before, after)
        assert all(r["distill"] > 0 for r in records)
    else:  # CE alone: no distillation term is computed or logged, and the states do not move toward clean
        assert all("distill" not in r for r in records)
        assert after > 0.7 * before, (before, after)


def test_the_training_curves_draw_the_distillation_term_beside_the_loss(tmp_path, monkeypatch):
    """A run with the clean-teacher loss shows its term (dotted, per phase that trains the encoder); one without, none."""
    import json

    import matplotlib.pyplot as plt

    from training.sft import plot_curves

    drawn: list[list[str]] = []
    monkeypatch.setattr(plt, "close", lambda fig: drawn.append(
        [line.get_label() for line in fig.axes[0].get_lines()]))
    rows = [{"phase": 0, "name": "I-acoustic", "step": s, "loss": 1.0 / s, "distill": 0.5 / s} for s in (1, 2)]
    rows += [{"phase": 1, "name": "II-semantic", "step": s, "loss": 2.0 / s} for s in (1, 2)]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert plot_curves(metrics, tmp_path / "curves.png").stat().st_size > 0
    assert drawn[-1] == ["I-acoustic", "I-acoustic: distill", "II-semantic"]
