"""A short run of the loopback load test (the committed figures come from the full run; see
docs/reliability.md). Fails on any 5xx, lost request, missing Retry-After or unfinished job/utterance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reliability.loadtest import main

pytestmark = pytest.mark.slow


def test_short_mixed_load_loses_nothing(tmp_path: Path, tiny_en_dir: Path) -> None:
    out = tmp_path / "load"
    code = main(["--duration", "25", "--warmup", "10", "--idle", "10", "--burst-every", "10",
                 "--model", str(tiny_en_dir), "--rss-tolerance-mb", "1e9", "--out", str(out)])
    summary = json.loads(out.with_suffix(".json").read_text())["summary"]
    assert summary["server_errors_5xx"] == 0 and summary["lost"] == 0
    assert summary["missing_retry_after"] == 0 and summary["unfinished_stress_or_ws"] == 0
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert code == 0, summary["failures"]
