"""A2S-SFT: three LoRA phases on Whisper, merged between phases (paper §3, A2S-SFT).

Read top to bottom: :func:`train_sft` loops over the phases in the config; each phase wraps the
current model with a fresh LoRA over its scope, trains it with AdamW (per-module learning-rate
groups, warmup then linear decay, gradient clipping), evaluates and checkpoints periodically,
then merges the LoRA into the weights before the next phase starts. Phase I walks the WER
curriculum (< 30 % → < 50 % → < 70 %); the others use the whole learnable split.

Every phase saves its adapter (``phase{i}/adapter``), and the run ends with the merged model in
``final/``. An interrupted run resumes from the newest checkpoint with identical results.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from training import distributed
from training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from training.config import PhaseConfig, SFTConfig
from training.data import CLEAN, clip_effects, learnable, read_manifest, wer_subset
from training.device import resolve_device
from training.distill import CleanTeacher, clean_sources
from training.encoder_cache import LowerStateCache, decoder_logits, upper_states
from training.lora import add_lora, encoder_block_ids, merge, param_groups
from training.metrics_log import append_record
from training.sources import read_audio
from training.whisper import (
    IGNORE_INDEX,
    Decoder,
    FeatureMaker,
    TargetTokens,
    decoder_targets,
    load_model,
    save_full_checkpoint,
)

log = logging.getLogger(__name__)


# -- data --------------------------------------------------------------------------------------
def sft_pool(rows: list[dict[str, Any]], clean_fraction: float, max_wer: float, seed: int,
             effect_oversampling: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Degraded clips under ``max_wer`` base WER, plus a seeded share of clean clips.

    ``max_wer`` >= 1.0 means the whole (learnability-filtered) split, omissions (WER exactly 1.0) included.
    ``effect_oversampling`` repeats each degraded clip with a listed effect that many times (the largest
    factor among its effects); the clean share is sized on the clips as drawn, before repetition.
    """
    if max_wer >= 1.0:
        max_wer = float("inf")
    degraded = [r for r in rows if r["scenario"] != CLEAN]
    clean = [r for r in rows if r["scenario"] == CLEAN]
    rng = np.random.default_rng(seed)
    n_clean = round(clean_fraction * len(degraded))
    picked = [clean[i] for i in sorted(rng.choice(len(clean), min(n_clean, len(clean)), replace=False))] if clean else []
    kept = wer_subset(degraded, max_wer)
    if effect_oversampling:
        kept = [r for r in kept for _ in range(max((effect_oversampling.get(e, 1) for e in clip_effects(r)), default=1))]
    return kept + wer_subset(picked, max_wer)


