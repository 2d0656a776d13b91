"""The ``device`` setting of the training stages: checked at load, honoured by the runs, device-free checkpoints.

On a CPU-only machine the CUDA-only tests are skipped; on a GPU machine they train, decode and
resume across devices for real (a 2-step SFT on cuda must equal the CPU run within tolerance).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from tests.conftest import model_dir
from tests.training.helpers import sft_workspace, spoken_rows, tiny_whisper
from training.checkpoint import latest_checkpoint
from training.config import (
    DEFAULT_CONFIG,
    DataConfig,
    EvalConfig,
    PhaseConfig,
    RLConfig,
    RouterTrainConfig,
    SFTConfig,
    load_config,
)
from training.device import resolve_device
from training.sft import train_sft

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
needs_no_cuda = pytest.mark.skipif(CUDA, reason="checks the refusal on a machine without CUDA")
STAGES = (DataConfig, SFTConfig, RLConfig, RouterTrainConfig, EvalConfig)


def _stage(cls, **kw):
    return cls(phases=[], **kw) if cls is SFTConfig else cls(**kw)


# -- the setting -------------------------------------------------------------------------------
@needs_no_cuda
@pytest.mark.parametrize("cls", STAGES)
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_cuda_fails_at_load_with_the_reason(cls, device):
    with pytest.raises(ValidationError, match=r"torch\.cuda\.is_available\(\) is False.*use device = 'cpu'"):
        _stage(cls, device=device)


@needs_no_cuda
def test_cuda_in_a_recipe_or_on_the_command_line_fails_before_anything_runs(tmp_path, capsys):
    from service.cli import main

    recipe = tmp_path / "recipe.toml"
    recipe.write_text('[sft]\nphases = [{name = "I", scope = "joint"}]\n[rl]\ndevice = "cuda"\n')
    with pytest.raises(ValidationError, match=r"rl\.device"):
        load_config(recipe)
    assert load_config(recipe, device="cpu", stages=("rl",)).rl.device == "cpu"  # the override wins
    # --device replaces only its own stage, and is validated like the file.
    assert load_config(DEFAULT_CONFIG, device="cuda", stages=()).sft.device == "cpu"
    assert main(["train", "sft", "--config", str(DEFAULT_CONFIG), "--device", "cuda", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "sft.device" in err and "torch.cuda.is_available() is False" in err
    assert main(["train", "data", "--config", str(DEFAULT_CONFIG), "--device", "cuda"]) == 2
    assert "data.device" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "mps", "cuda:-1", ""])
def test_unknown_device_strings_are_refused(bad):
    with pytest.raises(ValidationError, match="device must be"):
        EvalConfig(device=bad)


def test_auto_resolves_at_load_and_cpu_is_the_default():
    want = "cuda" if CUDA else "cpu"
    for cls in STAGES:
        assert _stage(cls).device == "cpu"
        assert _stage(cls, device="auto").device == want
        assert _stage(cls, device=" CPU ").device == "cpu"
    assert load_config(DEFAULT_CONFIG, device="auto", stages=("eval",)).eval.device == want
    assert resolve_device("auto") == (torch.device("cuda", 0) if CUDA else torch.device("cpu"))
    assert resolve_device("cpu", local_rank=3, multi_process=True) == torch.device("cpu")


@needs_no_cuda
def test_resolving_cuda_without_cuda_raises():
    with pytest.raises(ValueError, match="is_available"):
        resolve_device("cuda")


@needs_cuda
def test_cuda_resolves_to_the_local_rank_and_a_pinned_gpu_is_refused_under_torchrun():
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="LOCAL_RANK"):
        resolve_device("cuda:0", local_rank=0, multi_process=True)
    with pytest.raises(ValueError, match="no GPU"):
        resolve_device("cuda", local_rank=torch.cuda.device_count(), multi_process=True)


# -- runs --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return sft_workspace(tmp_path_factory.mktemp("device"))


def _cfg(model_path: Path, out: Path, dropout: float = 0.0, **device) -> SFTConfig:
    phase = PhaseConfig(name="joint", scope="joint", steps_per_stage=4, lr_encoder=3e-3, lr_decoder=3e-3,
                        warmup_fraction=0.2)
    cfg = SFTConfig(base_model=str(model_path), out_dir=str(out), upper_encoder_blocks=1, phases=[phase],
                    batch_size=4, eval_every=0, save_every=2, threads=2, **device)
    cfg.lora.dropout = dropout
    return cfg


def _state(out: Path) -> dict:
    """The newest checkpoint of phase 0, loaded onto the CPU."""
    folder = latest_checkpoint(out / "checkpoints", "phase0")
    assert folder is not None
    return torch.load(folder / "state.pt", map_location="cpu", weights_only=False)


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


def _sft(model_path: Path, data: Path, out: Path, steps: int, **kw) -> dict[str, torch.Tensor]:
    train_sft(_cfg(model_path, out, **kw), data, clean_fraction=0.0, max_steps=steps)
    return _state(out)["trainable"]


def test_explicit_cpu_equals_the_default(setup, tmp_path):
    root, model_path, _ = setup
    default = _sft(model_path, root / "data", tmp_path / "default", 3, dropout=0.3)
    explicit = _sft(model_path, root / "data", tmp_path / "explicit", 3, dropout=0.3, device="cpu")
    assert default.keys() == explicit.keys() and default
    for name in default:
        assert torch.equal(default[name], explicit[name]), name
    # The comparison can fail: the LoRA B matrices start at zero and have moved.
    assert any(float(t.abs().max()) > 0 for n, t in default.items() if "lora_B" in n)
    shorter = _sft(model_path, root / "data", tmp_path / "shorter", 2, dropout=0.3)
    assert any(not torch.equal(default[n], shorter[n]) for n in default)


def _assert_cpu_only_checkpoint(out: Path) -> dict:
    state = _state(out)
    tensors = _tensors(state)
    # Trainable LoRA tensors plus AdamW's two moments each (and the RNG state): not a vacuous walk.
    assert len(tensors) >= 3 * len(state["trainable"]) > 0
    assert {t.device.type for t in tensors} == {"cpu"}
    return state


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_checkpoints_hold_cpu_tensors_and_resume_on_the_cpu(setup, tmp_path, device):
    root, model_path, _ = setup
    data = root / "data"
    straight = _sft(model_path, data, tmp_path / "straight", 4)
    _sft(model_path, data, tmp_path / "moved", 2, device=device)  # checkpoint after step 2 on `device`
    _assert_cpu_only_checkpoint(tmp_path / "moved")
    resumed = _sft(model_path, data, tmp_path / "moved", 4, device="cpu")  # resumed on the CPU
    assert _state(tmp_path / "moved")["trainable"].keys() == straight.keys()
    for name in straight:
        if device == "cpu":
            assert torch.equal(straight[name], resumed[name]), name
        else:
            _assert_close_on_average(resumed[name], straight[name], name)


def _assert_close_on_average(got: torch.Tensor, want: torch.Tensor, name: str) -> None:
    """Mean, not max, difference: AdamW turns a gradient near zero into +-lr on either device."""
    moved = (got.cpu() - want).abs().mean()
    scale = want.abs().mean().clamp(min=1e-12)
    assert float(moved / scale) < 1e-2, (name, float(moved / scale))


# -- CUDA only ---------------------------------------------------------------------------------
@pytest.fixture
def exact_cuda():
    """No TF32 convolutions or matmuls, so cuda and CPU differ only by summation order."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in _records(out)]


