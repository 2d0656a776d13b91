"""Tests for the audio-quality router network and its log-mel front end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from service.models.router_net import (
    AudioQualityRouter,
    RouterConfig,
    _mel_filters,
    features_from_audio,
    log_mel,
    sinusoidal_table,
    state_dict_size,
    trainable_parameter_count,
)

SR = 16_000


@pytest.fixture(scope="module")
def router() -> AudioQualityRouter:
    torch.manual_seed(0)
    model = AudioQualityRouter().eval()
    # Non-trivial BatchNorm statistics, so eval-mode normalisation is exercised, not the identity.
    with torch.no_grad():
        for stage in (model.conv1, model.conv2):
            stage.norm.running_mean.uniform_(-0.5, 0.5)
            stage.norm.running_var.uniform_(0.5, 2.0)
    return model


def _clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * t)
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


# --- size ----------------------------------------------------------------------------------------------


def test_checkpoint_size_matches_the_paper() -> None:
    model = AudioQualityRouter()
    # The paper's 1,172,229 "params" are all 35 state-dict tensors of the released checkpoint:
    assert state_dict_size(model) == 1_172_229
    assert len(model.state_dict()) == 35
    # ... of which the optimiser sees 953,859; the rest are buffers:
    assert trainable_parameter_count(model) == 953_859
    positional = 850 * 256  # sinusoidal table, stored in the checkpoint
    batchnorm_buffers = 2 * (128 + 256) + 2  # running mean/var of both BNs + two step counters
    assert 953_859 + positional + batchnorm_buffers == 1_172_229


def test_config_defaults_are_the_released_shapes() -> None:
    cfg = RouterConfig()
    assert (cfg.n_mels, cfg.conv_channels, cfg.d_model, cfg.n_heads, cfg.ffn_dim, cfg.n_layers) == (
        80,
        128,
        256,
        4,
        1024,
        1,
    )
    assert cfg.max_len == 850


# --- front end -----------------------------------------------------------------------------------------


def _slaney_filterbank_by_hand(n_fft: int = 400, n_mels: int = 80, sr: int = SR) -> np.ndarray:
    """torchaudio's melscale_fbanks(norm='slaney', mel_scale='slaney') algorithm, written out."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        logstep = np.log(6.4) / 27.0
        mel = f / f_sp
        return np.where(
            f >= min_log_hz, min_log_hz / f_sp + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, mel
        )

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    all_freqs = np.linspace(0, sr // 2, n_fft // 2 + 1)
    f_pts = mel_to_hz(np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(sr / 2)), n_mels + 2))
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    banks = np.maximum(0.0, np.minimum(down, up))
    return banks * (2.0 / (f_pts[2 : n_mels + 2] - f_pts[:n_mels]))[None, :]


def test_mel_filterbank_matches_torchaudio_slaney_algorithm() -> None:
    ours = _mel_filters(400, 80, SR).numpy()
    assert ours.shape == (201, 80)
    np.testing.assert_allclose(ours, _slaney_filterbank_by_hand(), rtol=1e-5, atol=1e-7)


def test_log_mel_frames_and_scaling() -> None:
    # centre=True: 1 + samples // hop frames. 3 s → 1 + 48000 // 160 = 301.
    assert log_mel(_clip(3.0, 0)).shape == (301, 80)
    # Digital silence: log10(1e-10) = −10 → (−10 + 4) / 4 = −1.5 everywhere.
    silence = log_mel(np.zeros(SR, dtype=np.float32))
    assert torch.allclose(silence, torch.full_like(silence, -1.5))


def test_log_mel_puts_a_tone_in_the_right_band() -> None:
    t = np.arange(SR) / SR
    frames = log_mel((0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32))
    peak_band = int(frames[50].argmax())
    filters = _mel_filters(400, 80, SR)
    centre_hz = float(filters[:, peak_band].argmax()) * SR / 400
    assert abs(centre_hz - 1000.0) <= 80.0


def test_short_and_long_clips() -> None:
    assert log_mel(np.zeros(100, dtype=np.float32)).shape == (3, 80)  # padded to one window: 1 + 400//160
    assert log_mel(np.zeros(40 * SR, dtype=np.float32)).shape == (3000, 80)  # first 30 s only
    with pytest.raises(ValueError):
        log_mel(np.zeros(0, dtype=np.float32))


def test_features_from_audio_pads_with_zeros_and_masks() -> None:
    features, mask = features_from_audio([_clip(1.0, 1), _clip(2.0, 2)])
    assert features.shape == (2, 201, 80) and mask.shape == (2, 201)
    assert mask[0].sum() == 101 and mask[1].all()
    assert (features[0, 101:] == 0).all()


# --- network -------------------------------------------------------------------------------------------


