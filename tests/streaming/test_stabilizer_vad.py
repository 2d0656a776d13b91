"""Pure parts of streaming: the stable-prefix policy and the energy VAD."""

from __future__ import annotations

import numpy as np

from service.streaming.stabilizer import StablePrefix
from service.streaming.vad import EnergyVad, VadConfig


def test_words_confirmed_only_when_two_hypotheses_agree() -> None:
    s = StablePrefix()
    assert s.update("the cat") == ""
    assert s.update("the cat sat") == "the cat"
    assert s.update("the cat sat on") == " sat"
    # A revision after the confirmed prefix is not shown until it stabilises.
    assert s.update("the cat sat in the") == ""
    assert s.update("the cat sat in the hat") == " in the"
    assert s.confirmed == ["the", "cat", "sat", "in", "the"]


def test_confirmed_text_is_never_rewritten() -> None:
    s = StablePrefix()
    s.update("hello world")
    assert s.update("Hello, world again") == "Hello, world"
    assert s.update("yellow world again") == ""  # disagrees with the confirmed prefix
    assert s.remainder("Hello, world again and again") == " again and again"
    assert s.remainder("completely different") == ""


def test_vad_finds_speech_in_noise_floor() -> None:
    rng = np.random.default_rng(0)
    sr = 16000
    quiet = (rng.standard_normal(sr * 2) * 0.003).astype(np.float32)
    loud = (np.sin(2 * np.pi * 220 * np.arange(sr) / sr) * 0.3).astype(np.float32)
    audio = np.concatenate([quiet, loud + quiet[:sr], quiet])
    vad = EnergyVad(VadConfig(silence_ms=300))
    events = []
    for i in range(0, len(audio), 1234):  # odd chunk sizes: results must not depend on chunking
        events += vad.feed(audio[i:i + 1234])
    assert [e.kind for e in events] == ["start", "stop"]
    assert abs(events[0].sample - 2 * sr) <= 0.05 * sr
    assert abs(events[1].sample - 3 * sr) <= 0.05 * sr


def test_vad_ignores_digital_silence_and_steady_noise() -> None:
    vad = EnergyVad()
    assert vad.feed(np.zeros(16000 * 3, dtype=np.float32)) == []
    steady = (np.random.default_rng(1).standard_normal(16000 * 5) * 0.05).astype(np.float32)
    assert EnergyVad().feed(steady) == []
