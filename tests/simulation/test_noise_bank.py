"""Noise sources: coloured noise spectra, a folder bank, and building a bank from Debian data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal as sp_signal

from simulation import NoiseBank, build_noise_bank, simulate
from simulation.noise_bank import SyntheticNoise, coloured_noise, make_babble

from .conftest import speech_like


@pytest.mark.parametrize(("colour", "slope_db_per_decade"), [("white", 0.0), ("pink", -10.0), ("brown", -20.0)])
def test_coloured_noise_has_the_right_spectral_slope(colour: str, slope_db_per_decade: float) -> None:
    x = coloured_noise(colour, 160000, np.random.default_rng(0))
    f, p = sp_signal.welch(x, 16000, nperseg=4096)
    band = (f >= 100) & (f <= 6000)
    slope = np.polyfit(np.log10(f[band]), 10 * np.log10(p[band]), 1)[0]
    assert abs(slope - slope_db_per_decade) < 1.5
    assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)


def test_folder_bank_samples_deterministically_and_resamples(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "a.wav", 0.1 * rng.standard_normal(8000), 8000)
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "b.flac", 0.1 * rng.standard_normal((44100, 2)), 44100)
    (tmp_path / "notes.txt").write_text("not audio")
    bank = NoiseBank(tmp_path)
    assert len(bank) == 2
    a, info_a = bank.sample(40000, 16000, np.random.default_rng(3))
    b, info_b = bank.sample(40000, 16000, np.random.default_rng(3))
    assert np.array_equal(a, b) and info_a == info_b and len(a) == 40000
    assert info_a["source"] in ("a.wav", "sub/b.flac")
    assert len(bank.load(0, 16000)) == 16000  # 1 s at 8 kHz resampled to 16 kHz


def test_bank_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        NoiseBank(tmp_path / "nope")
    with pytest.raises(ValueError, match="holds no"):
        NoiseBank(tmp_path)
    with pytest.raises(ValueError, match="colours"):
        SyntheticNoise(["purple"])


def test_build_bank_then_simulate_with_it(tmp_path: Path) -> None:
    speech = []
    for i in range(3):
        audio, _ = speech_like(1.0, 16000, seed=i)
        sf.write(tmp_path / f"s{i}.wav", audio, 16000)
        speech.append(tmp_path / f"s{i}.wav")
    counts = build_noise_bank(tmp_path / "bank", 16000, speech, coloured_per_kind=1, babble_clips=2,
                              talkers=3, seconds=2.0)
    assert counts["coloured"] == 3 and counts["babble"] == 2
    if Path("/usr/share/sonic-pi/samples").is_dir():
        assert counts["sonic_pi"] > 10
    assert (tmp_path / "bank" / "SOURCES.json").is_file()
    x, _ = speech_like(2.0, 16000, seed=9)
    r = simulate(x, 16000, "noise", 0.5, seed=1, noise_bank=str(tmp_path / "bank"))
    step = r.steps[0]["measured"]
    assert not step["source"].startswith("synthetic") and abs(step["achieved_snr_db"] - 2.5) <= 0.5


def test_babble_mixes_several_talkers() -> None:
    clips = [speech_like(1.0, 16000, seed=i)[0] for i in range(4)]
    babble = make_babble(clips, np.random.default_rng(0), 32000, talkers=4)
    assert len(babble) == 32000 and 0 < np.max(np.abs(babble)) <= 0.5 + 1e-6
