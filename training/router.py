"""Train the audio-quality router: clean vs simulated-degraded clips (paper App. "Router").

Label-smoothed cross-entropy (0.1), AdamW, warmup then cosine, gradient clipping, random gain and
weak additive noise as augmentation. Training clips come from the training speakers; accuracy and
AUC are measured on the validation split, whose speakers (and sentences) were never trained on,
and the routing threshold is the one that maximises balanced accuracy there (0.5 on a tie).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from tqdm import tqdm

from service.models.router_net import AudioQualityRouter
from training.config import RouterTrainConfig
from training.data import CLEAN, read_manifest
from training.sources import SAMPLE_RATE, read_audio, telephone_band


def labelled(rows: list[dict[str, Any]], max_seconds: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Audio (cut to ``max_seconds``) and labels: 1 = degraded ("dirty"), 0 = clean."""
    audios = [read_audio(r["audio"])[: int(max_seconds * SAMPLE_RATE)] for r in rows]
    return audios, np.array([0 if r["scenario"] == CLEAN else 1 for r in rows])


def augment(audio: np.ndarray, rng: np.random.Generator, gain_db: float, noise_db: float,
            narrowband_prob: float = 0.0) -> np.ndarray:
    """Random gain and weak white noise: the router must not key on level or digital silence.

    With ``narrowband_prob`` a clip is first band-limited to 8 kHz sampling: bandwidth alone must
    not make clean speech "dirty" (the evaluation prompts are 8 kHz recordings).
    """
    if narrowband_prob and rng.random() < narrowband_prob:
        audio = telephone_band(audio)
    gain = 10 ** (rng.uniform(-gain_db, gain_db) / 20)
    noise = rng.standard_normal(len(audio)).astype(np.float32) * 10 ** (noise_db / 20)
    return np.clip(audio * gain + noise, -1.0, 1.0).astype(np.float32)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    pos, neg = labels == 1, labels == 0
    if not pos.any() or not neg.any():
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * neg.sum()))


def pick_threshold(labels: np.ndarray, scores: np.ndarray, default: float = 0.5) -> float:
    """Threshold with the best balanced accuracy; the default wins ties."""
    def balanced(t: float) -> float:
        pred = scores >= t
        return 0.5 * (pred[labels == 1].mean() + (~pred[labels == 0]).mean())
    candidates = [default] + sorted(set(np.round(scores, 4).tolist()))
    best = max(candidates, key=lambda t: (round(balanced(t), 6), t == default))
    return float(best)


def metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    pred = scores >= threshold
    return {"accuracy": float((pred == (labels == 1)).mean()), "auc": auc(labels, scores),
            "clean_kept": float((~pred[labels == 0]).mean()), "degraded_routed": float(pred[labels == 1].mean()),
            "n": len(labels)}


def predict(router: AudioQualityRouter, audios: list[np.ndarray], batch_size: int) -> np.ndarray:
    return np.concatenate([router.predict_proba(audios[i:i + batch_size]) for i in range(0, len(audios), batch_size)])


def train_router(cfg: RouterTrainConfig, data_dir: str | Path) -> Path:
    """Train, pick the threshold on held-out speakers, save to ``out_dir/final``; returns that folder."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_audio, train_y = labelled(read_manifest(Path(data_dir) / "train.jsonl"), cfg.max_seconds)
    val_audio, val_y = labelled(read_manifest(Path(data_dir) / "val.jsonl"), cfg.max_seconds)
    router = AudioQualityRouter()
    optimizer = torch.optim.AdamW(router.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_audio) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warm = max(1, int(cfg.warmup_fraction * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (s + 1) / warm if s < warm else
                                                  0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    history = []
    best: dict[str, Any] | None = None
    started = time.monotonic()
    for epoch in range(cfg.epochs):
        router.train()
        order = rng.permutation(len(train_audio))
        losses = []
        for start in tqdm(range(0, len(order), cfg.batch_size), desc=f"router epoch {epoch + 1}", unit="batch"):
            idx = order[start:start + cfg.batch_size]
            feats, mask = router.features_from_audio(
                [augment(train_audio[i], rng, cfg.gain_db, cfg.weak_noise_db, cfg.narrowband_prob) for i in idx])
            loss = loss_fn(router(feats, mask), torch.as_tensor(train_y[idx]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(router.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        scores = predict(router, val_audio, cfg.batch_size)
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), **metrics(val_y, scores, 0.5)}
        history.append(record)
        if best is None or (record["auc"], record["accuracy"]) > (best["auc"], best["accuracy"]):
            best = {**record, "state": {k: v.clone() for k, v in router.state_dict().items()}, "scores": scores}
    assert best is not None
    router.load_state_dict(best.pop("state"))
    scores = best.pop("scores")
    threshold = pick_threshold(val_y, scores)
    summary = {"best_epoch": best["epoch"], "threshold": threshold, "val_at_0.5": metrics(val_y, scores, 0.5),
               "val_at_threshold": metrics(val_y, scores, threshold), "history": history,
               "train_clips": len(train_y), "train_degraded": int(train_y.sum()),
               "val_speakers_held_out": True, "seconds": round(time.monotonic() - started, 1),
               "config": cfg.model_dump()}
    router.mark_trained({k: v for k, v in summary.items() if k != "history"})
    final = router.save(out_dir / "final")
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    return final
