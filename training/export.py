"""The served checkpoint bundle (``megaasr-bundle/1``) and its loader.

Layout (the service's ``megaasr serve --checkpoint DIR`` reads exactly this)::

    bundle.json   {"format": "megaasr-bundle/1", "base_model": ..., "adapter": "adapter" | null,
                   "merged": "merged" | null, "router": "router" | null, "router_threshold": 0.5}
    adapter/      peft LoRA adapter (adapter_config.json + adapter_model.safetensors) on the base model
    merged/       optional full HF Whisper checkpoint with the robust LoRA merged (for vLLM)
    router/       AudioQualityRouter.save output (trained)
    README.md     model card: training config and eval numbers

Why one adapter although training merged several (three SFT phases, then RL): merging only adds
``scale_i * B_i @ A_i`` to each weight, so the sum of the stage adapters is itself a LoRA whose rank
is the sum of their ranks: stack the A matrices and the scaled B matrices along the rank axis
(the released Mega-ASR adapter is built the same way: r = 24 = 3 x 8). The result is exact.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from service.models.bundle import ENSEMBLE_PICKS, FORMAT, Bundle, BundleError, load_bundle

_A, _B = ".lora_A.weight", ".lora_B.weight"


# -- combining stage adapters ------------------------------------------------------------------
def _adapter_scale(config: dict[str, Any], module: str) -> float:
    rank = _pattern(config.get("rank_pattern") or {}, module, config["r"])
    alpha = _pattern(config.get("alpha_pattern") or {}, module, config["lora_alpha"])
    return alpha / rank


def _pattern(patterns: dict[str, Any], module: str, default: Any) -> Any:
    for key, value in patterns.items():
        if module == key or module.endswith("." + key):
            return value
    return default


def combine_adapters(adapter_dirs: list[str | Path], out_dir: str | Path,
                     weights: list[float] | None = None) -> Path:
    """One peft adapter equal to the sum of ``adapter_dirs`` (each trained after merging the ones before).

    ``weights`` scales each adapter's delta (default 1 each): a weighted sum of LoRA deltas is still a
    LoRA (the weight goes into the stacked B), which is how a model soup of adapters trained from the
    same base model, or a task vector scaled past 1, ships in the same bundle format (training/soup.py).
    """
    weights = [1.0] * len(adapter_dirs) if weights is None else list(weights)
    if len(weights) != len(adapter_dirs):
        raise ValueError(f"{len(weights)} weights for {len(adapter_dirs)} adapters")
    blocks: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for folder, weight in zip(adapter_dirs, weights):
        folder = Path(folder)
        config = json.loads((folder / "adapter_config.json").read_text())
        state = load_file(str(folder / "adapter_model.safetensors"))
        for key in state:
            if key.endswith(_A):
                module = key[: -len(_A)]
                a, b = state[key].float(), state[module + _B].float()
                scale = _adapter_scale(config, _module_name(module)) * weight
                blocks.setdefault(module, []).append((a, b * scale))
    if not blocks:
        raise ValueError("no LoRA tensors found in the given adapters")
    tensors: dict[str, torch.Tensor] = {}
    ranks: dict[str, int] = {}
    for module, parts in blocks.items():
        tensors[module + _A] = torch.cat([a for a, _ in parts], dim=0).contiguous()
        tensors[module + _B] = torch.cat([b for _, b in parts], dim=1).contiguous()
        ranks[_module_name(module)] = tensors[module + _A].shape[0]
    first = json.loads((Path(adapter_dirs[0]) / "adapter_config.json").read_text())
    config = {**first, "r": max(ranks.values()), "lora_alpha": max(ranks.values()), "lora_dropout": 0.0,
              "target_modules": sorted(ranks), "rank_pattern": ranks, "alpha_pattern": dict(ranks),
              "inference_mode": True}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / "adapter_model.safetensors"))
    (out_dir / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return out_dir


def _module_name(key: str) -> str:
    """``base_model.model.model.encoder.layers.3.fc1`` → ``model.encoder.layers.3.fc1``."""
    return key.removeprefix("base_model.model.")


def apply_adapter(model: torch.nn.Module, adapter_dir: str | Path) -> torch.nn.Module:
    """Base model + adapter, the way the service applies it (peft)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir))


