"""``megaasr eval``'s scoring: corpus WER by group, non-speech counts, router shares, the cache of hypotheses.

Hand-made clips with known errors, so every number below is computed by hand.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from service.engines.base import DEFAULT_TEMPERATURES, TranscriptionOptions
from service.engines.transcriber import GuardConfig
from training.eval import (
    cached_hyps,
    decode_temperatures,
    gain_interval,
    markdown,
    plot,
    relative_gain,
    summarise,
)

SYSTEMS = ("base", "robust", "routed")


def _clip(cid, text, scenario, n_effects, severity, base, robust, routed_robust=True, p=0.9):
    return {"id": cid, "text": text, "scenario": scenario, "n_effects": n_effects, "severity": severity,
            "base_hyp": base, "robust_hyp": robust, "routed_hyp": robust if routed_robust else base,
            "routed_robust": routed_robust, "p_dirty": p}


CLIPS = [
    # clean: base and robust both right; the router keeps one of two on the base model
    _clip("c1", "please hold the line", "clean", 0, 0.0, "please hold the line", "please hold the line", False, 0.1),
    _clip("c2", "thank you for calling", "clean", 0, 0.0, "thank you for calling", "thank you for calling", True),
    # one effect, low severity: base drops 2 of 4 words, robust gets all
    _clip("d1", "enter your pin now", "noise", 1, 0.1, "enter your", "enter your pin now"),
    # three effects, high severity: base says nothing (4 deletions), robust 2 substitutions
    _clip("d2", "the party is busy", "far_field_noise_stutter", 3, 0.9, "", "the party was fussy"),
    # two effects, mid severity: base inserts 2 words, robust right
    _clip("d3", "goodbye", "noise_stutter", 2, 0.5, "goodbye goodbye again", "goodbye"),
    # non-speech: robust says one word on noise, nobody on silence
    _clip("n1", "", "noise_only", 0, 0.0, "", "you"),
    _clip("s1", "", "silent", 0, 0.0, "", "", False, 0.2),
]


def test_corpus_wer_is_micro_averaged_per_group():
    s = summarise(CLIPS, SYSTEMS)
    # degraded: 9 reference words; base errors 2 + 4 + 2 = 8, robust 0 + 2 + 0 = 2
    assert s["overall_degraded"]["base"]["wer"] == round(100 * 8 / 9, 2)
    assert s["overall_degraded"]["robust"]["wer"] == round(100 * 2 / 9, 2)
    assert s["overall_degraded"]["routed"]["wer"] == s["overall_degraded"]["robust"]["wer"]
    assert s["clean"]["base"]["wer"] == 0.0 and s["clean"]["base"]["n"] == 2
    assert s["by_effect_count"]["3+ effects"]["base"]["wer"] == 100.0
    assert s["by_effect_count"]["3+ effects"]["robust"]["wer"] == 50.0
    assert s["by_effect_count"]["2 effects"]["base"]["wer"] == 200.0  # 2 insertions over 1 word
    assert s["by_scenario"]["noise"]["base"]["n"] == 1


def test_flags_and_non_speech_counts():
    s = summarise(CLIPS, SYSTEMS)
    # omission = deletion rate above 0.2 (service.scoring): base drops 2 of 4 words of d1 and all of d2
    assert s["overall_degraded"]["base"]["omission_rate"] == round(200 / 3, 2)
    assert s["overall_degraded"]["robust"]["omission_rate"] == 0.0
    assert s["overall_degraded"]["base"]["hallucination_rate"] == round(100 / 3, 2)  # d3: insertion rate 2 > 0.2
    assert s["non_speech"]["noise_only"]["robust"] == {"n": 1, "clips_with_words": 1, "inserted_words": 1}
    assert s["non_speech"]["noise_only"]["base"]["clips_with_words"] == 0
    assert s["non_speech"]["silent"]["robust"]["clips_with_words"] == 0


def test_router_shares_and_severity_order():
    s = summarise(CLIPS, SYSTEMS)
    assert s["router"] == {"clean_sent_to_base": 0.5, "degraded_sent_to_robust": 1.0, "non_speech_sent_to_robust": 0.5}
    assert list(s["by_severity"]) == ["low", "mid", "high"]  # not alphabetical
    assert s["by_severity"]["high"]["base"]["wer"] == 100.0


def test_non_speech_only_manifest_gives_valid_json_router_shares():
    # a manifest of noise and silence only (docs/cpu-runs/2026-12-07-nonspeech): no clean, no degraded clips
    s = summarise([c for c in CLIPS if c["scenario"] in ("noise_only", "silent")], SYSTEMS)
    assert s["router"] == {"clean_sent_to_base": None, "degraded_sent_to_robust": None, "non_speech_sent_to_robust": 0.5}
    json.loads(json.dumps(s, allow_nan=False))  # no NaN anywhere
    assert s["non_speech"]["noise_only"]["routed"]["inserted_words"] == 1


def test_markdown_and_plot(tmp_path):
    s = summarise(CLIPS, SYSTEMS)
    text = markdown(s, SYSTEMS)
    lo, hi = s["gain_ci95"]["degraded"]
    assert (f"| degraded, all 54 scenarios | 3 | {100 * 8 / 9:.2f} | {100 * 2 / 9:.2f} | {100 * 2 / 9:.2f} | 75.0% | "
            f"{lo}% .. {hi}% |") in text
    assert text.index("severity low") < text.index("severity mid") < text.index("severity high")
    assert not text.startswith("Decode")  # a summary without its config does not guess the decode
    assert markdown({**s, "config": {"decode": "served"}}, SYSTEMS).startswith(
        "Decode: served, the service's default (greedy + temperature fallback); robust path: no confidence gate.")
    gated = {**s, "config": {"decode": "served"}, "systems": {"robust_logprob_gate": -1.0}}
    assert "robust path: windows below a mean log-prob of -1.0 dropped" in markdown(gated, SYSTEMS)
    assert relative_gain(80.0, 60.0) == 25.0 and relative_gain(0.0, 1.0) == 0.0
    png = plot(s, SYSTEMS, tmp_path / "wer.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bootstrap_interval_of_the_gain():
    s = summarise(CLIPS, SYSTEMS)
    assert s["gain_ci95"]["system"] == "routed"
    # Every resample of d1 (4 words, base 2 errors, routed 0), d2 (4, 4, 2), d3 (1, 2, 0) gains between 50 %
    # (d2 alone) and 100 % (no d2); the point estimate is (8 - 2) / 8 = 75 %.
    lo, hi = s["gain_ci95"]["degraded"]
    assert 50.0 <= lo < 75.0 < hi == 100.0
    assert s["gain_ci95"]["3+ effects"] == [50.0, 50.0]  # one clip: every resample is d2
    # Clips that all halve the errors give exactly 50 % whatever the resample; no change gives exactly 0 %.
    halved = [_clip("a", "please hold the line", "noise", 1, 0.5, "", "please hold"),
              _clip("b", "thank you", "noise", 1, 0.5, "", "thank")]
    assert gain_interval(halved, "robust") == [50.0, 50.0]
    same = [{**c, "robust_hyp": c["base_hyp"]} for c in halved]
    assert gain_interval(same, "robust") == [0.0, 0.0]
    assert gain_interval([], "robust") is None
    assert gain_interval(CLIPS[2:5], "robust", seed=3) == gain_interval(CLIPS[2:5], "robust", seed=3)


class _CountingDecoder:
    batch_size = 4
    options = TranscriptionOptions(temperatures=(0.0,))

    def __init__(self):
        self.calls = 0
        self.transcriber = SimpleNamespace(guards=GuardConfig(), probe=None)

    def __call__(self, audios):
        self.calls += 1
        return [f"hyp {len(a)}" for a in audios]


def test_cached_hypotheses_are_reused_only_for_the_same_model_and_audio(tmp_path):
    clips = [{"id": f"x{i}", "audio": np.full(10 + i, 0.1, dtype=np.float32)} for i in range(3)]
    path = tmp_path / "base_hyps.json"
    decoder = _CountingDecoder()
    first = cached_hyps(path, "whisper-tiny.en", clips, decoder)
    assert first == ["hyp 10", "hyp 11", "hyp 12"] and decoder.calls == 1
    assert cached_hyps(path, "whisper-tiny.en", clips, decoder) == first and decoder.calls == 1
    cached_hyps(path, "whisper-base", clips, decoder)  # another model: decoded again
    assert decoder.calls == 2
    changed = [{**clips[0], "audio": clips[0]["audio"] * 2}] + clips[1:]
    cached_hyps(path, "whisper-base", changed, decoder)  # same ids, other audio: decoded again
    assert decoder.calls == 3
    assert json.loads(path.read_text())["fingerprint"]["base"] == "whisper-base"
    decoder.options = TranscriptionOptions(temperatures=DEFAULT_TEMPERATURES)
    cached_hyps(path, "whisper-base", changed, decoder)  # same model and audio, another decode: decoded again
    assert decoder.calls == 4
    decoder.transcriber.guards.min_avg_logprob = -1.0
    cached_hyps(path, "whisper-base", changed, decoder)  # the robust path's confidence gate: decoded again
    cached_hyps(path, "whisper-base", changed, decoder)
    assert decoder.calls == 5
    decoder.transcriber.probe = SimpleNamespace(threshold=0.7)
    cached_hyps(path, "whisper-base", changed, decoder)  # the base-model no-speech gate: decoded again
    cached_hyps(path, "whisper-base", changed, decoder)
    assert decoder.calls == 6
    assert json.loads(path.read_text())["fingerprint"]["base_no_speech_gate"] == 0.7


def test_served_decode_is_the_services_default_request():
    assert decode_temperatures("served") == TranscriptionOptions().temperatures == DEFAULT_TEMPERATURES
    assert decode_temperatures("greedy") == (0.0,)
