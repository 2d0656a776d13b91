"""``simulate``: run one scenario's merged chain over one utterance, recording every parameter.

Determinism: everything random comes from ``numpy.random.SeedSequence(seed)``. Each step of the
chain gets its own child stream (spawn key = step index), and the severity draw its own, so the
same (audio, scenario, severity, seed) always gives a bit-identical output on any machine count.

Output range: chains that end with ``add_noise`` or a loud target can exceed full scale. The
result is then scaled down as a whole (no clipping, so the SNR is kept) to a peak of 1.0, and the
record says by how much (``peak_gain_db``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulation import primitives
from simulation.effects import ROOM_REVERB, Step
from simulation.noise_bank import NoiseSource, as_noise_source, coloured_noise
from simulation.scenarios import Scenario, get_scenario
from simulation.severity import MAPPINGS, check_severity, sample_severity

REVERB_ENGINES = ("freeverb", "room")
_SEVERITY_STREAM = 10_000


@dataclass
class SimulationResult:
    """The corrupted audio and the full record of how it was made.

    ``achieved_snr_db`` is the SNR reached by the last ``add_noise`` step (None if the scenario adds
    no noise or the input is silent); every step's parameters and measurements are in ``steps``.
    """

    audio: np.ndarray
    sr: int
    scenario: str
    public_name: str
    effects: tuple[str, ...]
    severity: float
    seed: int
    severity_mapping: str | None = None
    reverb_engine: str = "freeverb"
    steps: list[dict[str, Any]] = field(default_factory=list)
    achieved_snr_db: float | None = None
    output_lufs: float | None = None
    peak_gain_db: float = 0.0

    def record(self) -> dict[str, Any]:
        """JSON-serialisable record (everything but the audio), in the paper's field names where they exist."""
        return {
            "combination": self.scenario,
            "public_name": self.public_name,
            "source_scenes": list(self.effects),
            "global_severity": self.severity,
            "aug_params_m": {e: self.severity for e in self.effects},
            "severity_mapping": self.severity_mapping,
            "seed": self.seed,
            "sample_rate": self.sr,
            "reverb_engine": self.reverb_engine,
            "steps": self.steps,
            "achieved_snr_db": self.achieved_snr_db,
            "output_lufs": self.output_lufs,
            "peak_gain_db": self.peak_gain_db,
        }


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _run_step(
    step: Step, params: dict[str, Any], x: np.ndarray, sr: int, rng: np.random.Generator,
    noise: NoiseSource, engine: str,
) -> tuple[np.ndarray, dict[str, Any]]:
    p = step.primitive
    if p == "add_noise":
        if params["source"] == "white":
            clip, info = coloured_noise("white", len(x), rng), {"source": "synthetic:white"}
        else:
            clip, info = noise.sample(len(x), sr, rng)
        out = primitives.add_noise(x, sr, clip, params["snr_db"], params["wet"])
        return out.audio, {**info, **out.measured}
    if p == "add_reverb" and engine == "room":
        out = primitives.add_room_reverb(
            x, sr, params["rt60_s"], tuple(params["room_dim_m"]), params["source_mic_distance_m"],
            params["wet"], seed=int(rng.integers(2**31)))
        return out.audio, out.measured
    if p == "add_reverb":
        out = primitives.add_reverb(x, sr, params["room_size"], params["damping"],
                                    params["wet_level"], params["dry_level"])
    elif p == "add_echo":
        out = primitives.add_echo(x, sr, params["delay_seconds"], params["feedback"], params["mix"])
    elif p == "add_distortion":
        out = primitives.add_distortion(x, params["drive_db"], params["wet"])
    elif p == "add_resample":
        out = primitives.add_resample(x, sr, params["target_sr"], params["wet"], params["prob"],
                                      params["threshold"])
    elif p == "apply_filter":
        out = primitives.apply_filter(x, sr, params["kind"], params["cutoff_hz"], params["repeat"],
                                      params["wet"])
    elif p == "change_volume":
        out = primitives.change_volume(x, sr, params["target_lufs"])
    elif p == "add_stutter":
        out = primitives.add_stutter(x, sr, rng, params["stutter_prob"], params["max_repeats"],
                                     params["repeat_prob"], params["frame_ms"])
    else:  # pragma: no cover - guarded by Step validation
        raise ValueError(f"no runner for primitive {p!r}")
    return out.audio, out.measured


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def simulate(
    audio: np.ndarray,
    sr: int,
    scenario: str | Scenario,
    severity: float | None = None,
    seed: int = 0,
    noise_bank: NoiseSource | str | None = None,
    *,
    severity_mapping: str = "linear",
    reverb_engine: str = "freeverb",
) -> SimulationResult:
    """Corrupt ``audio`` (mono float, any rate >= 1 kHz) with ``scenario`` at global ``severity``.

    ``severity`` is m in [0, 1]; None draws it from the seed with ``severity_mapping``. The noise
    comes from ``noise_bank`` (a ``NoiseBank``, a folder path, or None for seeded coloured noise).
    ``reverb_engine`` is "freeverb" (the paper) or "room" (pyroomacoustics shoebox).
    Same arguments and seed: bit-identical output. Output is float32, finite, within [-1, 1],
    and as long as the input.
    """
    x = primitives.as_mono_float32(audio)
    if not isinstance(sr, (int, np.integer)) or sr < 1000:
        raise ValueError(f"sr must be an integer sample rate >= 1000 Hz, got {sr!r}")
    seed = _check_seed(seed)
    scen = get_scenario(scenario) if not isinstance(scenario, Scenario) else scenario
    if reverb_engine not in REVERB_ENGINES:
        raise ValueError(f"reverb_engine must be one of {REVERB_ENGINES}, got {reverb_engine!r}")
    if severity_mapping not in MAPPINGS:
        raise ValueError(f"unknown severity mapping {severity_mapping!r}; choose one of {sorted(MAPPINGS)}")
    root = np.random.SeedSequence(seed)
    if severity is None:
        m = sample_severity(np.random.default_rng(root.spawn(_SEVERITY_STREAM + 1)[-1]), severity_mapping)
        mapping: str | None = severity_mapping
    else:
        m, mapping = check_severity(severity), None
    source = as_noise_source(noise_bank)
    streams = root.spawn(len(scen.chain))
    steps: list[dict[str, Any]] = []
    achieved = None
    y = x.copy()
    for index, (step, stream) in enumerate(zip(scen.chain, streams)):
        if step.primitive == "add_reverb" and reverb_engine == "room":
            step = ROOM_REVERB[step.effect]
        params = step.instantiate(m)
        y, measured = _run_step(step, params, y, int(sr), np.random.default_rng(stream), source,
                                reverb_engine)
        if step.primitive == "add_noise" and measured.get("achieved_snr_db") is not None:
            achieved = measured["achieved_snr_db"]
        steps.append({"index": index, "effect": step.effect, "primitive": step.primitive,
                      "params": _jsonable(params), "measured": measured})
    if not np.all(np.isfinite(y)):  # pragma: no cover - would be a bug in a primitive
        raise RuntimeError(f"scenario {scen.name} produced NaN/Inf")
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    peak_gain_db = 0.0
    if peak > 1.0:
        y = np.clip(y / np.float32(peak), -1.0, 1.0).astype(np.float32)
        peak_gain_db = round(float(-20 * np.log10(peak)), 3)
    loudness = primitives.measure_loudness(y, int(sr))
    return SimulationResult(
        audio=y.astype(np.float32, copy=False), sr=int(sr), scenario=scen.name,
        public_name=scen.public_name, effects=scen.effects, severity=round(m, 6), seed=seed,
        severity_mapping=mapping, reverb_engine=reverb_engine, steps=steps, achieved_snr_db=achieved,
        output_lufs=None if loudness is None else round(loudness, 3), peak_gain_db=peak_gain_db,
    )