# -- writing the bundle ------------------------------------------------------------------------
def export_bundle(out_dir: str | Path, base_model: str, adapter_dirs: list[str | Path],
                  merged_dir: str | Path | None, router_dir: str | Path | None, router_threshold: float,
                  card: str, robust_logprob_gate: float | None = None,
                  adapter_weights: list[float] | None = None,
                  robust_no_speech_gate: float | None = None,
                  ensemble: list[list[Path]] | None = None, ensemble_pick: str = "vote") -> Bundle:
    """Assemble a bundle folder from training outputs (replacing any previous one).

    ``adapter_weights`` scales each of ``adapter_dirs`` (see ``combine_adapters``); default 1 each.
    ``ensemble`` holds, per further robust member, the adapters that make it (combined into ``members/N``);
    ``ensemble_pick`` is how their transcripts become one answer (written only for an ensemble).
    """
    if ensemble and not adapter_dirs:
        raise ValueError("a robust ensemble needs the bundle's own adapter (its first member)")
    if ensemble_pick not in ENSEMBLE_PICKS:
        raise BundleError(f"ensemble_pick must be one of {', '.join(ENSEMBLE_PICKS)}, got {ensemble_pick!r}")
    if ensemble_pick != "vote" and not ensemble:
        raise BundleError(f"ensemble_pick={ensemble_pick!r} needs ensemble members to pick from "
                          "(--ensemble-member PATH, repeatable)")
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    adapter = combine_adapters(adapter_dirs, out / "adapter", adapter_weights) if adapter_dirs else None
    members = [f"members/{k}" for k in range(1, len(ensemble or []) + 1)]
    for name, adapters in zip(members, ensemble or []):
        combine_adapters(adapters, out / name)
    merged = None
    if merged_dir is not None:
        merged = out / "merged"
        shutil.copytree(merged_dir, merged, ignore=shutil.ignore_patterns("megaasr_training.json"))
    router = None
    if router_dir is not None:
        from service.models.router_net import AudioQualityRouter

        net = AudioQualityRouter.load(router_dir)
        if not net.trained:
            raise ValueError(f"{router_dir}: the router is not marked trained")
        router = out / "router"
        net.save(router)
    meta = {"format": FORMAT, "base_model": base_model, "adapter": adapter and "adapter",
            "merged": merged and "merged", "router": router and "router", "router_threshold": router_threshold,
            "robust_logprob_gate": robust_logprob_gate, "robust_no_speech_gate": robust_no_speech_gate}
    if members:
        meta["ensemble"] = members
        meta["ensemble_pick"] = ensemble_pick
    (out / "bundle.json").write_text(json.dumps(meta, indent=2))
    (out / "README.md").write_text(card)
    return load_bundle(out)


def router_summary(router_dir: str | Path) -> dict[str, Any] | None:
    """What the router's training recorded, threshold included.

    ``train router`` writes ``metrics.json`` beside the saved ``final/`` folder; a router copied out of
    a bundle has only the metadata saved with its weights (the same record, which is also what
    ``megaasr eval`` reads). Without either, the caller falls back to the issue's default 0.5.
    """
    from service.models.router_net import AudioQualityRouter

    metrics = Path(router_dir).parent / "metrics.json"
    if metrics.exists():
        return json.loads(metrics.read_text())
    return AudioQualityRouter.load(router_dir).training_metadata or None


