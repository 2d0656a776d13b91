"""Training metrics as JSON lines: one record per step, each appended and closed at once.

Why open per record: a run killed mid-phase (CPU session ending, OOM, preemption) leaves every logged step
complete on disk, with no long-lived file handle to leak when a step raises. Read back with
:func:`training.data.read_manifest` (the same JSON-lines format as the manifests).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line to ``path``."""
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
