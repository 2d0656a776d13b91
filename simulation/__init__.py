"""Acoustic simulation for Mega-ASR: 8 primitives -> 7 atomic effects -> 54 compound scenarios.

Stable entry points (used by the service's stress/corrupt endpoints and by training):

- ``simulate(audio, sr, scenario, severity=None, seed=0, noise_bank=None, *, severity_mapping="linear",
  reverb_engine="freeverb") -> SimulationResult``: corrupt one mono float array; deterministic for a
  seed. ``result.audio`` is float32 in [-1, 1] with the input's length; ``result.record()`` is a
  JSON-serialisable dict of every parameter used, the achieved SNR and output loudness.
- ``list_scenarios(names_or_group="all") -> list[dict]``: serialisable descriptions of scenarios
  (name, public name, group, effects, merged chain with parameter ranges and difficulty direction).
- ``resolve_scenarios(names_or_group) -> list[str]``: canonical internal names from a group
  (singles, doubles, triples, quadruples, quintuples, all), a name (internal or public alias), a
  comma-separated string, or a list of these. Unknown names raise ValueError.
- Also relied on by the service: ``simulation.scenarios.GROUPS``, ``group_names(group)``,
  ``get_scenario(name) -> Scenario`` (``.name``, ``.public_name``, ``.effects``, ``.group``, ``.chain``)
  and ``all_scenarios() -> dict[str, Scenario]``; and ``simulation.cli.register(subparsers)`` for
  ``megaasr simulate``.

This package is the leaf of the project: it never imports ``service`` or ``training``.
See docs/simulation.md for the paper's facts and the choices made where the paper is silent.
"""

from simulation.noise_bank import NoiseBank, SyntheticNoise, build_noise_bank
from simulation.scenarios import get_scenario, list_scenarios, resolve_scenarios
from simulation.severity import map_severity
from simulation.simulate import SimulationResult, simulate

__all__ = [
    "NoiseBank",
    "SimulationResult",
    "SyntheticNoise",
    "build_noise_bank",
    "get_scenario",
    "list_scenarios",
    "map_severity",
    "resolve_scenarios",
    "simulate",
]
