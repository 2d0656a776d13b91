"""The seven atomic effects (paper §1.2) as ordered chains of primitives with parameter ranges.

Each sampled parameter has a range [low, high] and a direction of difficulty. With global severity
m, a parameter whose larger values are harder gets ``low + (high - low) m``; one whose smaller
values are harder gets ``high - (high - low) m``; integers are rounded (paper §1.5).

Choices where the paper is silent or ambiguous (also in docs/simulation.md):
- ``noise_db`` is read as the SNR in dB on speech-active frames (parameter ``snr_db``), so smaller is
  harder: m = 0 gives 10 dB, m = 1 gives -5 dB.
- Loudness targets: quieter is harder (``target_lufs`` smaller is harder).
- Far-field ``damping``: less damping keeps more high-frequency reverberant energy, so smaller is
  harder. Low-pass cutoffs: smaller is harder; high-pass cutoffs: larger is harder.
- The distortion chain's ``change_volume_distortion`` is the loudness primitive with its own range
  and keeps its own name for the chain merge (``Step.merge_key``). The paper's merge compares names,
  so after an anchor's ``change_volume`` it is *not* dropped; dropping it would leave an overdriven
  signal near 0 LUFS in every anchor + distortion scenario.
- Compound scenarios reuse these atomic ranges: the paper's compound configs are not public.
- Fixed parameters (``source``) that are not signal parameters: ``noise`` draws its noise from the
  noise bank (the paper's ``filtered_wavs``), ``crosstalk`` uses white noise (``use_white_noise``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from simulation.primitives import PRIMITIVES
from simulation.severity import check_severity

Harder = Literal["larger", "smaller"]


@dataclass(frozen=True)
class ParamRange:
    """A sampled parameter: its range, unit, which end is harder, and whether it is "core"."""

    name: str
    low: float
    high: float
    harder: Harder = "larger"
    core: bool = False
    integer: bool = False
    unit: str = ""

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"{self.name}: low {self.low} > high {self.high}")
        if self.harder not in ("larger", "smaller"):
            raise ValueError(f"{self.name}: harder must be 'larger' or 'smaller'")

    def at(self, m: float) -> float | int:
        """The parameter value at global severity ``m`` (paper §1.5)."""
        m = check_severity(m)
        span = self.high - self.low
        value = self.low + span * m if self.harder == "larger" else self.high - span * m
        return round(value) if self.integer else round(float(value), 6)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "low": self.low, "high": self.high, "harder": self.harder,
                "core": self.core, "integer": self.integer, "unit": self.unit}


@dataclass(frozen=True)
class Step:
    """One primitive in a chain: fixed parameters plus sampled ranges."""

    primitive: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    ranges: tuple[ParamRange, ...] = ()
    effect: str = ""
    merge_key: str = ""

    @property
    def merge_name(self) -> str:
        """The name the chain merge compares (the primitive, unless the paper's code renamed it)."""
        return self.merge_key or self.primitive

    def __post_init__(self) -> None:
        if self.primitive not in PRIMITIVES:
            raise ValueError(f"unknown primitive {self.primitive!r}; known: {PRIMITIVES}")
        object.__setattr__(self, "fixed", MappingProxyType(dict(self.fixed)))

    def instantiate(self, m: float) -> dict[str, Any]:
        """Concrete parameters at severity ``m``: fixed ones plus each range evaluated at m."""
        params = dict(self.fixed)
        params.update({r.name: r.at(m) for r in self.ranges})
        return params

    def describe(self) -> dict[str, Any]:
        return {"primitive": self.primitive, "merge_name": self.merge_name, "effect": self.effect,
                "fixed": dict(self.fixed), "ranges": [r.describe() for r in self.ranges]}


@dataclass(frozen=True)
class AtomicEffect:
    """An atomic effect: internal name, public name, role in composition, ordered chain."""

    name: str
    public_name: str
    role: Literal["anchor", "modifier"]
    chain: tuple[Step, ...]
    description: str

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "public_name": self.public_name, "role": self.role,
                "description": self.description, "chain": [s.describe() for s in self.chain]}


def _steps(effect: str, *steps: Step) -> tuple[Step, ...]:
    return tuple(Step(s.primitive, s.fixed, s.ranges, effect, s.merge_key) for s in steps)


P = ParamRange