def test_forward_shape_and_probabilities(router: AudioQualityRouter) -> None:
    features, mask = router.features_from_audio([_clip(1.0, 3), _clip(2.5, 4), _clip(0.3, 5)])
    with torch.no_grad():
        logits = router(features, mask)
    assert logits.shape == (3, 2)
    p = router.predict_proba([_clip(1.0, 3), _clip(2.5, 4), _clip(0.3, 5)])
    assert p.shape == (3,) and p.dtype == np.float32
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p, torch.softmax(logits, -1)[:, 1].numpy(), atol=1e-6)


def test_padding_does_not_change_the_probability(router: AudioQualityRouter) -> None:
    short = _clip(1.3, 6)
    alone = router.predict_proba([short])[0]
    with_longer = router.predict_proba([short, _clip(4.1, 7)])[0]
    assert abs(alone - with_longer) < 1e-5
    # Extra frames of arbitrary content under a False mask are ignored too.
    features, mask = router.features_from_audio([short])
    padded = torch.cat([features, torch.randn(1, 57, 80) * 3], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(1, 57, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        a = torch.softmax(router(features, mask), -1)[0, 1]
        b = torch.softmax(router(padded, padded_mask), -1)[0, 1]
    assert abs(float(a) - float(b)) < 1e-5


@pytest.mark.parametrize("frames", [101, 102, 103, 104])
def test_padding_invariance_at_every_length_parity(router: AudioQualityRouter, frames: int) -> None:
    # Odd/even lengths exercise the conv window that runs past the clip's end.
    torch.manual_seed(frames)
    features = torch.randn(1, frames, 80)
    padded = torch.cat([features, torch.full((1, 9, 80), 5.0)], dim=1)
    mask = torch.ones(1, frames, dtype=torch.bool)
    padded_mask = torch.cat([mask, torch.zeros(1, 9, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(router(padded, padded_mask), router(features, mask), atol=1e-5, rtol=0)


def test_eval_mode_is_deterministic_and_train_mode_is_not(router: AudioQualityRouter) -> None:
    clips = [_clip(1.0, 8)]
    np.testing.assert_array_equal(router.predict_proba(clips), router.predict_proba(clips))
    features, mask = router.features_from_audio(clips * 4)
    router.train()
    try:
        torch.manual_seed(1)
        with torch.no_grad():
            first, second = router(features, mask), router(features, mask)
        assert not torch.equal(first, second)  # dropout is live
        router.predict_proba(clips)
        assert router.training  # predict_proba restores the caller's mode
    finally:
        router.eval()


def test_mask_defaults_to_all_valid(router: AudioQualityRouter) -> None:
    features = torch.randn(2, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(router(features), router(features, torch.ones(2, 64, dtype=torch.bool)))
    with pytest.raises(ValueError):
        router(features, torch.zeros(2, 64, dtype=torch.bool))


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = AudioQualityRouter().train()
    features, mask = torch.randn(3, 120, 80), torch.ones(3, 120, dtype=torch.bool)
    mask[1, 70:] = False
    torch.nn.functional.cross_entropy(model(features, mask), torch.tensor([0, 1, 1])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_positional_table() -> None:
    table = sinusoidal_table(850, 256)
    assert table.shape == (850, 256)
    assert torch.allclose(table[0, 0::2], torch.zeros(128)) and torch.allclose(
        table[0, 1::2], torch.ones(128)
    )


# --- persistence ---------------------------------------------------------------------------------------


def test_save_load_round_trip(router: AudioQualityRouter, tmp_path: Path) -> None:
    router.save(tmp_path / "router")
    loaded = AudioQualityRouter.load(tmp_path / "router")
    assert not loaded.training
    clips = [_clip(1.7, 9), _clip(0.6, 10)]
    np.testing.assert_array_equal(loaded.predict_proba(clips), router.predict_proba(clips))
    assert loaded.trained is False
    for name, tensor in router.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_trained_flag_and_metadata_persist(tmp_path: Path) -> None:
    model = AudioQualityRouter(RouterConfig(d_model=64, ffn_dim=128, conv_channels=32, head_hidden=16))
    model.mark_trained({"val_accuracy": 0.996, "epochs": 3})
    model.save(tmp_path)
    document = json.loads((tmp_path / "config.json").read_text())
    assert document["trained"] is True and document["training"]["val_accuracy"] == 0.996
    loaded = AudioQualityRouter.load(tmp_path)
    assert loaded.trained and loaded.training_metadata == {"val_accuracy": 0.996, "epochs": 3}
    assert loaded.config.d_model == 64


def test_load_refuses_mismatched_weights(tmp_path: Path) -> None:
    AudioQualityRouter(RouterConfig(d_model=64, ffn_dim=128, head_hidden=16)).save(tmp_path)
    document = json.loads((tmp_path / "config.json").read_text())
    document["config"]["d_model"] = 256
    (tmp_path / "config.json").write_text(json.dumps(document))
    with pytest.raises(RuntimeError):
        AudioQualityRouter.load(tmp_path)
