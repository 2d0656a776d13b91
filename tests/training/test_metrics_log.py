"""The per-step metrics log: appended record by record, read back in order."""

from __future__ import annotations

from pathlib import Path

from training.metrics_log import append_record, read_records


def test_records_come_back_in_order_and_a_missing_log_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    assert read_records(path) == []
    append_record(path, {"step": 1, "loss": 2.5})
    append_record(path, {"step": 2, "loss": 1.25, "lr": {"encoder": 1e-3}})
    assert read_records(path) == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 1.25, "lr": {"encoder": 1e-3}}]
    assert path.read_text().count("\n") == 2  # one line per record, each complete on disk
