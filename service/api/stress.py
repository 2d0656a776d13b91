"""Stress jobs (``/v1/stress``) and the simulator as a service (``/v1/audio/corrupt``).

A stress job corrupts the user's audio with chosen scenarios at chosen severities, transcribes
every clip on each available decoding path and scores it; see docs/stress.md. Every field is
checked before the job is admitted, so a bad request is a 400 and never a failed job.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from service.api.protocol import ErrorResponse
from service.api.state import ServiceState
from service.audio import decode_audio
from service.errors import InvalidRequest, Unavailable
from service.stress.corrupt import corrupt
from service.stress.jobs import StressJobs
from service.stress.plan import (
    check_job_size,
    check_seed,
    parse_scenarios,
    parse_severities,
    scenario_for_path,
)
from service.stress.schemas import (
    ScenarioList,
    StressJob,
    StressJobCreated,
    StressJobDeleted,
    StressRequestEcho,
)
from simulation import list_scenarios
from simulation.scenarios import GROUPS, group_names

router = APIRouter(tags=["stress"])

_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 429, 503)}
SIMULATION_HEADER = "X-Megaasr-Simulation"


def _jobs(request: Request) -> StressJobs:
    jobs: StressJobs | None = getattr(request.app.state, "stress_jobs", None)
    if jobs is None:
        raise Unavailable("Stress jobs are not available until the service has started.",
                          headers={"Retry-After": "5"})
    return jobs


def _paths(state: ServiceState, router_mode: str) -> list[str]:
    """Which decoding paths a job compares: base always; robust and routed where an adapter is loaded."""
    state.check_router_mode(router_mode)
    has_robust = "robust" in state.engine.info.adapters
    if router_mode == "base" or not has_robust:
        return ["base"]
    return ["base", "robust"] if router_mode == "robust" else ["base", "robust", "routed"]


@router.get("/v1/stress/scenarios", response_model=ScenarioList,
            summary="The 54 scenarios with chains and parameter ranges")
async def stress_scenarios() -> ScenarioList:
    groups = {g: group_names(g) for g in GROUPS}
    return ScenarioList(groups=groups, data=list_scenarios("all"))


@router.post("/v1/stress", status_code=202, response_model=StressJobCreated, responses=_ERRORS,
             summary="Start a stress job on your own audio")
async def create_stress_job(
    request: Request,
    file: Annotated[UploadFile, File(description="Audio file: wav, flac, ogg/opus or mp3.")],
    reference: Annotated[str | None, Form(description="What is said; default: the clean transcript.")] = None,
    scenarios: Annotated[list[str] | None,
                         Form(description="Names, aliases or a group; comma list or repeated.")] = None,
    severities: Annotated[list[str] | None,
                          Form(description="Values in [0, 1]; default 0.25,0.5,0.75,1.0.")] = None,
    seed: Annotated[int, Form(description="Seeds the simulator and decoding fallback.")] = 0,
    model: Annotated[str | None, Form(description="Served model id; default the served model.")] = None,
    router_mode: Annotated[str, Form(alias="router", description="auto (all paths), base, robust.")] = "auto",
    language: Annotated[str | None, Form(description="ISO-639-1 code; detected when omitted.")] = None,
) -> JSONResponse:
    state: ServiceState = request.app.state.service
    jobs = _jobs(request)
    settings = state.settings
    model_id = state.resolve_model(model) if model else state.engine.info.id
    paths = _paths(state, router_mode)
    names = parse_scenarios(scenarios)
    levels = parse_severities(severities)
    check_job_size(names, levels, settings.stress_max_cells)
    check_seed(seed)
    try:
        lang = state.vocabulary_language(language)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="language", code="unsupported_language") from None
    data = await file.read()
    limit = min(settings.max_duration_s, settings.stress_max_audio_s)
    audio = await asyncio.to_thread(decode_audio, data, max_duration_s=limit)
    text = reference.strip() if reference and reference.strip() else None
    echo = StressRequestEcho(scenarios=names, severities=levels, seed=seed, model=model_id,
                             router=router_mode, paths=paths, language=lang,
                             audio_duration_s=round(audio.duration, 3),
                             filename=file.filename, reference_source="user" if text else "clean_transcript")
    job = jobs.submit(echo, text, audio.samples)
    body = StressJobCreated(id=job.id, status=job.status, progress=job.progress,
                            status_url=f"/v1/stress/{job.id}", report_url=job.report_url)
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": body.status_url})


@router.get("/v1/stress/{job_id}", response_model=StressJob, responses=_ERRORS,
            summary="Status, progress and results so far")
async def get_stress_job(job_id: str, request: Request) -> JSONResponse:
    return JSONResponse(_jobs(request).get(job_id).model_dump(mode="json"))


@router.delete("/v1/stress/{job_id}", response_model=StressJob | StressJobDeleted, responses=_ERRORS,
               summary="Cancel a running job (results so far are kept), or delete a finished one")
async def delete_stress_job(job_id: str, request: Request) -> JSONResponse:
    jobs = _jobs(request)
    job = jobs.get(job_id)
    if job.active:
        job = await jobs.cancel(job_id)
        return JSONResponse(job.model_dump(mode="json"))
    await jobs.delete(job_id)
    return JSONResponse(StressJobDeleted(id=job_id).model_dump())


@router.get("/v1/stress/{job_id}/report.html", response_class=HTMLResponse, responses=_ERRORS,
            summary="HTML report with a per-scenario chart")
async def stress_report(job_id: str, request: Request) -> HTMLResponse:
    return HTMLResponse(await _jobs(request).report(job_id))


@router.get("/v1/stress/{job_id}/clips/{scenario}/{severity}.wav", response_class=FileResponse,
            responses=_ERRORS, summary="Download one corrupted clip (16 kHz 16-bit WAV)")
async def stress_clip(job_id: str, scenario: str, severity: str, request: Request) -> FileResponse:
    name = scenario_for_path(scenario)
    level = parse_severities([severity])
    if len(level) != 1:
        raise InvalidRequest("Give one severity.", param="severity")
    path = _jobs(request).clip_path(job_id, name, level[0])
    return FileResponse(path, media_type="audio/wav", filename=f"{job_id}_{name}_{severity}.wav")


@router.post("/v1/audio/corrupt", response_class=Response,
             responses={200: {"content": {"audio/wav": {}}}, **_ERRORS},
             summary="Corrupt audio with one scenario (deterministic); parameters in X-Megaasr-Simulation")
async def corrupt_audio(
    request: Request,
    file: Annotated[UploadFile, File(description="Audio file: wav, flac, ogg/opus or mp3.")],
    scenario: Annotated[str, Form(description="One scenario name or alias (see /v1/stress/scenarios).")],
    severity: Annotated[float | None, Form(description="In [0, 1]; drawn from the seed if omitted.")] = None,
    seed: Annotated[int, Form(description="Same audio, scenario, severity and seed: the same bytes.")] = 0,
) -> Response:
    state: ServiceState = request.app.state.service
    if "," in scenario:
        raise InvalidRequest("Give exactly one scenario.", param="scenario", code="unknown_scenario")
    name = parse_scenarios([scenario])
    if len(name) != 1:
        raise InvalidRequest(f"'{scenario}' names {len(name)} scenarios; give exactly one.", param="scenario",
                             code="unknown_scenario")
    if severity is not None and (not math.isfinite(severity) or not 0.0 <= severity <= 1.0):
        raise InvalidRequest(f"Severity {severity} is outside [0, 1].", param="severity",
                             code="invalid_severity")
    check_seed(seed)
    data = await file.read()
    audio = await asyncio.to_thread(decode_audio, data, max_duration_s=state.settings.max_duration_s)
    clip = await asyncio.to_thread(corrupt, audio.samples, name[0], severity, seed)
    header = json.dumps(clip.record, separators=(",", ":"), sort_keys=True)
    disposition = f'attachment; filename="corrupted_{name[0]}_{clip.record["global_severity"]:g}_{seed}.wav"'
    return Response(clip.wav, media_type="audio/wav",
                    headers={SIMULATION_HEADER: header, "Content-Disposition": disposition})