def batch_rows(pool: list[dict[str, Any]], batch_size: int, seed: int, phase: int, stage: int,
               step: int) -> list[dict[str, Any]]:
    """The rows of one step: a pure function of its coordinates (what makes resume exact)."""
    per_epoch = max(1, len(pool) // batch_size)
    epoch, offset = divmod(step, per_epoch)
    order = np.random.default_rng([seed, phase, stage, epoch]).permutation(len(pool))
    return [pool[i] for i in order[offset * batch_size:(offset + 1) * batch_size]]


# -- model pieces ------------------------------------------------------------------------------
@dataclass
class Pieces:
    """What every step needs besides the model: tokenizer, special tokens, features, the cache."""

    processor: Any
    tokens: TargetTokens
    features: FeatureMaker
    cache: LowerStateCache
    n_frozen: int
    teacher: CleanTeacher | None = None  # the clean-source encoder targets (``[sft].distill_weight`` > 0)


def step_loss(model: torch.nn.Module, rows: list[dict[str, Any]], pieces: Pieces, encoder_trains: bool) -> torch.Tensor:
    """Teacher-forced CE over one batch (token mean), running only the blocks above the cached ones."""
    total, count, _ = step_losses(model, rows, pieces, encoder_trains)
    return total / max(1, count)


def step_losses(model: torch.nn.Module, rows: list[dict[str, Any]], pieces: Pieces,
                encoder_trains: bool) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Summed token CE of one batch, its number of target tokens (what DDP ranks add up), and the final
    encoder states it decoded from (the distillation's student).

    Everything follows the device of the cached states, which is the model's (see the cache).
    """
    hidden = pieces.cache.get([r["id"] for r in rows], [r["audio"] for r in rows])
    with torch.set_grad_enabled(encoder_trains and torch.is_grad_enabled()):
        states = upper_states(model, hidden, pieces.n_frozen)
    inputs, labels = decoder_targets([r["text"] for r in rows], [r["speech_end"] for r in rows],
                                     pieces.processor, pieces.tokens)
    inputs, labels = inputs.to(hidden.device), labels.to(hidden.device)
    logits = decoder_logits(model, states, inputs)
    total = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                              ignore_index=IGNORE_INDEX, reduction="sum")
    return total, int((labels != IGNORE_INDEX).sum()), states


def lr_lambda(total: int, warmup_fraction: float):
    """Linear warmup then linear decay to zero, as a LambdaLR multiplier."""
    warm = max(1, round(warmup_fraction * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(1, total - warm))
    return factor


# -- evaluation --------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: torch.nn.Module, rows: list[dict[str, Any]], pieces: Pieces, decoder: Decoder | None,
             batch_size: int) -> dict[str, float]:
    """Validation loss (teacher forcing) and, with a decoder, the served-path WER."""
    from service.scoring import corpus_score

    was_training = model.training
    model.eval()
    losses = [float(step_loss(model, rows[i:i + batch_size], pieces, False)) for i in range(0, len(rows), batch_size)]
    model.train(was_training)
    out = {"val_loss": float(np.mean(losses))}
    if decoder is not None:
        hyps = decoder.use_model(model)([read_audio(r["audio"]) for r in rows])
        out["val_wer"] = corpus_score((r["text"], h) for r, h in zip(rows, hyps)).wer
        out["val_base_wer"] = corpus_score((r["text"], r["base_hyp"]) for r in rows).wer
    return out


def graded_by(data_dir: str | Path) -> str | None:
    """The model whose decode is the manifests' ``base_hyp`` (``train data``'s summary), if recorded."""
    summary = Path(data_dir) / "summary.json"
    return json.loads(summary.read_text()).get("base_model") if summary.exists() else None


def own_base_hyps(rows: list[dict[str, Any]], grader: str | None, base_model: str,
                  decode: Callable[[list[np.ndarray]], list[str]]) -> list[dict[str, Any]]:
    """Validation rows whose ``base_hyp`` is ``base_model``'s own decode.

    A recipe may grade its clips with another model (``[data].grade_model``); the manifests then hold
    that model's hypotheses, and ``val_base_wer`` would be the grader's WER, not the adapted model's
    starting point. ``decode`` is the unadapted model's served decode; it runs only in that case.
    """
    if grader is None or grader == base_model:
        return rows
    hyps = decode([read_audio(r["audio"]) for r in rows])
    return [{**r, "base_hyp": h, "grade_hyp": r.get("base_hyp")} for r, h in zip(rows, hyps)]


# -- one phase ---------------------------------------------------------------------------------
def train_phase(model: torch.nn.Module, index: int, phase: PhaseConfig, cfg: SFTConfig, train_rows: list[dict],
                val_rows: list[dict], pieces: Pieces, decoder: Decoder | None, out_dir: Path,
                clean_fraction: float, max_steps: int | None = None) -> torch.nn.Module:
    """Train one phase's fresh LoRA; returns the peft-wrapped model (not merged).

    Under ``torchrun`` each rank takes ``rows[rank::world]`` of every global batch of
    ``cfg.batch_size`` rows and the LoRA gradients are summed over ranks (the loss is each rank's
    token sum over the global token count), so the step equals the single-process one; only rank 0
    evaluates, logs and writes checkpoints.
    """
    world = distributed.current()
    torch.manual_seed(cfg.seed + index)
    peft_model = add_lora(model, phase.scope, cfg.upper_encoder_blocks, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    distributed.broadcast_parameters(trainable, world)
    encoder_trains = bool(encoder_block_ids(model.config.encoder_layers, cfg.upper_encoder_blocks, phase.scope))
    distills = encoder_trains and pieces.teacher is not None and cfg.distill_weight > 0
    optimizer = torch.optim.AdamW(param_groups(peft_model, {"encoder": phase.lr_encoder, "decoder": phase.lr_decoder},
                                               cfg.weight_decay))
    total = phase.steps_per_stage * len(phase.curriculum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total, phase.warmup_fraction))
    ckpt_root, prefix = out_dir / "checkpoints", f"phase{index}"
    start = 0
    latest = latest_checkpoint(ckpt_root, prefix)
    if latest is not None:
        start = load_checkpoint(latest, peft_model, optimizer, scheduler)["step"]
        log.info("resumed phase %d at step %d from %s", index, start, latest)
    pools = [sft_pool(train_rows, clean_fraction, wer, cfg.seed, cfg.effect_oversampling) for wer in phase.curriculum]
    metrics_path = out_dir / "metrics.jsonl" if world.main else None
    peft_model.train()
    stop = total if max_steps is None else min(total, max_steps)
    bar = tqdm(range(start, stop), desc=f"SFT {phase.name}", unit="step", initial=start, total=total,
               disable=not world.main)
    for step in bar:
        stage = step // phase.steps_per_stage
        started = time.monotonic()
        # Dropout masks are a pure function of (seed, phase, step, rank): resume needs no RNG state.
        torch.manual_seed(int(np.random.default_rng([cfg.seed, index, step, world.rank]).integers(2**62)))
        loss_value = distill_value = 0.0
        for micro in range(cfg.grad_accum):
            rows = batch_rows(pools[stage], cfg.batch_size, cfg.seed, index, stage, step * cfg.grad_accum + micro)
            if len(rows) < world.size:
                raise ValueError(f"global batch {len(rows)} is smaller than the world size {world.size}")
            rows = distributed.shard(rows, world)
            loss_sum, n_tokens, states = step_losses(peft_model, rows, pieces, encoder_trains)
            n_global = float(distributed.all_sum(n_tokens, world))
            loss = loss_sum / max(1.0, n_global) / cfg.grad_accum
            if distills:
                distill = pieces.teacher.loss_sum(states, rows) / float(distributed.all_sum(len(rows), world))
                distill_value += float(distributed.all_sum(float(distill.detach()), world)) / cfg.grad_accum
                loss = loss + cfg.distill_weight * distill / cfg.grad_accum
            loss.backward()
            loss_value += float(distributed.all_sum(float(loss.detach()), world))
        distributed.sum_gradients(trainable, world)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        record = {"phase": index, "name": phase.name, "step": step + 1, "stage": stage,
                  "max_wer": phase.curriculum[stage], "loss": loss_value, "grad_norm": grad_norm,
                  **({"distill": distill_value} if distills else {}),
                  "lr": {g["name"]: g["lr"] for g in optimizer.param_groups}, "seconds": time.monotonic() - started}
        bar.set_postfix(loss=f"{loss_value:.3f}", stage=stage)
        if world.main and cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or step + 1 == total):
            record.update(evaluate(peft_model, val_rows, pieces, decoder, cfg.batch_size))
            log.info("phase %d step %d: %s", index, step + 1, {k: v for k, v in record.items() if "val" in k})
        if metrics_path is not None:
            append_record(metrics_path, record)
        if cfg.save_every and ((step + 1) % cfg.save_every == 0 or step + 1 == stop):
            if world.main:
                save_checkpoint(ckpt_root / f"{prefix}-step{step + 1}", peft_model, optimizer, scheduler,
                                {"phase": index, "step": step + 1, "world_size": world.size,
                                 "config": cfg.model_dump()})
            distributed.barrier(world)
    return peft_model


# -- the three phases --------------------------------------------------------------------------
def train_sft(cfg: SFTConfig, data_dir: str | Path, clean_fraction: float = 0.1, learnability_max_wer: float = 0.7,
              max_steps: int | None = None) -> Path:
    """Run (or resume) every phase; returns the folder of the final merged checkpoint.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the ranks join a process group (gloo on the CPU, NCCL
    with ``device = "cuda"``, or ``MEGAASR_DIST_BACKEND``), share the threads of a node, and only
    rank 0 writes. With ``cuda`` each rank trains on ``cuda:LOCAL_RANK``.
    """
    world = distributed.init(device=cfg.device)
    device = resolve_device(cfg.device, world.local_rank, world.active)
    torch.set_num_threads(max(1, cfg.threads // world.local_size))
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if world.main:
        (out_dir / "config.json").write_text(json.dumps(cfg.model_dump(), indent=2))
    train_all = read_manifest(Path(data_dir) / "train.jsonl")
    train_rows = learnable(train_all, learnability_max_wer)
    val_all = [r for r in read_manifest(Path(data_dir) / "val.jsonl") if r["scenario"] != CLEAN]
    val_rows = [val_all[i] for i in np.random.default_rng(cfg.seed).permutation(len(val_all))[:cfg.eval_samples]]
    model, processor, base_dir = load_model(cfg.base_model, device)
    n_frozen = model.config.encoder_layers - cfg.upper_encoder_blocks
    features = FeatureMaker(processor, model.config)
    teacher = None
    if cfg.distill_weight > 0:  # before any phase: ``model`` is still the unadapted base
        # The unfiltered manifest: a degraded clip's clean source may itself fail the learnability filter.
        teacher = CleanTeacher(model, clean_sources(train_all), features, read_audio)
    pieces = Pieces(processor, TargetTokens.from_processor(processor, model.config, cfg.no_speech_head), features,
                    LowerStateCache(model, n_frozen, features, read_audio), n_frozen, teacher)
    decoder = Decoder(base_dir, threads=cfg.threads, device=device) if cfg.eval_every and world.main else None
    if decoder is not None:  # before any phase: ``model`` is still the unadapted base
        val_rows = own_base_hyps(val_rows, graded_by(data_dir), cfg.base_model, decoder.use_model(model))
    for index, phase in enumerate(cfg.phases):
        phase_dir = out_dir / f"phase{index}"
        if (phase_dir / "done").exists():
            model = _load_merged(phase_dir / "merged", device)
            pieces.cache.model = model
            continue
        peft_model = train_phase(model, index, phase, cfg, train_rows, val_rows, pieces, decoder, out_dir,
                                 clean_fraction, max_steps)
        if max_steps is not None and max_steps < phase.steps_per_stage * len(phase.curriculum):
            return out_dir  # a partial run (tests, time limits): resume later
        if world.main:
            peft_model.save_pretrained(phase_dir / "adapter")
        model = merge(peft_model) if phase.merge_after else peft_model
        if world.main:
            save_full_checkpoint(model, base_dir, phase_dir / "merged")
            (phase_dir / "done").write_text("ok\n")
        distributed.barrier(world)
        pieces.cache.model = model
    final = out_dir / "final"
    if world.main:
        save_full_checkpoint(model, base_dir, final)
        (final / "megaasr_training.json").write_text(json.dumps(
            {"stage": "sft", "base_model": cfg.base_model, "phases": [p.model_dump() for p in cfg.phases],
             "adapters": [str(out_dir / f"phase{i}" / "adapter") for i in range(len(cfg.phases))],
             "world_size": world.size}, indent=2))
        plot_curves(out_dir / "metrics.jsonl", out_dir / "sft-curves.png")
    distributed.barrier(world)
    return final


def _load_merged(path: Path, device: torch.device) -> torch.nn.Module:
    model, _, _ = load_model(str(path), device)
    return model


def plot_curves(metrics_path: Path, out_png: Path) -> Path | None:
    """Training loss (and the distillation term, dotted) and validation WER per step, one colour per phase."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    raw = read_manifest(metrics_path) if metrics_path.exists() else []
    # A resumed run re-logs the steps after its checkpoint: keep the last record of each step.
    records = sorted({(r["phase"], r["step"]): r for r in raw}.values(), key=lambda r: (r["phase"], r["step"]))
    if not records:
        return None
    fig, (ax_loss, ax_wer) = plt.subplots(1, 2, figsize=(11, 4))
    offset = 0
    for phase in sorted({r["phase"] for r in records}):
        rs = [r for r in records if r["phase"] == phase]
        x = [offset + r["step"] for r in rs]
        (line,) = ax_loss.plot(x, [r["loss"] for r in rs], label=rs[0]["name"])
        distilled = [(offset + r["step"], r["distill"]) for r in rs if "distill" in r]
        if distilled:  # the clean-teacher term (unweighted; "loss" already holds it times distill_weight)
            ax_loss.plot(*zip(*distilled), linestyle=":", color=line.get_color(), label=f"{rs[0]['name']}: distill")
        evals = [(offset + r["step"], r["val_wer"]) for r in rs if "val_wer" in r]
        if evals:
            ax_wer.plot(*zip(*evals), marker="o", label=rs[0]["name"])
        offset = max(x)
    if any("val_base_wer" in r for r in records):
        ax_wer.axhline(next(r["val_base_wer"] for r in records if "val_base_wer" in r), color="grey",
                       linestyle="--", label="base model")
    ax_loss.set(xlabel="step", ylabel="train loss (per token; distill per state)", title="A2S-SFT loss")
    ax_wer.set(xlabel="step", ylabel="WER", title="validation WER (degraded)")
    ax_loss.legend()
    if ax_wer.get_legend_handles_labels()[0]:
        ax_wer.legend()
    else:  # a run stopped before its first evaluation
        ax_wer.text(0.5, 0.5, "no evaluation yet", ha="center", va="center", transform=ax_wer.transAxes)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
