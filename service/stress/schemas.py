"""Pydantic models of a stress job: what the API answers and what is persisted on disk.

One model serves both purposes so that a job read back after a restart is exactly what the
API showed before it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service.api.protocol import RouterInfo

JobStatus = Literal["queued", "running", "completed", "cancelled", "failed", "interrupted"]
ACTIVE_STATUSES: frozenset[str] = frozenset({"queued", "running"})
#: Decoding paths, in report order. ``routed`` is the router's own choice (request mode ``auto``).
PathName = Literal["base", "robust", "routed"]
PATH_ROUTER_MODES: dict[str, str] = {"base": "base", "robust": "robust", "routed": "auto"}


class PathResult(BaseModel):
    """One decoding path's transcript of one clip, scored against the job's reference."""

    text: str
    wer: float
    cer: float
    hits: int
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int
    hypothesis_words: int
    char_edits: int
    reference_chars: int
    hallucination: bool = Field(description="Insertion rate over the bound, or a repeated n-gram.")
    omission: bool = Field(description="Deletion rate over the bound.")
    router: RouterInfo
    latency_s: float = Field(description="Wall time of the request, queueing included.")


class CellResult(BaseModel):
    """One scenario at one severity: the corruption used and every path's result."""

    scenario: str
    public_name: str
    severity: float
    clip_url: str
    simulation: dict = Field(description="Every parameter the simulator used (simulation record).")
    paths: dict[str, PathResult]


class CleanResult(BaseModel):
    """The uncorrupted audio through every path: the baseline each cell is compared with."""

    paths: dict[str, PathResult]


class ScenarioSummary(BaseModel):
    """A scenario's errors micro-averaged over its severities (Σ edits / Σ reference words)."""

    scenario: str
    public_name: str
    group: str
    severities: list[float]
    wer: dict[str, float]
    cer: dict[str, float]
    hallucinations: dict[str, int] = Field(description="Cells flagged, per path.")
    omissions: dict[str, int] = Field(description="Cells flagged, per path.")


class Summary(BaseModel):
    """Scenarios ranked worst first by ``ranked_by`` path WER."""

    ranked_by: str
    clean_wer: dict[str, float]
    scenarios: list[ScenarioSummary]


class Progress(BaseModel):
    done: int
    total: int


class StressRequestEcho(BaseModel):
    """The validated request, as the job runs it."""

    scenarios: list[str]
    severities: list[float]
    seed: int
    model: str
    router: Literal["auto", "base", "robust"]
    paths: list[str]
    language: str | None
    audio_duration_s: float
    filename: str | None
    reference_source: Literal["user", "clean_transcript"] = Field(
        description="'clean_transcript': no reference was given, so the clean audio's base transcript is it.")


class StressJob(BaseModel):
    """A stress job's full state: status, progress, results so far and the ranking."""

    id: str
    object: Literal["stress.job"] = "stress.job"
    status: JobStatus
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    progress: Progress
    request: StressRequestEcho
    reference: str | None = None
    clean: CleanResult | None = None
    results: list[CellResult] = Field(default_factory=list)
    summary: Summary | None = None
    report_url: str

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class StressJobCreated(BaseModel):
    """The 202 answer to ``POST /v1/stress``."""

    id: str
    object: Literal["stress.job"] = "stress.job"
    status: JobStatus
    progress: Progress
    status_url: str
    report_url: str


class StressJobDeleted(BaseModel):
    id: str
    object: Literal["stress.job.deleted"] = "stress.job.deleted"
    deleted: bool = True


class ScenarioList(BaseModel):
    object: Literal["list"] = "list"
    groups: dict[str, list[str]]
    data: list[dict]
