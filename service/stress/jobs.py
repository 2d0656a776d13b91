"""The stress job manager: admission, background tasks, cancellation, persistence and retention.

Jobs run as asyncio tasks owned by the app, not by a request, so a client that disconnects does
not stop its job. What is bounded, and by which setting: jobs queued or running at once
(``stress_max_jobs``, else 429), cells per job (``stress_max_cells``), cells in flight per job
(``stress_concurrency``), how long and how many finished jobs are kept (``stress_retention_s``,
``stress_max_stored_jobs``).

On start, jobs found on disk that were still running when the process stopped are marked
``interrupted``: their partial results stay readable but are never shown as finished.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from service.api.state import ServiceState
from service.errors import NotFound, Overloaded, ServiceError
from service.stress.report import render_report
from service.stress.runner import RunContext, run_job
from service.stress.schemas import Progress, StressJob, StressRequestEcho
from service.stress.store import JOB_ID_PATTERN, JobStore

log = logging.getLogger(__name__)

_DEFAULT_RETRY_AFTER_S = 30
_MAX_RETRY_AFTER_S = 3600
_MAX_SWEEP_INTERVAL_S = 60.0


class StressJobs:
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.settings = state.settings
        self.store = JobStore(self.settings.home / "stress")
        self._jobs: dict[str, StressJob] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._stop_reason: dict[str, str] = {}
        self._sweeper: asyncio.Task | None = None
        # Snapshots are serialised on the loop and written in threads; a sequence number per job
        # makes sure a slow, older write can never land after a newer one.
        self._seq = 0
        self._written: dict[str, int] = {}
        self._write_lock = threading.Lock()

    # -- lifetime ---------------------------------------------------------------------------------
    async def start(self) -> None:
        for job in await asyncio.to_thread(self.store.load_all):
            if job.active:
                job.status = "interrupted"
                job.finished_at = job.finished_at or time.time()
                job.error = "The service stopped before this job finished; the results are partial."
                await self._persist(job)
            self._jobs[job.id] = job
        await self.sweep()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(), name="stress-sweeper")

    async def close(self) -> None:
        """Stop every running job as ``interrupted`` (persisted), then the sweeper."""
        for job_id, task in list(self._tasks.items()):
            self._stop_reason[job_id] = "interrupted"
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)

    # -- admission --------------------------------------------------------------------------------
    def submit(self, request: StressRequestEcho, reference: str | None, samples: np.ndarray) -> StressJob:
        """Admit a validated job and start it; 429 with Retry-After when the job slots are full."""
        active = [j for j in self._jobs.values() if j.active]
        if len(active) >= self.settings.stress_max_jobs:
            raise Overloaded(
                f"{len(active)} stress jobs are already running (limit {self.settings.stress_max_jobs}, "
                "stress_max_jobs); retry when one finishes.", code="too_many_jobs",
                headers={"Retry-After": str(self._retry_after(active))})
        job_id = f"stress_{uuid.uuid4().hex}"
        total = len(request.scenarios) * len(request.severities)
        job = StressJob(id=job_id, status="queued", created_at=time.time(),
                        progress=Progress(done=0, total=total), request=request, reference=reference,
                        report_url=f"/v1/stress/{job_id}/report.html")
        self._jobs[job_id] = job
        self._tasks[job_id] = asyncio.get_running_loop().create_task(self._run(job, samples), name=job_id)
        return job

    def _retry_after(self, active: list[StressJob]) -> int:
        """Seconds until the soonest active job should end, from its progress so far."""
        now, estimates = time.time(), []
        for job in active:
            if job.started_at is not None and job.progress.done > 0:
                elapsed = now - job.started_at
                estimates.append(elapsed / job.progress.done * (job.progress.total - job.progress.done))
        if not estimates:
            return _DEFAULT_RETRY_AFTER_S
        return int(min(max(1.0, min(estimates)), _MAX_RETRY_AFTER_S)) or 1

    # -- queries and cancellation -----------------------------------------------------------------
    def get(self, job_id: str) -> StressJob:
        job = self._jobs.get(job_id) if JOB_ID_PATTERN.match(job_id) else None
        if job is None:
            raise NotFound(f"No stress job '{job_id}' (finished jobs are kept for "
                           f"{self.settings.stress_retention_s:.0f} s).", param="id", code="job_not_found")
        return job

    async def cancel(self, job_id: str) -> StressJob:
        """Stop an active job, keeping its partial results."""
        job = self.get(job_id)
        task = self._tasks.get(job_id)
        if task is not None and not task.done():
            self._stop_reason[job_id] = "cancelled"
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return job

    async def delete(self, job_id: str) -> None:
        """Remove a finished job and its files."""
        self.get(job_id)
        self._jobs.pop(job_id, None)
        with self._write_lock:
            self._written[job_id] = 2**63  # any late snapshot write is now stale
        await asyncio.to_thread(self.store.delete, job_id)

    def clip_path(self, job_id: str, scenario: str, severity: float) -> Path:
        job = self.get(job_id)
        if not any(c.scenario == scenario and c.severity == severity for c in job.results):
            raise NotFound(f"Job {job_id} has no clip for {scenario} at severity {severity:g} (yet).",
                           param="severity", code="clip_not_found")
        path = self.store.clip_path(job_id, scenario, severity)
        if not path.is_file():
            raise NotFound("The clip file is gone (deleted or expired).", code="clip_not_found")
        return path

    async def report(self, job_id: str) -> str:
        """The HTML report; a finished job's report is rendered once and kept with the job."""
        job = self.get(job_id)
        if job.active:
            return await asyncio.to_thread(render_report, job.model_copy(deep=True))
        cached = self.store.report_path(job_id)
        if cached.is_file():
            return await asyncio.to_thread(cached.read_text)
        html = await asyncio.to_thread(render_report, job)
        await asyncio.to_thread(self.store.save_report, job_id, html)
        return html

    # -- running ----------------------------------------------------------------------------------
    async def _run(self, job: StressJob, samples: np.ndarray) -> None:
        metrics = self.state.metrics

        async def save_clip(scenario: str, severity: float, wav: bytes) -> None:
            await asyncio.to_thread(self.store.save_clip, job.id, scenario, severity, wav)

        async def on_update() -> None:
            if job.summary is not None:
                for row in job.summary.scenarios:
                    for path, wer in row.wer.items():
                        metrics.stress_wer.labels(scenario=row.scenario, path=path).set(wer)
            await self._persist(job)

        try:
            job.status, job.started_at = "running", time.time()
            await self._persist(job)
            await run_job(job, samples, RunContext(self.state, save_clip, on_update))
            final, error = "completed", None
        except asyncio.CancelledError:
            final = self._stop_reason.pop(job.id, "interrupted")
            error = ("Cancelled by the client; the results are partial." if final == "cancelled" else
                     "The service stopped before this job finished; the results are partial.")
        except Exception as exc:
            cause = _first_cause(exc)
            final = "failed"
            if isinstance(cause, ServiceError):
                error = cause.message
            else:
                log.error("stress job %s failed", job.id, exc_info=cause)
                error = f"Internal error: {type(cause).__name__}."
        job.status, job.error, job.finished_at = final, error, time.time()
        job.progress.done = len(job.results)
        metrics.stress_jobs.labels(state=final).inc()
        self._tasks.pop(job.id, None)
        await self._persist(job)
        await self.sweep()

    async def _persist(self, job: StressJob) -> None:
        self._seq += 1
        seq, data = self._seq, job.model_dump_json().encode()
        await asyncio.to_thread(self._write_snapshot, job.id, seq, data)

    def _write_snapshot(self, job_id: str, seq: int, data: bytes) -> None:
        with self._write_lock:
            if seq <= self._written.get(job_id, 0):
                return
            self.store.save_job(job_id, data)
            self._written[job_id] = seq

    # -- retention --------------------------------------------------------------------------------
    async def sweep(self) -> None:
        """Delete finished jobs past retention, then the oldest finished ones over the count limit."""
        now = time.time()
        finished = sorted((j for j in self._jobs.values() if not j.active), key=lambda j: j.finished_at or 0)
        expired = [j for j in finished if (j.finished_at or 0) + self.settings.stress_retention_s < now]
        kept = [j for j in finished if j not in expired]
        expired += kept[: max(0, len(kept) - self.settings.stress_max_stored_jobs)]
        for job in expired:
            await self.delete(job.id)

    async def _sweep_forever(self) -> None:
        interval = min(_MAX_SWEEP_INTERVAL_S, max(1.0, self.settings.stress_retention_s / 2))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except Exception:  # a full disk must not stop retention for good
                log.exception("stress retention sweep failed")


def _first_cause(exc: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups from the job's task group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
