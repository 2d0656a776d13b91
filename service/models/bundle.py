"""The served checkpoint bundle (``megaasr-bundle/1``): what ``megaasr serve --checkpoint DIR`` reads.

``training/export.py`` writes it; the service only reads it, so the loader lives here (the service
must not depend on the training code). Layout::

    bundle.json   {"format": "megaasr-bundle/1", "base_model": ..., "adapter": "adapter" | null,
                   "merged": "merged" | null, "router": "router" | null, "router_threshold": 0.5,
                   "robust_logprob_gate": null | -1.0, "robust_no_speech_gate": null | 0.8,
                   "ensemble": ["members/1", ...] | absent}
    adapter/      peft LoRA adapter on the base model (the embedded engine merges it at load)
    merged/       optional full HF Whisper checkpoint with the adapter merged (what vLLM on the CPU serves)
    members/N/    optional further robust LoRA adapters on the same base model (a robust ensemble)
    router/       AudioQualityRouter.save output
    README.md     model card: training config and eval numbers

``robust_logprob_gate`` is the robust path's confidence gate: a decoded window whose mean token
log-prob is below it is dropped (``GuardConfig.min_avg_logprob``). It stands in for Whisper's
no-speech gate, which the adapter's training leaves dead (see ``service.engines.transcriber``).
Absent or null: no gate (bundles written before it existed load unchanged).

``robust_no_speech_gate`` is the other half of what the adapter lost: the base model's no-speech
probability, read for each robust window before it is decoded; a window above it is skipped
(``service.engines.no_speech_probe``). A probability strictly between 0 and 1; absent or null: no gate.
The embedded engine applies it; the vLLM engine cannot (vLLM reports no no-speech probability) and
says so at start.

``ensemble`` lists further robust adapters (round 31): the embedded engine decodes robust audio with the
main adapter and with each member, under the same gates, and serves the ROVER vote of their transcripts
(``service.engines.rover``). It costs one more decode per member on the robust path; the setting
``robust_ensemble = "off"`` serves the main adapter alone. Members need the main ``adapter`` (a merged-only
bundle has no ensemble). The vLLM engine votes the same way over the members vLLM serves
(``vllm_robust_member_models``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

FORMAT = "megaasr-bundle/1"
#: How an ensemble's transcripts become one answer (``ensemble_pick``): the ROVER vote, or the candidate
#: (a member's transcript or the vote) the members find likeliest (:mod:`service.engines.ensemble_pick`).
ENSEMBLE_PICKS = ("vote", "likelihood")


class BundleError(ValueError):
    """A checkpoint folder that is not a usable bundle; the message says what is wrong."""


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle with resolved absolute paths (None where the bundle has no such part)."""

    root: Path
    base_model: str
    adapter: Path | None
    merged: Path | None
    router: Path | None
    router_threshold: float
    card: Path | None
    robust_logprob_gate: float | None = None
    robust_no_speech_gate: float | None = None
    ensemble: tuple[Path, ...] = ()
    ensemble_pick: str = "vote"

    @property
    def has_robust(self) -> bool:
        return self.adapter is not None or self.merged is not None


def load_bundle(directory: str | Path) -> Bundle:
    """Read and validate ``bundle.json``; every named part must exist."""
    root = Path(directory).expanduser().resolve()
    manifest = root / "bundle.json"
    if not manifest.is_file():
        raise BundleError(f"{root} is not a checkpoint bundle: {manifest.name} is missing "
                          "(write one with `megaasr export`).")
    try:
        meta = json.loads(manifest.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{manifest}: not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT:
        raise BundleError(f"{root}: unsupported bundle format {meta.get('format')!r} (expected {FORMAT})")
    if not meta.get("base_model"):
        raise BundleError(f"{manifest}: 'base_model' is missing")

    def part(key: str) -> Path | None:
        name = meta.get(key)
        return None if name is None else _folder(root, key, name)

    threshold = float(meta.get("router_threshold", 0.5))
    if not 0.0 <= threshold <= 1.0:
        raise BundleError(f"router_threshold must lie in [0, 1], got {threshold}")
    gate = _optional_number(meta, "robust_logprob_gate", lambda v: math.isfinite(v) and v <= 0,
                            "a log-probability (a number <= 0)")
    no_speech = _optional_number(meta, "robust_no_speech_gate", lambda v: 0 < v < 1,
                                 "a probability strictly between 0 and 1")
    card = root / "README.md"
    adapter = part("adapter")
    ensemble = _ensemble(root, meta, adapter)
    return Bundle(root, str(meta["base_model"]), adapter, part("merged"), part("router"), threshold,
                  card if card.exists() else None, gate, no_speech, ensemble, _ensemble_pick(root, meta, ensemble))


def _folder(root: Path, key: str, name: str) -> Path:
    """A folder the bundle names: it must exist and lie inside the bundle."""
    path = (root / name).resolve()
    if root not in path.parents:
        raise BundleError(f"{root}: {key}={name!r} points outside the bundle")
    if not path.is_dir():
        raise BundleError(f"{root}: bundle names {key}={name!r} but {path} is missing")
    return path


def _ensemble(root: Path, meta: dict, adapter: Path | None) -> tuple[Path, ...]:
    """The ``ensemble`` member folders: a list of adapter folders inside the bundle, next to a main adapter."""
    names = meta.get("ensemble")
    if names is None:
        return ()
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise BundleError(f"{root}: 'ensemble' must be a non-empty list of member folder names, got {names!r}")
    if adapter is None:
        raise BundleError(f"{root}: 'ensemble' needs the bundle's own 'adapter' (its first member)")
    members = tuple(_folder(root, "ensemble", name) for name in names)
    if len(set(members) | {adapter}) != len(members) + 1:
        raise BundleError(f"{root}: 'ensemble' names a folder twice, or the main adapter")
    return members


def _ensemble_pick(root: Path, meta: dict, ensemble: tuple[Path, ...]) -> str:
    """``ensemble_pick``: one of :data:`ENSEMBLE_PICKS`, "vote" when absent; only next to an ``ensemble``."""
    pick = meta.get("ensemble_pick")
    if pick is None:
        return "vote"
    if pick not in ENSEMBLE_PICKS:
        raise BundleError(f"{root}: 'ensemble_pick' must be one of {', '.join(ENSEMBLE_PICKS)}, got {pick!r}")
    if not ensemble:
        raise BundleError(f"{root}: 'ensemble_pick' is set but the bundle has no 'ensemble' to pick from")
    return pick


def _optional_number(meta: dict, key: str, valid, requirement: str) -> float | None:
    """``meta[key]`` as a float when present and ``valid``; null or absent is None; anything else a BundleError."""
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not valid(value):
        raise BundleError(f"{key} must be {requirement} or null, got {value!r}")
    return float(value)


def served_no_speech_gate(setting: str | float, bundle: Bundle | None) -> float | None:
    """The robust path's no-speech gate as served: the bundle's, unless the setting turns it off or replaces it."""
    if setting == "off" or bundle is None:
        return None
    if setting == "bundle":
        return bundle.robust_no_speech_gate
    return float(setting)


def served_base_model(explicit_model: str | None, bundle: Bundle | None, default_model: str) -> str:
    """Which base model to serve: an explicit ``--model`` wins, then the bundle's, then the default.

    The adapter only fits the base it was trained on; a wrong explicit ``--model`` fails at load with
    peft's shape error, which is the honest outcome for a user who overrode it.
    """
    if explicit_model is not None:
        return explicit_model
    if bundle is not None:
        return bundle.base_model
    return default_model
