"""Up-front validation of a stress request: every mistake is a 400 before any work is queued."""

from __future__ import annotations

import math
from collections.abc import Iterable

from service.errors import InvalidRequest, NotFound
from simulation import resolve_scenarios
from simulation.scenarios import get_scenario

DEFAULT_SEVERITIES: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
DEFAULT_SCENARIOS = "all"


def _split(values: Iterable[str] | None) -> list[str]:
    """Repeated form fields and comma lists alike become one flat list of non-empty items."""
    out: list[str] = []
    for value in values or ():
        out.extend(p.strip() for p in value.split(",") if p.strip())
    return out


def parse_scenarios(values: Iterable[str] | None) -> list[str]:
    """Canonical scenario names from names, aliases or groups; unknown names give a 400 naming them."""
    items = _split(values) or [DEFAULT_SCENARIOS]
    try:
        return resolve_scenarios(items)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(str(exc), param="scenarios", code="unknown_scenario") from None


def parse_severities(values: Iterable[str] | None) -> list[float]:
    """Severities in [0, 1], first-seen order, duplicates dropped."""
    items = _split(values)
    if not items:
        return list(DEFAULT_SEVERITIES)
    out: list[float] = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise InvalidRequest(f"Severity '{item}' is not a number; give values in [0, 1] such as 0.5.",
                                 param="severities", code="invalid_severity") from None
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise InvalidRequest(f"Severity {item} is outside [0, 1].", param="severities",
                                 code="invalid_severity")
        value = round(value, 6)
        if value not in out:
            out.append(value)
    return out


def check_job_size(scenarios: list[str], severities: list[float], max_cells: int) -> None:
    cells = len(scenarios) * len(severities)
    if cells > max_cells:
        raise InvalidRequest(
            f"{len(scenarios)} scenarios x {len(severities)} severities = {cells} cells, over this server's "
            f"limit of {max_cells} cells per stress job (stress_max_cells); ask for fewer.",
            param="scenarios", code="too_many_cells")


def check_seed(seed: int) -> int:
    if seed < 0 or seed >= 2**63:
        raise InvalidRequest(f"seed must be a non-negative integer below 2^63, got {seed}.", param="seed",
                             code="invalid_seed")
    return seed


def scenario_for_path(name: str) -> str:
    """A scenario name from a URL (internal or public alias) to its canonical name; 404 if unknown."""
    try:
        return get_scenario(name).name
    except (ValueError, TypeError):
        raise NotFound(f"No scenario named '{name}'.", param="scenario", code="unknown_scenario") from None


def severity_key(severity: float) -> str:
    """The severity as it appears in clip URLs and file names: shortest exact form (0.5, 1, 0.25)."""
    return format(round(severity, 6), "g")