ATOMIC_EFFECTS: dict[str, AtomicEffect] = {
    e.name: e
    for e in (
        AtomicEffect("noise", "noise", "modifier", _steps(
            "noise",
            Step("add_noise", {"source": "bank", "wet": 1.0},
                 (P("snr_db", -5.0, 10.0, "smaller", core=True, unit="dB"),)),
            Step("change_volume", {"target_lufs": -23.0}),
        ), "Background noise from the noise bank at a target SNR."),
        AtomicEffect("far_field", "far_field", "anchor", _steps(
            "far_field",
            Step("add_reverb", {"dry_level": 0.5}, (
                P("room_size", 0.4, 0.6, "larger", core=True),
                P("damping", 0.6, 0.8, "smaller"),
                P("wet_level", 0.4, 0.5, "larger"))),
            Step("apply_filter", {"kind": "lowpass", "repeat": 3, "wet": 1.0},
                 (P("cutoff_hz", 3500.0, 4500.0, "smaller", core=True, unit="Hz"),)),
            Step("change_volume", {}, (P("target_lufs", -38.0, -27.0, "smaller", core=True, unit="LUFS"),)),
        ), "Distant talker: reverberant, dull and quiet."),
        AtomicEffect("barrier", "obstructed", "anchor", _steps(
            "barrier",
            Step("apply_filter", {"kind": "lowpass", "wet": 0.9}, (
                P("cutoff_hz", 1500.0, 2000.0, "smaller", core=True, unit="Hz"),
                P("repeat", 2, 4, "larger", integer=True))),
            Step("add_reverb", {"room_size": 0.4, "damping": 0.9, "dry_level": 0.4},
                 (P("wet_level", 0.5, 0.7, "larger"),)),
            Step("change_volume", {}, (P("target_lufs", -25.0, -15.0, "smaller", core=True, unit="LUFS"),)),
        ), "Talker behind a wall or door: muffled, then reverberant."),
        AtomicEffect("strong_echo", "echo", "anchor", _steps(
            "strong_echo",
            Step("add_reverb", {"damping": 0.5, "dry_level": 0.4}, (
                P("room_size", 0.8, 0.95, "larger", core=True),
                P("wet_level", 0.6, 0.8, "larger"))),
            Step("apply_filter", {"kind": "highpass", "repeat": 1, "wet": 1.0},
                 (P("cutoff_hz", 100.0, 300.0, "larger", unit="Hz"),)),
            Step("add_echo", {}, (
                P("delay_seconds", 0.1, 0.3, "larger", core=True, unit="s"),
                P("feedback", 0.3, 0.5, "larger"),
                P("mix", 0.2, 0.3, "larger"))),
            Step("change_volume", {}, (P("target_lufs", -30.0, -23.0, "smaller", core=True, unit="LUFS"),)),
        ), "Large reverberant hall with distinct echoes."),
        AtomicEffect("crosstalk", "recording", "modifier", _steps(
            "crosstalk",
            Step("add_resample", {"target_sr": 8000, "wet": 1.0, "threshold": 0.4},
                 (P("prob", 0.0, 1.0, "larger", core=True),)),
            Step("add_noise", {"source": "white", "wet": 1.0},
                 (P("snr_db", -5.0, 10.0, "smaller", core=True, unit="dB"),)),
            Step("apply_filter", {"kind": "highpass", "wet": 1.0}, (
                P("cutoff_hz", 400.0, 600.0, "larger", core=True, unit="Hz"),
                P("repeat", 4, 6, "larger", integer=True))),
            Step("apply_filter", {"kind": "lowpass", "wet": 1.0}, (
                P("cutoff_hz", 3500.0, 4500.0, "smaller", core=True, unit="Hz"),
                P("repeat", 4, 6, "larger", integer=True))),
            Step("change_volume", {"target_lufs": -23.0}),
        ), "Re-recorded or telephone-band audio: 8 kHz, hiss, band-pass."),
        AtomicEffect("distortion", "distortion", "modifier", _steps(
            "distortion",
            Step("add_distortion", {"wet": 1.0}, (P("drive_db", 20.0, 60.0, "larger", core=True, unit="dB"),)),
            Step("apply_filter", {"kind": "lowpass", "repeat": 1, "wet": 1.0},
                 (P("cutoff_hz", 2800.0, 6000.0, "smaller", unit="Hz"),)),
            Step("change_volume", {}, (P("target_lufs", -38.0, -27.0, "smaller", core=True, unit="LUFS"),),
                 merge_key="change_volume_distortion"),
        ), "Overdriven electronics: saturation, then a low-pass."),
        AtomicEffect("stutter", "dropout", "modifier", _steps(
            "stutter",
            Step("add_stutter", {"repeat_prob": 0.7, "frame_ms": 20.0}, (
                P("stutter_prob", 0.05, 0.3, "larger", core=True),
                P("max_repeats", 2, 4, "larger", integer=True))),
            Step("change_volume", {"target_lufs": -23.0}),
        ), "Packet loss: frames repeated or silenced, length kept."),
    )
}

ANCHORS = tuple(n for n, e in ATOMIC_EFFECTS.items() if e.role == "anchor")
MODIFIERS = tuple(n for n, e in ATOMIC_EFFECTS.items() if e.role == "modifier")
PUBLIC_NAMES: dict[str, str] = {n: e.public_name for n, e in ATOMIC_EFFECTS.items()}
ALIASES: dict[str, str] = {e.public_name: n for n, e in ATOMIC_EFFECTS.items()} | {n: n for n in ATOMIC_EFFECTS}


def canonical_effect(name: str) -> str:
    """Internal name of an atomic effect given its internal or public name."""
    key = name.strip().lower()
    if key not in ALIASES:
        raise ValueError(f"unknown atomic effect {name!r}; known: {sorted(ALIASES)}")
    return ALIASES[key]


def list_effects() -> list[dict[str, Any]]:
    """JSON-serialisable description of the seven atomic effects."""
    return [e.describe() for e in ATOMIC_EFFECTS.values()]


# Physical alternative for add_reverb (``reverb_engine="room"``): the paper has no room parameters,
# so these are our own choices, scaled by the same severity m (RT60 and distance larger = harder).
ROOM_REVERB: dict[str, Step] = {
    "far_field": Step("add_reverb", {"room_dim_m": (6.0, 5.0, 3.0), "wet": 1.0}, (
        P("rt60_s", 0.3, 0.6, "larger", core=True, unit="s"),
        P("source_mic_distance_m", 1.5, 4.0, "larger", unit="m")), "far_field"),
    "barrier": Step("add_reverb", {"room_dim_m": (5.0, 4.0, 2.7), "wet": 0.9, "rt60_s": 0.4,
                                   "source_mic_distance_m": 2.5}, (), "barrier"),
    "strong_echo": Step("add_reverb", {"room_dim_m": (10.0, 8.0, 4.0), "wet": 1.0}, (
        P("rt60_s", 0.7, 1.0, "larger", core=True, unit="s"),
        P("source_mic_distance_m", 2.0, 5.0, "larger", unit="m")), "strong_echo"),
}
