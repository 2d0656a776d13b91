"""The FastAPI application: wiring of routes, guards, error mapping and the engine's lifetime."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response

from service.api.errors import install_error_handlers
from service.api.middleware import BearerAuthMiddleware, BodyLimitMiddleware
from service.api.openapi import install_openapi
from service.api.protocol import ModelCard, ModelList
from service.api.realtime import router as realtime_router
from service.api.state import DEFAULT_ALIASES, ServiceState
from service.api.stress import router as stress_router
from service.api.transcriptions import router as transcription_router
from service.config import Settings
from service.engines.base import Engine
from service.metrics import Metrics
from service.routing import QualityRouter
from service.stress.jobs import StressJobs

log = logging.getLogger(__name__)
_DEMO_PAGE = Path(__file__).resolve().parent.parent / "web" / "demo.html"


def _load_router(settings: Settings, engine: Engine) -> QualityRouter:
    """The ``--checkpoint`` bundle's router, active only when the engine serves the robust model."""
    from service.models.bundle import load_bundle

    bundle = load_bundle(settings.checkpoint) if settings.checkpoint is not None else None
    return QualityRouter.from_bundle(bundle, robust_loaded="robust" in engine.info.adapters)


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """Build the app. Without ``engine``, one is built from ``settings`` when the app starts."""
    metrics = Metrics()
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        eng = engine
        if eng is None:
            from service.engines.factory import build_engine
            from service.engines.supervisor import SupervisedEngine

            eng = SupervisedEngine(build_engine(settings), settings, on_ready_change=metrics.engine_ready.set)
        state = ServiceState(settings, eng, metrics)
        app.state.service = state
        try:
            await eng.start()
        except Exception as exc:  # kept for lifecycle.serve's one-line exit message (the traceback is logged)
            app.state.start_error = exc
            raise
        metrics.engine_ready.set(1)
        state.router = _load_router(settings, eng)
        log.info("router: %s", state.router.status)
        load = getattr(eng, "load_seconds", None)
        if load is not None:
            metrics.model_load_seconds.labels(model=eng.info.id).set(load)
        app.state.stress_jobs = stress_jobs = StressJobs(state)
        await stress_jobs.start()
        try:
            yield
        finally:
            state.draining = True
            metrics.engine_ready.set(0)
            await stress_jobs.close()
            await eng.close()

    app = FastAPI(title="Mega-ASR", version="0.1.0", lifespan=lifespan,
                  description="Speech recognition that keeps working in the wild. OpenAI-compatible.")
    install_error_handlers(app)
    install_openapi(app)
    app.include_router(transcription_router)
    app.include_router(stress_router)
    app.include_router(realtime_router)

    @app.get("/demo", summary="Browser demo: microphone to live text", response_class=HTMLResponse,
             include_in_schema=False)
    async def demo() -> HTMLResponse:
        """A static page (no data, no secrets) that streams the microphone to ``/v1/realtime``.

        It is open like ``/health`` so a browser can load it; the websocket it opens still needs the
        API key when one is configured (the page sends it as the OpenAI subprotocol token).
        """
        return HTMLResponse(_DEMO_PAGE.read_text(encoding="utf-8"))

    @app.get("/health", summary="Liveness: the process answers")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: the model is loaded and accepting work")
    async def ready(request: Request) -> JSONResponse:
        state: ServiceState | None = getattr(request.app.state, "service", None)
        ok = bool(state and state.engine.ready and not state.draining)
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/v1/models", response_model=ModelList, summary="Served models")
    async def list_models(request: Request) -> ModelList:
        state: ServiceState = request.app.state.service
        info = state.engine.info
        cards = [ModelCard(id=info.id, created=created, root=info.path, multilingual=info.multilingual,
                           adapters=list(info.adapters), router=state.router.status)]
        cards += [ModelCard(id=alias, created=created, root=info.id) for alias in DEFAULT_ALIASES]
        return ModelList(data=cards)

    @app.get("/v1/models/{model_id}", response_model=ModelCard, summary="One served model")
    async def get_model(model_id: str, request: Request) -> ModelCard:
        state: ServiceState = request.app.state.service
        resolved = state.resolve_model(model_id)
        return ModelCard(id=model_id, created=created, root=resolved)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics_endpoint(request: Request) -> Response:
        state: ServiceState | None = getattr(request.app.state, "service", None)
        if state is not None:
            metrics.queue_depth.set(state.engine.queue_depth())
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    # Innermost: counts in-flight work for the SIGTERM drain and refuses new work while draining
    # (inside count_requests, so its 503s are counted too). See service/api/lifecycle.py.
    from service.api.lifecycle import install as install_drain

    install_drain(app, settings.drain_grace_s, settings.retry_after_s)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        started = time.monotonic()
        route = request.scope.get("route")
        response = await call_next(request)
        route = request.scope.get("route") or route
        endpoint = getattr(route, "path", "unmatched")
        metrics.requests.labels(endpoint=endpoint, status=str(response.status_code)).inc()
        metrics.latency.labels(endpoint=endpoint).observe(time.monotonic() - started)
        return response

    # Outermost guards: auth, then the streaming size limit, before any body is parsed.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    if settings.api_key is not None:
        app.add_middleware(BearerAuthMiddleware, api_key=settings.api_key.get_secret_value())
    return app


