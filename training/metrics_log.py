"""Training metrics as JSON lines: one record per step, each appended and closed at once.

Why open per record: a run killed mid-phase (CPU session ending, OOM, preemption) leaves every logged step
complete on disk, with no long-lived file handle to leak when a step raises.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line to ``path``."""
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record of ``path`` in file order; [] when it does not exist yet."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
