"""What the API layer shares between requests: settings, engine, metrics and routing."""

from __future__ import annotations

import asyncio

import numpy as np

from service.api.protocol import RouterInfo
from service.config import Settings
from service.engines.base import Engine, TranscriptionOptions, TranscriptionResult
from service.errors import InvalidRequest, NotFound, Unavailable
from service.metrics import Metrics
from service.routing import ROUTER_MODES, QualityRouter

#: Names the official clients send by habit; they mean "the served model".
DEFAULT_ALIASES = ("whisper-1",)


class ServiceState:
    def __init__(self, settings: Settings, engine: Engine, metrics: Metrics,
                 router: QualityRouter | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.router = router or QualityRouter.from_bundle(None, robust_loaded=False)
        engine.batch_observer = metrics.batch_size.observe
        self.draining = False
        self.realtime_sessions = 0

    # -- model names ------------------------------------------------------------------------------
    @property
    def model_ids(self) -> list[str]:
        return [self.engine.info.id]

    def resolve_model(self, name: str) -> str:
        if name in self.model_ids or name in DEFAULT_ALIASES:
            return self.engine.info.id
        raise NotFound(f"The model '{name}' does not exist. Served: {', '.join(self.model_ids)} "
                       f"(aliases: {', '.join(DEFAULT_ALIASES)}).", param="model", code="model_not_found")

    @property
    def supports_word_timestamps(self) -> bool:
        return False

    def vocabulary_language(self, language: str | None) -> str | None:
        vocab = getattr(self.engine, "vocabulary", None)
        if vocab is None:
            return language or None
        return vocab.normalise_language(language)

    # -- decoding ---------------------------------------------------------------------------------
    def check_router_mode(self, router_mode: str) -> None:
        """A known mode, and ``robust`` only when the robust model is loaded (else a clear 400)."""
        _check_known_mode(router_mode)
        self._check_robust_loaded(router_mode)

    def _check_robust_loaded(self, router_mode: str) -> None:
        if router_mode == "robust" and "robust" not in self.engine.info.adapters:
            raise InvalidRequest("No robust adapter is loaded; start the service with --checkpoint.",
                                 param="router", code="adapter_not_loaded")

    async def transcribe(self, samples: np.ndarray, options: TranscriptionOptions, router_mode: str
                         ) -> tuple[TranscriptionResult, RouterInfo]:
        _check_known_mode(router_mode)
        retry = {"Retry-After": str(self.settings.retry_after_s)}
        if self.draining:
            raise Unavailable("The service is shutting down.", headers=retry)
        if not self.engine.ready:
            raise Unavailable("The model is still loading.", headers=retry)
        self._check_robust_loaded(router_mode)  # after the readiness checks: a loading engine says 503
        if router_mode == "auto" and self.router.active:
            decision = await asyncio.get_running_loop().run_in_executor(
                None, self.router.decide, router_mode, samples)
            self.metrics.router_p_degraded.observe(decision.p_degraded or 0.0)
        else:
            decision = self.router.decide(router_mode, samples)  # type: ignore[arg-type]
        adapter = decision.adapter
        route = RouterInfo(mode=router_mode, adapter=adapter, p_degraded=decision.p_degraded)
        self.metrics.router_decisions.labels(adapter=adapter, mode=router_mode).inc()
        self.metrics.queue_depth.set(self.engine.queue_depth() + 1)
        try:
            results = await self.engine.transcribe([samples], [_with_adapter(options, adapter)])
        finally:
            self.metrics.queue_depth.set(self.engine.queue_depth())
        return results[0], route

    def observe_transcription(self, result: TranscriptionResult, seconds: float) -> None:
        self.metrics.audio_seconds.labels(adapter=result.adapter).inc(result.duration)
        for reason, key in (("guard", "dropped_windows"), ("no_speech_gate", "no_speech_gated_windows")):
            if result.extras.get(key):
                self.metrics.skipped_windows.labels(adapter=result.adapter, reason=reason).inc(result.extras[key])
        if result.duration > 0:
            self.metrics.rtf.observe(seconds / result.duration)


def _check_known_mode(router_mode: str) -> None:
    if router_mode not in ROUTER_MODES:
        raise InvalidRequest(f"Unknown router mode '{router_mode}'; use auto, base or robust.", param="router")


def _with_adapter(options: TranscriptionOptions, adapter: str) -> TranscriptionOptions:
    from dataclasses import replace

    return replace(options, adapter=adapter)
