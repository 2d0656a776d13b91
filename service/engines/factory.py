"""Build the configured engine from settings (model name or local path → engine instance)."""

from __future__ import annotations

from pathlib import Path

from service.config import Settings
from service.engines.base import Engine
from service.models.bundle import Bundle, load_bundle, served_base_model


def model_id_for(name_or_path: str) -> str:
    """A registry name is its own id; a local folder is served under its folder name."""
    path = Path(name_or_path).expanduser()
    return path.name if path.exists() else name_or_path


def served_model(settings: Settings) -> tuple[str, Bundle | None]:
    """The base model name or folder to serve, and the ``--checkpoint`` bundle if one is given."""
    bundle = load_bundle(settings.checkpoint) if settings.checkpoint is not None else None
    explicit = settings.model if "model" in settings.model_fields_set else None
    return served_base_model(explicit, bundle, settings.model), bundle


def build_engine(settings: Settings) -> Engine:
    from service.models.registry import resolve

    model, bundle = served_model(settings)
    path = resolve(model, home=settings.home, pull_if_missing=True)
    if settings.engine == "embedded":
        from service.engines.embedded import EmbeddedEngine

        return EmbeddedEngine(path, model_id_for(model), settings, robust=bundle)
    if settings.engine == "vllm":
        # The local checkpoint gives the vocabulary (language checks); vLLM serves the weights.
        from service.engines.vllm_engine import VllmEngine

        return VllmEngine(path, model_id_for(model), settings, robust=bundle)
    raise ValueError(f"unknown engine '{settings.engine}' (use embedded or vllm)")
