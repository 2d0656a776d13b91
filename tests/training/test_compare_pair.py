"""``training.compare_pair``: the WER difference of two variants, paired per clip and pooled over draws."""

from __future__ import annotations

import json

import pytest

from training.compare_pair import difference, grouped, main, paired_clips


def _clip(text, scenario, n_effects, base, routed):
    return {"id": text[:5], "text": text, "scenario": scenario, "n_effects": n_effects, "severity": 0.5,
            "base_hyp": base, "routed_hyp": routed}


TEXTS = [("please hold the line", "crosstalk", 1), ("thank you for calling", "far_field_distortion_stutter", 3),
         ("the conference will begin", "clean", 0)]


def run(*routed: str, base=("please hold", "", "the conference will begin")):
    return [_clip(t, s, n, b, r) for (t, s, n), b, r in zip(TEXTS, base, routed)]


def test_difference_by_hand_and_clean_clips_left_out():
    a = run("please hold the line", "thank you", "the conference will begin")  # 0 + 2 errors
    b = run("please hold", "thank you for", "the conference will begin")       # 2 + 1 errors
    clips = paired_clips("std", a, b)
    assert len(clips) == 2  # the clean clip is not a degraded one
    d = difference("all", clips)
    assert (d.base_wer, d.a_wer, d.b_wer, d.a_minus_b) == (75.0, 25.0, 37.5, -12.5)  # 6, 2, 3 errors of 8 words
    assert (d.a_gain, d.b_gain) == (66.7, 50.0)
    assert d.interval[0] <= d.a_minus_b <= d.interval[1]
    groups = {r.group: r for r in grouped(clips + paired_clips("rep", a, b), ["crosstalk"])}
    assert groups["with crosstalk"].a_minus_b == -50.0 and groups["without crosstalk"].a_minus_b == 25.0
    assert groups["3+ effects"].n == 2 and groups["draw std"].n == 2 and groups["all degraded"].n == 4


def test_identical_variants_differ_by_zero_and_other_clips_are_refused():
    a = run("please hold the line", "thank you", "the conference will begin")
    d = difference("all", paired_clips("std", a, a))
    assert d.a_minus_b == 0.0 and d.interval == (0.0, 0.0)
    shifted = [dict(c, severity=0.6) for c in a]
    with pytest.raises(ValueError, match="not the same evaluation set"):
        paired_clips("std", a, shifted)


def test_cli_pools_draws_and_checks_effect_names(tmp_path, capsys):
    dirs = {}
    for name, clips in (("a", run("please hold the line", "thank you", "x")), ("b", run("", "", "x"))):
        dirs[name] = tmp_path / name
        dirs[name].mkdir()
        (dirs[name] / "clips.jsonl").write_text("".join(json.dumps(c) + "\n" for c in clips))
    argv = ["--draw", str(dirs["a"]), str(dirs["b"]), "--draw", str(dirs["a"]), str(dirs["b"]),
            "--names", "new", "old", "--split-effect", "recording", "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    results = json.loads((tmp_path / "o" / "pair.json").read_text())
    assert results[0]["group"] == "all degraded" and results[0]["n"] == 4 and results[0]["a_minus_b"] == -75.0
    assert "| with crosstalk | 2 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--draw", str(dirs["a"]), str(dirs["b"]), "--split-effect", "babble"])
