"""The per-step metrics log: appended record by record, read back in order."""

from __future__ import annotations

from pathlib import Path

from training.data import read_manifest
from training.metrics_log import append_record


def test_records_are_appended_one_line_each_and_read_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"  # created by the first append
    append_record(path, {"step": 1, "loss": 2.5})
    append_record(path, {"step": 2, "loss": 1.25, "lr": {"encoder": 1e-3}})
    assert read_manifest(path) == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 1.25, "lr": {"encoder": 1e-3}}]
    assert path.read_text().count("\n") == 2  # one line per record, each complete on disk