@needs_cuda
def test_two_step_sft_on_cuda_equals_the_cpu(setup, tmp_path, exact_cuda):
    root, model_path, _ = setup
    cpu = _sft(model_path, root / "data", tmp_path / "cpu", 2)
    gpu = _sft(model_path, root / "data", tmp_path / "cuda", 2, device="cuda")
    assert _losses(tmp_path / "cuda") == pytest.approx(_losses(tmp_path / "cpu"), rel=1e-3)
    assert cpu.keys() == gpu.keys()
    for name in cpu:
        _assert_close_on_average(gpu[name], cpu[name], name)
    assert any(float(t.abs().max()) > 0 for n, t in gpu.items() if "lora_B" in n)


@needs_cuda
def test_sft_evaluation_decodes_on_cuda(setup, tmp_path):
    root, _, _ = setup
    real = model_dir("whisper-tiny.en")  # the served transcriber needs a real 30-second window
    cfg = _cfg(real, tmp_path / "run", device="cuda").model_copy(update={"eval_every": 2, "eval_samples": 4})
    train_sft(cfg, root / "data", clean_fraction=0.0, max_steps=2)
    records = _records(tmp_path / "run")
    assert "val_wer" in records[1] and records[1]["val_loss"] > 0


@needs_cuda
def test_rl_update_and_rollouts_run_on_cuda(tmp_path):
    from service.engines.decoding import TokenDecoder
    from service.engines.vocabulary import load_vocabulary
    from service.engines.whisper_runner import WhisperRunner
    from training.encoder_cache import lower_states, upper_states
    from training.lora import add_lora
    from training.reward import group_advantages
    from training.rl import Group, policy_update, sample_rollouts
    from training.sources import read_audio
    from training.whisper import FeatureMaker, TargetTokens, load_model, unwrap

    path = tiny_whisper(tmp_path / "model", model_dir("whisper-tiny.en"))
    row = spoken_rows(tmp_path / "audio")[2]
    model, processor, _ = load_model(str(path), "cuda")
    policy = add_lora(model, "joint", 1, 8, 16, 0.0)
    assert {p.device.type for p in policy.parameters()} == {"cuda"}
    vocab = load_vocabulary(processor.tokenizer, model.generation_config, model.config.vocab_size)
    cfg = RLConfig(group_size=2, max_new_tokens=8, lr=1e-2, upper_encoder_blocks=1, device="cuda")
    features = FeatureMaker(processor, model.config)([read_audio(row["audio"])]).to("cuda")
    hidden = lower_states(policy, features, 1)
    with torch.no_grad():
        states = upper_states(policy, hidden, 1)
    rules = TokenDecoder(WhisperRunner(unwrap(policy)), vocab)
    responses, _ = sample_rollouts(policy, rules, states, vocab.prompt("en", "transcribe"), 2, cfg,
                                          torch.Generator().manual_seed(0))
    assert len(responses) == 2 and all(responses)
    tokens = TargetTokens.from_processor(processor, model.config)
    enc = processor.tokenizer.encode(" Thank you for calling.", add_special_tokens=False)
    good = [tokens.timestamp_begin, *enc, tokens.timestamp(1.0), tokens.eot]
    group = Group(row, tokens.prefix, [good, responses[0]], [True, True], ["a", "b"], [1.0, 0.0],
                  group_advantages([1.0, 0.0]))
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.lr)
    stats = policy_update(policy, [group], hidden, 1, 2, optimizer, cfg, tokens.eot)
    assert stats["grad_norm"] > 0


@needs_cuda
def test_served_decoder_on_cuda_matches_the_cpu(setup, exact_cuda):
    from training.sources import read_audio
    from training.whisper import Decoder, load_model

    _, _, rows = setup
    real = model_dir("whisper-tiny.en")
    audios = [read_audio(r["audio"]) for r in rows]
    texts = {}
    for device in ("cpu", "cuda"):
        model, _, _ = load_model(str(real), device)
        texts[device] = Decoder(real, device=device).use_model(model)(audios)
    assert texts["cuda"] == texts["cpu"] and any(texts["cpu"])


@needs_cuda
def test_router_trains_on_cuda_and_saves_cpu_weights(tmp_path):
    from safetensors.torch import load_file

    from service.models.router_net import AudioQualityRouter
    from tests.training.test_router_export import _router_data
    from training.router import train_router

    _router_data(tmp_path)
    final = train_router(RouterTrainConfig(out_dir=str(tmp_path / "router"), epochs=1, batch_size=8, device="cuda"),
                         tmp_path)
    assert {t.device.type for t in load_file(str(final / "model.safetensors")).values()} == {"cpu"}
    assert AudioQualityRouter.load(final, "cuda").trained
    shutil.rmtree(tmp_path / "router")
