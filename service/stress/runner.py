"""The work of one stress job: corrupt, transcribe through the engine on every path, score.

Stress traffic goes through :meth:`ServiceState.transcribe` like any request, so it is batched
with and bounded by the same queue. When that queue is full, a cell waits and retries instead of
failing: a stress job yields to interactive traffic rather than competing with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from service.api.state import ServiceState
from service.engines.base import DEFAULT_TEMPERATURES, TranscriptionOptions, TranscriptionResult
from service.errors import Overloaded, Timeout
from service.scoring import Score, hallucination_flag, omission_flag, score
from service.stress.corrupt import corrupt
from service.stress.plan import severity_key
from service.stress.schemas import PATH_ROUTER_MODES, CellResult, CleanResult, PathResult, StressJob
from service.stress.summary import summarise

_RETRY_START_S = 0.05
_RETRY_MAX_S = 2.0


@dataclass
class RunContext:
    """What a running job needs from the service, and how it reports back."""

    state: ServiceState
    save_clip: Callable[[str, float, bytes], Awaitable[None]]
    on_update: Callable[[], Awaitable[None]]


async def run_job(job: StressJob, samples: np.ndarray, ctx: RunContext) -> None:
    """Fill ``job.clean``, ``job.results`` and ``job.summary``; ``on_update`` is awaited after each step."""
    options = _options(job, ctx.state)
    clean_raw = await _transcribe_paths(samples, job.request.paths, options, ctx.state)
    if job.reference is None:
        job.reference = clean_raw["base"][0].text.strip()
    language = job.request.language or clean_raw["base"][0].language or "en"
    job.clean = CleanResult(paths=_score_paths(clean_raw, job.reference, language))
    await ctx.on_update()

    cells = [(sc, sev) for sc in job.request.scenarios for sev in job.request.severities]
    order = {cell: i for i, cell in enumerate(cells)}
    pending: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
    for cell in cells:
        pending.put_nowait(cell)
    lock = asyncio.Lock()

    async def worker() -> None:
        while not pending.empty():
            scenario, severity = pending.get_nowait()
            clip = await asyncio.to_thread(corrupt, samples, scenario, severity, job.request.seed)
            await ctx.save_clip(scenario, severity, clip.wav)
            raw = await _transcribe_paths(clip.samples, job.request.paths, options, ctx.state)
            result = CellResult(
                scenario=scenario, public_name=clip.record["public_name"], severity=severity,
                clip_url=f"/v1/stress/{job.id}/clips/{scenario}/{severity_key(severity)}.wav",
                simulation=clip.record, paths=_score_paths(raw, job.reference or "", language))
            async with lock:
                job.results.append(result)
                job.results.sort(key=lambda r: order[(r.scenario, r.severity)])
                job.progress.done = len(job.results)
                job.summary = summarise(job)
                await ctx.on_update()

    workers = max(1, min(ctx.state.settings.stress_concurrency, len(cells)))
    async with asyncio.TaskGroup() as group:
        for _ in range(workers):
            group.create_task(worker())


def _options(job: StressJob, state: ServiceState) -> TranscriptionOptions:
    # The job's seed also seeds temperature fallback, so a re-run decodes the same way.
    return TranscriptionOptions(language=job.request.language, temperatures=DEFAULT_TEMPERATURES,
                                beam_size=state.settings.beam_size, best_of=state.settings.best_of,
                                seed=job.request.seed)


async def _transcribe_paths(samples: np.ndarray, paths: list[str], options: TranscriptionOptions,
                            state: ServiceState) -> dict[str, tuple[TranscriptionResult, object, float]]:
    """Every path at once, so the micro-batcher can decode them together."""
    outcomes = await asyncio.gather(*(_transcribe(samples, options, PATH_ROUTER_MODES[p], state)
                                      for p in paths))
    return dict(zip(paths, outcomes))


async def _transcribe(samples: np.ndarray, options: TranscriptionOptions, mode: str, state: ServiceState
                      ) -> tuple[TranscriptionResult, object, float]:
    delay = _RETRY_START_S
    timeout = state.settings.request_timeout_s
    while True:
        started = time.monotonic()
        try:
            result, route = await asyncio.wait_for(state.transcribe(samples, options, mode), timeout=timeout)
        except Overloaded:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)
            continue
        except TimeoutError:
            raise Timeout(f"A stress transcription took longer than {timeout:.0f} s.") from None
        elapsed = time.monotonic() - started
        state.observe_transcription(result, elapsed)
        return result, route, elapsed


def _score_paths(raw: dict[str, tuple[TranscriptionResult, object, float]], reference: str,
                 language: str) -> dict[str, PathResult]:
    out: dict[str, PathResult] = {}
    for path, (result, route, latency) in raw.items():
        text = result.text.strip()
        s = score(reference, text, language=language)
        out[path] = path_result(text, s, route, latency)
    return out


def path_result(text: str, s: Score, route, latency: float) -> PathResult:
    return PathResult(
        text=text, wer=s.wer, cer=s.cer, hits=s.hits, substitutions=s.substitutions, deletions=s.deletions,
        insertions=s.insertions, reference_words=s.reference_words, hypothesis_words=s.hypothesis_words,
        char_edits=s.char_edits, reference_chars=s.reference_chars,
        hallucination=hallucination_flag(s, text), omission=omission_flag(s), router=route,
        latency_s=round(latency, 4))
