"""Build the configured engine from settings (model name or local path → engine instance)."""

from __future__ import annotations

from pathlib import Path

from service.config import Settings
from service.engines.base import Engine


def model_id_for(name_or_path: str) -> str:
    """A registry name is its own id; a local folder is served under its folder name."""
    path = Path(name_or_path).expanduser()
    return path.name if path.exists() else name_or_path


def build_engine(settings: Settings) -> Engine:
    from service.models.registry import resolve

    path = resolve(settings.model, home=settings.home, pull_if_missing=True)
    if settings.engine == "embedded":
        from service.engines.embedded import EmbeddedEngine

        return EmbeddedEngine(path, model_id_for(settings.model), settings)
    raise NotImplementedError(f"engine '{settings.engine}' is not available yet")
