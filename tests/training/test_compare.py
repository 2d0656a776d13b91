"""``training.compare``: runs are aligned clip by clip and scored against the reference run's base model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.compare import compare_run, main, markdown_table, parse_run


def _clip(text, scenario, n_effects, base, robust=None, severity=0.5):
    c = {"id": text[:5], "text": text, "scenario": scenario, "n_effects": n_effects, "severity": severity,
         "base_hyp": base}
    if robust is not None:
        c["robust_hyp"] = robust
    return c


REFERENCE = [
    _clip("please hold the line", "clean", 0, "please hold the line", severity=0.0),
    _clip("please hold the line", "noise", 1, "please hold"),             # base: 2 errors of 4
    _clip("thank you for calling", "noise_stutter_far_field", 3, ""),     # base: 4 errors of 4
]


def test_gain_is_over_the_reference_base_and_the_system_is_picked_by_preference():
    other = [dict(c, robust_hyp=h) for c, h in zip(REFERENCE, ["please hold the line", "please hold the line",
                                                                 "thank you"])]
    row = compare_run("variant", REFERENCE, other)
    assert row.system == "robust"  # no routed column: the robust one
    assert row.wer == {"clean": 0.0, "degraded": 25.0, "3+ effects": 50.0}  # 2 errors of 8; 2 of 4
    assert row.gain == {"clean": 0.0, "degraded": 66.7, "3+ effects": 50.0}  # (6 - 2) / 6; (4 - 2) / 4
    assert row.interval["3+ effects"] == [50.0, 50.0] and row.interval["clean"] is None
    # Another base model's run is compared through its base column against the reference's base.
    bigger = [dict(c, base_hyp=h) for c, h in zip(REFERENCE, ["please hold the line", "please hold the line", ""])]
    assert compare_run("bigger", REFERENCE, bigger, "base").gain["degraded"] == round(100 * 2 / 6, 1)
    assert "| variant (robust) | 0.00 | 25.00 | 66.7% [" in markdown_table([row], 15)


def test_runs_on_other_clips_or_without_the_system_are_refused():
    shifted = [dict(c, severity=c["severity"] + 0.1) for c in REFERENCE]
    with pytest.raises(ValueError, match="not the same evaluation set"):
        compare_run("x", REFERENCE, shifted, "base")
    with pytest.raises(ValueError, match="not the same evaluation set"):
        compare_run("x", REFERENCE, REFERENCE[:2], "base")
    with pytest.raises(ValueError, match="no 'routed' hypotheses"):
        compare_run("x", REFERENCE, REFERENCE, "routed")


def test_cli_writes_table_json_and_plot(tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    for d, clips in ((ref_dir, REFERENCE), (run_dir, [dict(c, robust_hyp=c["text"]) for c in REFERENCE])):
        d.mkdir()
        (d / "clips.jsonl").write_text("".join(json.dumps(c) + "\n" for c in clips))
    assert main(["--reference", str(ref_dir), "--run", f"perfect={run_dir}:robust", "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "compare.json").read_text())[0]["gain"]["degraded"] == 100.0
    assert (tmp_path / "o" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert parse_run("a=b/c:base") == ("a", Path("b/c"), "base")
