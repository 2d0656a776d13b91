"""Stress jobs on disk: ``<home>/stress/<job id>/job.json`` and ``clips/<scenario>/<severity>.wav``.

Every file is written to a temporary name in the same folder and renamed into place, so a reader
(or a restart) sees either the previous complete version or the new one, never half a file. A
clip is written before the result that names it, so a listed result always has its clip.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from pydantic import ValidationError

from service.errors import StorageFull
from service.stress.plan import severity_key
from service.stress.schemas import StressJob

log = logging.getLogger(__name__)

JOB_ID_PATTERN = re.compile(r"^stress_[0-9a-f]{32}$")
_JOB_FILE = "job.json"
_REPORT_FILE = "report.html"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary sibling, fsync, then rename.

    A full disk raises :class:`StorageFull` (a clear 507 for the job or request) and leaves no
    temporary file behind; ``path`` keeps its previous complete version.
    """
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(f"The disk is full: could not write {path.name} of a stress job. "
                              "Free space under MEGAASR_HOME and retry.") from exc
        raise
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


class JobStore:
    """Files of stress jobs under one root folder; ids are checked so no path escapes the root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def job_dir(self, job_id: str) -> Path:
        if not JOB_ID_PATTERN.match(job_id):
            raise ValueError(f"not a stress job id: {job_id!r}")
        return self.root / job_id

    def clip_path(self, job_id: str, scenario: str, severity: float) -> Path:
        return self.job_dir(job_id) / "clips" / scenario / f"{severity_key(severity)}.wav"

    def report_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / _REPORT_FILE

    def save_job(self, job_id: str, data: bytes) -> None:
        """``data`` is a serialised :class:`StressJob`."""
        atomic_write(self.job_dir(job_id) / _JOB_FILE, data)

    def save_clip(self, job_id: str, scenario: str, severity: float, wav: bytes) -> None:
        atomic_write(self.clip_path(job_id, scenario, severity), wav)

    def save_report(self, job_id: str, html: str) -> None:
        atomic_write(self.report_path(job_id), html.encode())

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def load_all(self) -> list[StressJob]:
        """Every readable job; leftovers of interrupted writes and unreadable folders are removed."""
        if not self.root.is_dir():
            return []
        jobs: list[StressJob] = []
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir() or not JOB_ID_PATTERN.match(folder.name):
                continue
            for tmp in folder.rglob(".*.tmp"):
                tmp.unlink(missing_ok=True)
            try:
                jobs.append(StressJob.model_validate_json((folder / _JOB_FILE).read_bytes()))
            except (OSError, ValidationError, ValueError) as exc:
                log.warning("removing unreadable stress job %s: %s", folder.name, exc)
                shutil.rmtree(folder, ignore_errors=True)
        return jobs
