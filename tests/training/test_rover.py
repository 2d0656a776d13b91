"""ROVER over eval runs (training.rover): the run merge's checks and the CLI end to end."""

from __future__ import annotations

import json

import pytest

from training.rover import combine_runs, main


def _run(hyps: list[str], base: list[str] | None = None) -> list[dict]:
    texts = ["press one for sales", "goodbye"]
    return [{"id": f"c{i}", "text": t, "scenario": "noise", "n_effects": 1, "severity": 0.5,
             "base_hyp": (base or ["press", ""])[i], "robust_hyp": h, "routed_hyp": h, "p_dirty": 0.9,
             "routed_robust": True} for i, (t, h) in enumerate(zip(texts, hyps))]


def test_combine_runs_votes_each_clip_and_keeps_the_base() -> None:
    runs = [_run(["press one for males", "goodbye"]), _run(["press one for sales", ""]),
            _run(["dress one for sales", "goodbye"])]
    clips = combine_runs(runs)
    assert [c["routed_hyp"] for c in clips] == ["press one for sales", "goodbye"]
    assert [c["robust_hyp"] for c in clips] == ["press one for sales", "goodbye"]
    assert [c["base_hyp"] for c in clips] == ["press", ""]
    assert "p_dirty" not in clips[0] and clips[0]["routed_robust"] is True


def test_combine_runs_refuses_runs_on_other_clips_or_another_base() -> None:
    other = _run(["a", "b"])
    other[1]["text"] = "hello"
    with pytest.raises(ValueError, match="clip 1 differs"):
        combine_runs([_run(["a", "b"]), other])
    with pytest.raises(ValueError, match="another base"):
        combine_runs([_run(["a", "b"]), _run(["a", "b"], base=["x", ""])])
    with pytest.raises(ValueError, match="holds 1 clips"):
        combine_runs([_run(["a", "b"]), _run(["a", "b"])[:1]])
    with pytest.raises(ValueError, match="at least two"):
        combine_runs([_run(["a", "b"])])


def test_cli_writes_a_summary_of_the_voted_runs(tmp_path, capsys) -> None:
    members = []
    for name, hyps in (("a", ["press one for males", "goodbye"]), ("b", ["press one for sales", ""]),
                       ("c", ["dress one for sales", "goodbye"])):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "clips.jsonl").write_text("".join(json.dumps(c) + "\n" for c in _run(hyps)))
        members += ["--member", f"{name}={folder}"]
    assert main(members + ["--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    # voted: both clips right (0 of 5 words wrong); base: "press" for 4 words, "" for 1 word -> 4 of 5 wrong
    assert summary["overall_degraded"]["routed"]["wer"] == 0.0
    assert summary["overall_degraded"]["base"]["wer"] == 80.0
    assert summary["rover"]["pivot"] == "medoid" and list(summary["rover"]["members"]) == ["a", "b", "c"]
    assert "ROVER of a, b, c" in (tmp_path / "out" / "summary.md").read_text()


def test_cli_refuses_bad_members(tmp_path) -> None:
    with pytest.raises(SystemExit):
        main(["--member", "nodir", "--member", f"b={tmp_path}", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        main(["--member", f"a={tmp_path}", "--member", f"b={tmp_path}", "--out", str(tmp_path / "o")])