def serving_note(eval_config: dict[str, Any]) -> list[str]:
    """Card lines telling a user how to serve the bundle so it decodes as its numbers were measured.

    Why: the service's defaults are greedy (``beam_size = 1``, ``best_of = 1``) because a beam costs
    ~2.5x the CPU time; a bundle measured with a wider search only reproduces its card when served
    with the same flags, so the card says which ones (and nothing when the eval used the defaults).
    """
    beam, best_of = int(eval_config.get("beam_size", 1)), int(eval_config.get("best_of", 1))
    flags = [f"--beam-size {beam}"] * (beam > 1) + [f"--best-of {best_of}"] * (best_of > 1)
    if not flags:
        return []
    envs = [f"MEGAASR_BEAM_SIZE={beam}"] * (beam > 1) + [f"MEGAASR_BEST_OF={best_of}"] * (best_of > 1)
    return ["## Serving", "",
            (f"The numbers above were measured with `{' '.join(flags)}`; serve with the same "
             f"(`megaasr serve --checkpoint <this folder> {' '.join(flags)}`, or `{' '.join(envs)}`) to "
             "reproduce them. The service's default decode is greedy, which costs less CPU per request "
             "and reads degraded audio less well (docs/eval.md)."), ""]


def gate_note(export: dict[str, Any]) -> list[str]:
    """Card lines on the robust path's gates: what each does and which engine applies it.

    Why: the no-speech gate is what keeps the adapter quiet on music and noise, and only the embedded
    engine can apply it; a user serving the bundle on vLLM must know the card's non-speech numbers do
    not hold there.
    """
    lines = []
    if export.get("robust_no_speech_gate") is not None:
        lines.append(f"- `robust_no_speech_gate` {export['robust_no_speech_gate']}: before the adapter decodes a "
                     "window, the base model reads its no-speech probability; a window above the gate is skipped "
                     "(the adapter's own no-speech head is untrained). Applied by the embedded engine; the vLLM "
                     "engine cannot read that probability and serves the adapter without it.")
    if export.get("robust_logprob_gate") is not None:
        lines.append(f"- `robust_logprob_gate` {export['robust_logprob_gate']}: a robust window whose mean token "
                     "log-prob is below it is dropped (both engines).")
    return ["## Robust-path gates", "", *lines, ""] if lines else []


def ensemble_note(members: int, pick: str = "vote") -> list[str]:
    """Card lines on a robust ensemble: what it serves, what it costs, and where it is not served."""
    if not members:
        return []
    answer = ("the ROVER vote of their transcripts (`service/engines/rover.py`)" if pick == "vote" else
              "the candidate (a member's transcript or their ROVER vote) that all of them, teacher-forced, find "
              "likeliest on average (`ensemble_pick = \"likelihood\"`, `service/engines/ensemble_pick.py`; audio "
              "over 30 s gets the vote)")
    return ["## Robust ensemble", "",
            (f"The bundle holds {members} more robust adapters (`members/`) beside `adapter/`. The embedded engine "
             f"decodes robust audio with all {members + 1} and serves {answer}, as the numbers above were "
             f"measured: {members + 1} decodes and "
             f"{members + 1} merged model copies on the robust path. `robust_ensemble = \"off\"` "
             "(`MEGAASR_ROBUST_ENSEMBLE=off`) serves `adapter/` alone. The vLLM engine votes too when vLLM serves "
             "the members beside `adapter/` (`vllm_robust_member_models`, docs/deploy.md). Where the vote differs from `adapter/`'s transcript, the answer is one "
             "segment without word timings."), ""]


def writing_destroys(out_dir: str | Path, source: str | Path) -> bool:
    """Whether writing a bundle to ``out_dir`` would destroy ``source``, an input of the export.

    ``export_bundle`` replaces its output folder before it reads the router, and soups and re-exports read
    adapters from bundles: an input that is that folder, contains it or lies inside it is at risk.
    """
    out, path = Path(out_dir).resolve(), Path(source).resolve()
    return path == out or out in path.parents or path in out.parents


TRAINED_BY = {"sft": "trained by this project's A2S-SFT (three LoRA phases, merged between phases)",
              "rl": ("trained by this project's A2S-SFT (three LoRA phases, merged between phases) followed "
                     "by DG-WGPO"),
              "soup": ("made by `training/soup.py` as a weighted sum of adapters that this project's A2S-SFT "
                       "trained (see the weights below)")}


