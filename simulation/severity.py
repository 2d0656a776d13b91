"""Global severity m in [0, 1]: how a uniform draw becomes m, and how m becomes a parameter.

Paper §1.5: one m per sample, shared by every primitive of its chain; linear mapping by default.
``sqrt`` (m = sqrt(x)) pushes toward hard samples, ``square`` (m = x^2) toward easy ones, and
``gaussian_mid`` concentrates mass around 0.5 (sigma = 1 / (2 * 1.6448536), as in the paper's code).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import norm

GAUSSIAN_MID_SIGMA = 1.0 / (2.0 * 1.6448536)


def _linear(x: float) -> float:
    return x


def _sqrt(x: float) -> float:
    return float(np.sqrt(x))


def _square(x: float) -> float:
    return x * x


def _gaussian_mid(x: float) -> float:
    return float(np.clip(norm.ppf(0.05 + 0.9 * x, loc=0.5, scale=GAUSSIAN_MID_SIGMA), 0.0, 1.0))


MAPPINGS: dict[str, Callable[[float], float]] = {
    "linear": _linear,
    "sqrt": _sqrt,
    "square": _square,
    "gaussian_mid": _gaussian_mid,
}


def map_severity(x: float, mapping: str = "linear") -> float:
    """Map a uniform draw ``x`` in [0, 1] to the global severity m with the named mapping."""
    if mapping not in MAPPINGS:
        raise ValueError(f"unknown severity mapping {mapping!r}; choose one of {sorted(MAPPINGS)}")
    check_severity(x, "x")
    return float(MAPPINGS[mapping](float(x)))


def sample_severity(rng: np.random.Generator, mapping: str = "linear") -> float:
    """Draw x ~ U(0, 1) and map it: the per-sample global severity."""
    return map_severity(float(rng.random()), mapping)


def check_severity(m: float, name: str = "severity") -> float:
    """Validate a severity value (a finite number in [0, 1])."""
    try:
        v = float(m)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {m!r}") from None
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {m!r}")
    return v
