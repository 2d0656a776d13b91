"""DG-WGPO: GRPO group-relative advantages with the DAPO loss and the dual-granularity reward (§4).

One optimiser step, top to bottom (:func:`train_rl`):

1. draw clips from the targeted split (mid/high base WER, learnable);
2. sample K rollouts per clip from the current policy (temperature 0.5, top-p 0.95, top-k 50,
   repetition penalty 1.08) with the service's own cached decoder and timestamp rules;
3. score them with :mod:`training.reward` and turn each group into advantages; **dynamic
   sampling**: a group whose rewards all agree carries no signal and is replaced by a fresh clip
   (at most ``max_resample`` times), otherwise dropped; overlong (truncated) rollouts are masked out;
4. ``iterations_per_batch`` updates of the DAPO objective: token-level clipped ratio with the
   asymmetric range [1 - 0.2, 1 + 0.28], plus beta = 0.04 times the k3 KL estimate to the
   reference (the SFT model = the policy with its LoRA switched off), averaged over all tokens.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from service.engines.decoding import TokenDecoder
from service.engines.whisper_runner import WhisperRunner
from training.config import RLConfig
from training.data import CLEAN, learnable, read_manifest
from training.device import resolve_device
from training.encoder_cache import LowerStateCache, upper_states
from training.lora import add_lora, merge
from training.metrics_log import append_record
from training.response_logprobs import response_logprobs, response_logprobs_and_entropy
from training.reward import RewardConfig, group_advantages, group_rewards, zero_variance_group
from training.rl_curves import plot_rl_curves
from training.sources import read_audio
from training.whisper import Decoder, FeatureMaker, load_model, save_full_checkpoint, unwrap

log = logging.getLogger(__name__)


@dataclass
class Group:
    """K rollouts of one clip, with their rewards and advantages."""

    row: dict[str, Any]
    prompt: list[int]
    responses: list[list[int]]  # sampled tokens, EOT included when the rollout finished
    finished: list[bool]
    texts: list[str]
    rewards: list[float]
    advantages: list[float] = field(default_factory=list)


# -- sampling ----------------------------------------------------------------------------------
def kept_candidates(logits: torch.Tensor, top_k: int, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k, then the smallest set whose probability reaches top-p: ``(logits, token ids)`` per row, sorted by
    logit, dropped candidates at -inf.

    Why not mask the whole vocabulary: sorting and sampling 51,864 logits per rollout per token cost ~0.3 s per
    token at 128 rollouts on a CPU (where the rules run), and only the top-k can ever be drawn.
    """
    if top_k > 0:
        values, ids = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1)  # sorted, largest first
    else:
        values, ids = torch.sort(logits, descending=True, dim=-1)
    if top_p < 1.0:
        probs = torch.softmax(values, dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= top_p  # keep the token that crosses top_p
        values = values.masked_fill(drop, float("-inf"))
    return values, ids


def sample_tokens(logits: torch.Tensor, top_k: int, top_p: float, generator: torch.Generator) -> torch.Tensor:
    """One token per row, drawn from the top-k / top-p candidates (the same law as sampling the filtered
    vocabulary, drawn over the candidates only)."""
    values, ids = kept_candidates(logits, top_k, top_p)
    choice = torch.multinomial(torch.softmax(values, dim=-1), 1, generator=generator)
    return ids.gather(1, choice)[:, 0]


def repetition_penalty(logits: torch.Tensor, histories: list[list[int]], penalty: float, below: int) -> torch.Tensor:
    """CTRL-style penalty on text tokens already generated (ids below ``below``)."""
    if penalty == 1.0:
        return logits
    for row, seq in enumerate(histories):
        seen = sorted({t for t in seq if t < below})
        if seen:
            idx = torch.tensor(seen)
            values = logits[row, idx]
            logits[row, idx] = torch.where(values > 0, values / penalty, values * penalty)
    return logits


@torch.no_grad()
def sample_rollouts(policy: torch.nn.Module, rules: TokenDecoder, encoder_states: torch.Tensor, prompt: list[int],
                    k: int, cfg: RLConfig, generator: torch.Generator) -> tuple[list[list[int]], list[bool]]:
    """K sampled continuations per clip (rows grouped clip by clip) and whether each finished.

    The K rows of a clip share its cross-attention keys (``group_size``), so a clip's rows leave the
    batch together, once all of them have finished; until then a finished row is fed EOT and ignored.
    The runner returns logits on the CPU, so the rules, the penalty and the sampling (``generator``
    is a CPU generator) run there whatever the model's device: the draws do not depend on it.
    """
    runner = WhisperRunner(unwrap(policy))
    rules.runner = runner
    eot = rules.vocab.eot
    batch = encoder_states.shape[0] * k
    state = runner.start(encoder_states, len(prompt) + cfg.max_new_tokens, group_size=k)
    logits = runner.step(torch.tensor([prompt] * batch), state)[:, -1]
    in_state = torch.arange(batch)  # rows of the state, whole groups, in order
    generated: list[list[int]] = [[] for _ in range(batch)]
    finished = [False] * batch
    for step in range(cfg.max_new_tokens):
        rows = in_state.tolist()
        sampling = [i for i, row in enumerate(rows) if not finished[row]]
        histories = [generated[rows[i]] for i in sampling]
        ruled = rules._apply_rules(logits[sampling], histories, first=step == 0)
        ruled = repetition_penalty(ruled, histories, cfg.repetition_penalty, eot)
        tokens = sample_tokens(ruled / cfg.temperature, cfg.top_k, cfg.top_p, generator)
        feed = torch.full((len(rows),), eot, dtype=torch.long)
        for i, tok in zip(sampling, tokens.tolist()):
            generated[rows[i]].append(tok)
            finished[rows[i]] = tok == eot
            feed[i] = tok
        if all(finished) or step == cfg.max_new_tokens - 1:
            break
        keep = [i for i, row in enumerate(rows) if not all(finished[row - row % k: row - row % k + k])]
        if len(keep) < len(rows):
            keep_t = torch.tensor(keep)
            in_state, feed = in_state[keep_t], feed[keep_t]
            state = state.select(keep_t.to(encoder_states.device))
        logits = runner.step(feed[:, None], state)[:, -1]
    return generated, finished


# -- the policy objective ----------------------------------------------------------------------
def response_batch(groups: list[Group], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoder inputs, targets, loss mask and advantages for every rollout of every group.

    The width is that of the longest *finished* rollout: a truncated one is masked out (overlong
    filtering) and its tail beyond that width is cut, which changes nothing scored (causal decoder).
    """
    seqs = [(g.prompt, resp, ok, adv) for g in groups for resp, ok, adv in zip(g.responses, g.finished, g.advantages)]
    width = max([len(p) + len(r) for p, r, ok, _ in seqs if ok] or [len(seqs[0][0]) + 1]) - 1
    inputs = torch.full((len(seqs), width), pad, dtype=torch.long)
    targets = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width))
    advantages = torch.zeros(len(seqs))
    for i, (prompt, resp, ok, adv) in enumerate(seqs):
        full = (prompt + resp)[: width + 1]
        inputs[i, : len(full) - 1] = torch.tensor(full[:-1])
        targets[i, : len(full) - 1] = torch.tensor(full[1:])
        if ok:  # overlong filtering: a truncated rollout contributes nothing
            mask[i, len(prompt) - 1: len(full) - 1] = 1.0
        advantages[i] = adv
    return inputs, targets, mask, advantages


def token_logprobs(policy: torch.nn.Module, hidden: torch.Tensor, n_frozen: int, k: int,
                   inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log pi(target token) where ``mask`` is set (0 elsewhere); the encoder runs once per clip and its
    cross-attention keys are shared by the clip's K rollouts (:mod:`training.response_logprobs`)."""
    return response_logprobs(policy, upper_states(policy, hidden, n_frozen), k, inputs, targets, mask)


def token_logprobs_and_entropy(policy: torch.nn.Module, hidden: torch.Tensor, n_frozen: int, k: int,
                               inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`token_logprobs` and the policy's entropy at the same positions."""
    logp, entropy = response_logprobs_and_entropy(policy, upper_states(policy, hidden, n_frozen), k, inputs,
                                                  targets, mask)
    assert entropy is not None
    return logp, entropy


def dapo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip_low: float, clip_high: float, kl_beta: float,
              entropy: torch.Tensor | None = None, entropy_coef: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Token-level clipped surrogate (asymmetric clip) + beta * k3 KL, averaged over all response tokens;
    minus ``entropy_coef`` times the token entropy when given (not the paper's: ``[rl].entropy_coef``)."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None]
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * adv)
    log_ref_ratio = ref_logp - logp
    kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1.0
    per_token = -surrogate + kl_beta * kl
    if entropy is not None and entropy_coef:
        per_token = per_token - entropy_coef * entropy
    n = mask.sum().clamp(min=1.0)
    loss = (per_token * mask).sum() / n
    stats = {"kl": float((kl.detach() * mask).sum() / n),
             "clip_frac": float((((ratio.detach() < 1 - clip_low) | (ratio.detach() > 1 + clip_high)).float() * mask).sum() / n)}
    if entropy is not None:
        stats["entropy"] = float((entropy.detach() * mask).sum() / n)
    return loss, stats


def policy_update(policy, groups: list[Group], hidden: torch.Tensor, n_frozen: int, k: int, optimizer,
                  cfg: RLConfig, pad: int) -> dict[str, float]:
    """``iterations_per_batch`` DAPO steps on one batch of groups (old/ref log-probs computed once)."""
    inputs, targets, mask, advantages = (t.to(hidden.device) for t in response_batch(groups, pad))
    policy.eval()  # no dropout: old and new log-probs must agree before the first update
    with torch.no_grad():
        old_logp = token_logprobs(policy, hidden, n_frozen, k, inputs, targets, mask)
        with policy.disable_adapter():
            ref_logp = token_logprobs(policy, hidden, n_frozen, k, inputs, targets, mask)
    stats: dict[str, float] = {}
    params = [p for p in policy.parameters() if p.requires_grad]
    for _ in range(cfg.iterations_per_batch):
        logp, entropy = token_logprobs_and_entropy(policy, hidden, n_frozen, k, inputs, targets, mask)
        loss, stats = dapo_loss(logp, old_logp, ref_logp, advantages, mask, cfg.clip_low, cfg.clip_high, cfg.kl_beta,
                                entropy, cfg.entropy_coef)
        loss.backward()
        stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        stats["loss"] = float(loss.detach())
    return stats


# -- the loop ----------------------------------------------------------------------------------
def rl_rows(rows: list[dict[str, Any]], cfg: RLConfig) -> list[dict[str, Any]]:
    """Targeted split: degraded, learnable, and not already easy for the initial model."""
    return [r for r in learnable(rows) if r["scenario"] != CLEAN and r["base_wer"] >= cfg.min_base_wer]


def collect_groups(policy, rules, cache: LowerStateCache, n_frozen: int, pool: list[dict], rng: np.random.Generator,
                   cfg: RLConfig, reward_cfg: RewardConfig, tokenizer, generator: torch.Generator
                   ) -> tuple[list[Group], dict[str, int]]:
    """Rollout groups for one step, with dynamic sampling of zero-variance groups."""
    prompt = rules.vocab.prompt("en", "transcribe")
    groups: list[Group] = []
    counts = {"sampled": 0, "zero_variance": 0, "dropped": 0}
    wanted = cfg.prompts_per_step
    budget = wanted + cfg.max_resample
    while len(groups) < wanted and counts["sampled"] < budget:
        rows = [pool[int(i)] for i in rng.integers(len(pool), size=min(wanted - len(groups), budget - counts["sampled"]))]
        counts["sampled"] += len(rows)
        hidden = cache.get([r["id"] for r in rows], [r["audio"] for r in rows])
        policy.eval()
        with torch.no_grad():
            states = upper_states(policy, hidden, n_frozen)
        responses, finished = sample_rollouts(policy, rules, states, prompt, cfg.group_size, cfg, generator)
        for j, row in enumerate(rows):
            resp = responses[j * cfg.group_size:(j + 1) * cfg.group_size]
            fin = finished[j * cfg.group_size:(j + 1) * cfg.group_size]
            texts = [tokenizer.decode([t for t in r if t < rules.vocab.eot]).strip() for r in resp]
            rewards = group_rewards(texts, row["text"], reward_cfg)
            if zero_variance_group(rewards):
                counts["zero_variance"] += 1
                continue
            groups.append(Group(row, prompt, resp, fin, texts, rewards, group_advantages(rewards)))
    counts["dropped"] = wanted - len(groups)
    return groups, counts


def cosine_with_warmup(total: int, warmup_fraction: float):
    warm = max(1, round(warmup_fraction * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
    return factor


def start_checkpoint(init: str, out_dir: Path) -> str:
    """The merged checkpoint RL starts from: ``init`` itself, or a served bundle's base + adapter merged.

    Why a bundle: the shipped checkpoint is a bundle (base model name + one combined adapter), and RL from
    it needs no SFT run on the machine that does the RL. The merge is written to ``out_dir/init`` with a
    training record that names the bundle's adapter, so ``megaasr export`` combines it with the RL adapter
    into one adapter, exactly as after SFT.
    """
    path = Path(init)
    if not (path / "bundle.json").is_file():
        return init
    from peft import PeftModel

    from training.eval import robust_model
    from training.export import load_bundle

    bundle = load_bundle(path)
    if bundle.adapter is None:  # export combines the bundle's adapter with RL's: there must be one
        raise ValueError(f"{path}: the bundle has no adapter; to start RL from the base model, set [rl].init to "
                         f"{bundle.base_model!r}")
    model, source_dir = robust_model(init, "cpu")  # the bundle's robust model, as `megaasr eval` loads it
    merged = model.merge_and_unload() if isinstance(model, PeftModel) else model
    target = save_full_checkpoint(merged, source_dir, out_dir / "init")
    (target / "megaasr_training.json").write_text(json.dumps(
        {"stage": "bundle", "base_model": bundle.base_model, "init": str(path),
         "adapters": [str(bundle.adapter)]}, indent=2))
    log.info("RL starts from bundle %s (%s + its adapter), merged into %s", path, bundle.base_model, target)
    return str(target)


def train_rl(cfg: RLConfig, data_dir: str | Path) -> Path:
    """Run DG-WGPO from the SFT checkpoint on ``cfg.device``; writes ``adapter/`` and the merged ``final/``."""
    from service.scoring import corpus_score

    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(cfg.model_dump(), indent=2))
    pool = rl_rows(read_manifest(Path(data_dir) / "train.jsonl"), cfg)
    val_all = [r for r in read_manifest(Path(data_dir) / "val.jsonl") if r["scenario"] != CLEAN]
    val_rows = [val_all[i] for i in np.random.default_rng(cfg.seed).permutation(len(val_all))[:cfg.eval_samples]]
    torch.manual_seed(cfg.seed)
    model, processor, init_dir = load_model(start_checkpoint(cfg.init, out_dir), device)
    n_frozen = model.config.encoder_layers - cfg.upper_encoder_blocks
    cache = LowerStateCache(model, n_frozen, FeatureMaker(processor, model.config), read_audio)
    policy = add_lora(model, cfg.scope, cfg.upper_encoder_blocks, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout)
    decoder = Decoder(init_dir, threads=cfg.threads, device=device)
    rules = TokenDecoder(WhisperRunner(unwrap(policy)), decoder.transcriber.vocab)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(cfg.steps, cfg.warmup_fraction))
    reward_cfg = RewardConfig(tau=cfg.reward_tau)
    rng = np.random.default_rng(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    metrics_path = out_dir / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)  # RL does not resume: a rerun starts a fresh log

    def validate() -> dict[str, float]:
        hyps = decoder.use_model(policy)([read_audio(r["audio"]) for r in val_rows])
        return {"val_wer": corpus_score((r["text"], h) for r, h in zip(val_rows, hyps)).wer}

    start_eval = validate()
    append_record(metrics_path, {"step": 0, **start_eval})
    loop_started = time.monotonic()
    for step in tqdm(range(cfg.steps), desc="DG-WGPO", unit="step"):
        started = time.monotonic()
        groups, counts = collect_groups(policy, rules, cache, n_frozen, pool, rng, cfg, reward_cfg,
                                        processor.tokenizer, generator)
        record: dict[str, Any] = {"step": step + 1, **counts, "groups": len(groups)}
        if groups:
            hidden = cache.get([g.row["id"] for g in groups], [g.row["audio"] for g in groups])
            record.update(policy_update(policy, groups, hidden, n_frozen, cfg.group_size, optimizer, cfg,
                                        decoder.transcriber.vocab.eot))
            record["reward_mean"] = float(np.mean([r for g in groups for r in g.rewards]))
            record["rollout_wer"] = float(np.mean([corpus_score([(g.row["text"], t)]).wer for g in groups for t in g.texts]))
        scheduler.step()
        record["seconds"] = time.monotonic() - started
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0:
            record.update(validate())
        over_time = cfg.max_minutes is not None and time.monotonic() - loop_started > 60.0 * cfg.max_minutes
        stop = over_time and step + 1 < cfg.steps
        if stop:
            if "val_wer" not in record:
                record.update(validate())
            record["stopped"] = f"time limit: {cfg.max_minutes} min after step {step + 1} of {cfg.steps}"
        append_record(metrics_path, record)
        log.info("RL step %d: %s", step + 1, record)
        if stop:
            log.warning("DG-WGPO stopped by [rl].max_minutes after step %d of %d", step + 1, cfg.steps)
            break
    plot_rl_curves(metrics_path, out_dir / "rl-curves.png")
    policy.save_pretrained(out_dir / "adapter")
    final = save_full_checkpoint(merge(policy), init_dir, out_dir / "final")
    previous = json.loads((Path(init_dir) / "megaasr_training.json").read_text()) \
        if (Path(init_dir) / "megaasr_training.json").exists() else {"adapters": [], "base_model": str(init_dir)}
    (final / "megaasr_training.json").write_text(json.dumps(
        {"stage": "rl", "base_model": previous.get("base_model"), "init": str(init_dir),
         "adapters": previous.get("adapters", []) + [str(out_dir / "adapter")]}, indent=2))
    return final