@dataclass(frozen=True)
class ExportSource:
    """What ``megaasr export --robust`` reads: the adapters to combine, a merged folder, the card's stage."""

    adapters: list[Path]
    merged: Path | None
    stage: str


def export_source(robust: str | Path) -> ExportSource:
    """Resolve ``--robust``: a training output (``sft/final``, ``rl/final``) or an exported bundle.

    Why a bundle too: a served bundle outlives the run folders that made it (``runs/`` is not kept), yet its
    gates, router or card may need to change after a new measurement. Re-exporting a bundle keeps its adapter
    as it is (combined with weight 1) and has no merged folder; the stage is read back from the card's first
    paragraph, which ``model_card`` wrote from ``TRAINED_BY``.
    """
    root = Path(robust)
    record = root / "megaasr_training.json"
    if record.is_file():
        training = json.loads(record.read_text())
        return ExportSource([Path(a) for a in training["adapters"]], root, training.get("stage", "sft"))
    if not (root / "bundle.json").is_file():
        raise BundleError(f"{root} is neither a training output (no megaasr_training.json) nor an exported "
                         "bundle (no bundle.json)")
    bundle = load_bundle(root)
    if bundle.adapter is None:
        raise BundleError(f"{root}: the bundle has no adapter to export again")
    card = bundle.card.read_text() if bundle.card else ""
    # "rl"'s phrase contains "sft"'s, so the longest phrase found wins.
    found = [stage for stage, phrase in TRAINED_BY.items() if phrase in card]
    if not found:
        raise BundleError(f"{root}: the model card does not say how the adapter was trained")
    return ExportSource([bundle.adapter], None, max(found, key=lambda stage: len(TRAINED_BY[stage])))


def ensemble_member_adapters(member: str | Path) -> list[Path]:
    """The adapters that make one ``--ensemble-member``: a bare peft adapter folder (a bundle's own
    ``members/N``, so an ensemble bundle can be exported again) is its own adapter; otherwise
    :func:`export_source`'s (a training output or a bundle)."""
    path = Path(member)
    return [path] if (path / "adapter_config.json").is_file() else export_source(path).adapters


def model_card(base_model: str, recipe: dict[str, Any], eval_summary: dict[str, Any] | None,
               router_summary: dict[str, Any] | None, stage: str = "sft", ensemble_members: int = 0,
               ensemble_pick: str = "vote") -> str:
    """Markdown model card with the training config and the measured numbers.

    ``stage`` is the exported model's own training record (``sft`` or ``rl``; ``soup`` for a weighted
    sum of trained adapters): the card names the stages the adapter really went through, not every
    stage the recipe has.
    """
    trained_by = TRAINED_BY[stage]
    lines = [f"# Mega-ASR robust LoRA for {base_model}", "",
             (f"Robust adapter {trained_by} on simulated in-the-wild audio; "
              "an audio-quality router sends clean audio to the base model and degraded audio to the adapter."), "",
             "Load with `megaasr serve --checkpoint <this folder>`; `training.export.load_bundle` reads it.", ""]
    if eval_summary:
        from training.eval import SYSTEMS, markdown

        # Re-rendered (not the stored text) so a card always says how the clips were decoded.
        routed = "routed" in eval_summary.get("clean", {})
        table = markdown(eval_summary, SYSTEMS) if routed else eval_summary.get("markdown", "")
        lines += ["## Evaluation (held-out speaker and sentences)", "", table, ""]
        lines += serving_note(eval_summary.get("config", {}))
    lines += gate_note(recipe.get("export", {}))
    lines += ensemble_note(ensemble_members, ensemble_pick)
    if router_summary:
        lines += ["## Router", "", "```json", json.dumps(router_summary, indent=2), "```", ""]
    lines += ["## Training configuration", "", "```json", json.dumps(recipe, indent=2), "```", ""]
    return "\n".join(lines)
