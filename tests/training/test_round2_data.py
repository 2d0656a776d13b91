"""Round-2 data: noise-only/silent clips with an empty target, telephone-band clean speech, and
real clean speakers (never the eval speaker) in the router's clean class."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import model_dir
from training.config import RouterTrainConfig
from training.data import NOISE_ONLY, SILENT, nonspeech_rows
from training.router import real_speaker_clips, train_router
from training.sources import read_audio, telephone_band
from training.whisper import TargetTokens, load_model, target_ids

POCKETSPHINX = "/usr/share/pocketsphinx/test/data"


def test_nonspeech_clips_have_an_empty_target_and_no_speech(tmp_path):
    rows = nonspeech_rows(12, "train", np.random.default_rng(0), tmp_path, "/usr/share/sonic-pi/samples")
    assert len(rows) == 12 and {r["scenario"] for r in rows} <= {NOISE_ONLY, SILENT}
    assert all(r["text"] == "" and r["base_wer"] == 0.0 for r in rows)
    assert any(r["source"].startswith("sonic_pi:") for r in rows)  # real recorded noise
    for r in rows:
        audio = read_audio(r["audio"])
        assert abs(len(audio) / 16000 - r["duration"]) < 0.01
        assert np.abs(audio).max() <= 1.0


def test_empty_target_is_the_served_decode_of_nothing():
    _, processor, _ = load_model(str(model_dir("whisper-tiny.en")))
    from transformers import WhisperConfig

    tokens = TargetTokens.from_processor(processor, WhisperConfig.from_pretrained(model_dir("whisper-tiny.en")))
    assert target_ids(processor, tokens, "", 0.0) == [*tokens.prefix, tokens.timestamp_begin, tokens.eot]


def test_telephone_band_removes_content_above_4khz():
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(16000).astype(np.float32) * 0.1
    narrow = telephone_band(audio)
    spec = np.abs(np.fft.rfft(narrow)) ** 2
    freqs = np.fft.rfftfreq(len(narrow), 1 / 16000)
    assert spec[freqs > 4200].sum() < 1e-3 * spec[freqs < 3800].sum()


def test_real_speaker_clips_label_clean_pieces_and_simulated_copies():
    audio, labels, groups = real_speaker_clips([f"{POCKETSPHINX}/goforward.raw"], 4.0, 2, 0)
    assert len(audio) == 3 and labels.tolist() == [0, 1, 1] and set(groups) == {"goforward"}
    assert not np.allclose(audio[0][: len(audio[1])], audio[1][: len(audio[0])])


def test_the_router_refuses_the_eval_speaker(tmp_path):
    cfg = RouterTrainConfig(out_dir=str(tmp_path), real_clean_train=["/usr/share/asterisk/sounds/en_US_f_Allison/*.wav"])
    with pytest.raises(ValueError, match="evaluation speaker"):
        train_router(cfg, tmp_path)
