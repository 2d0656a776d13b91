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
from training.data import CLEAN, NOISE_ONLY, SILENT, read_manifest
from training.device import resolve_device
from training.sources import SAMPLE_RATE, read_audio, telephone_band


def labelled(rows: list[dict[str, Any]], max_seconds: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Audio (cut to ``max_seconds``) and labels: 1 = degraded ("dirty"), 0 = clean.

    Noise-only and silent clips (SFT's empty-target rows) are neither and are left out.
    """
    rows = [r for r in rows if r["scenario"] not in (NOISE_ONLY, SILENT)]
    audios = [read_audio(r["audio"])[: int(max_seconds * SAMPLE_RATE)] for r in rows]
    return audios, np.array([0 if r["scenario"] == CLEAN else 1 for r in rows])


def real_speaker_clips(paths: list[str], chunk_seconds: float, copies: int, seed: int
                       ) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Real clean recordings cut into ``chunk_seconds`` pieces (label 0), each also simulated
    ``copies`` times with a random one of the 54 scenarios at linear severity (label 1).

    Returns audio, labels and a group name per clip (the file stem) for per-speaker reporting.
    """
    import glob

    from simulation import resolve_scenarios, simulate

    files = sorted({f for pattern in paths for f in (glob.glob(pattern) or [pattern])})
    names = resolve_scenarios("all")
    rng = np.random.default_rng([seed, 77])
    audios: list[np.ndarray] = []
    labels: list[int] = []
    groups: list[str] = []
    step = int(chunk_seconds * SAMPLE_RATE)
    for path in files:
        audio = read_audio(path)
        pieces = [audio[i:i + step] for i in range(0, max(1, len(audio) - step // 2), step)]
        for piece in pieces:
            if len(piece) < SAMPLE_RATE:  # under a second: too little speech to judge
                continue
            audios.append(piece)
            labels.append(0)
            groups.append(Path(path).stem)
            for _ in range(copies):
                scenario = names[int(rng.integers(len(names)))]
                result = simulate(piece, SAMPLE_RATE, scenario, None, int(rng.integers(2**31)),
                                  severity_mapping="linear")
                audios.append(result.audio.astype(np.float32))
                labels.append(1)
                groups.append(Path(path).stem)
    return audios, np.array(labels, dtype=np.int64), groups


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
    """Train on ``cfg.device``, pick the threshold on held-out speakers, save to ``out_dir/final``.

    Returns that folder. The weights are initialised on the CPU (the same start on every device)
    and saved from the CPU.
    """
    if any("asterisk" in p.lower() or "allison" in p.lower() for p in cfg.real_clean_train):
        raise ValueError("the Asterisk speaker (Allison) is the evaluation speaker: not in the router's training data")
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_audio, train_y = labelled(read_manifest(Path(data_dir) / "train.jsonl"), cfg.max_seconds)
    n_tts_train = len(train_y)
    if cfg.real_clean_train:  # real people in the clean class (and their simulated copies in the other)
        real_audio, real_y, _ = real_speaker_clips(cfg.real_clean_train, cfg.chunk_seconds, cfg.real_degraded_copies,
                                                   cfg.seed)
        real_audio, real_y = real_audio * cfg.real_oversample, np.tile(real_y, cfg.real_oversample)
        train_audio, train_y = train_audio + real_audio, np.concatenate([train_y, real_y])
    val_rows = [r for r in read_manifest(Path(data_dir) / "val.jsonl") if r["scenario"] not in (NOISE_ONLY, SILENT)]
    val_audio, val_y = labelled(val_rows, cfg.max_seconds)
    val_real = np.array([r["speaker"] in cfg.real_val_speakers for r in val_rows])
    if cfg.real_clean_train or cfg.narrowband_val:
        # The held-out real speaker(s) also in chunks with simulated copies, so the real-speaker
        # numbers rest on more than a handful of clips.
        real_files = sorted({r["audio"] for r in val_rows if r["speaker"] in cfg.real_val_speakers
                             and r["scenario"] == CLEAN})
        extra_audio, extra_y, _ = real_speaker_clips(real_files, cfg.chunk_seconds, cfg.real_degraded_copies,
                                                     cfg.seed + 1)
        val_audio, val_y = val_audio + extra_audio, np.concatenate([val_y, extra_y])
        val_real = np.concatenate([val_real, np.ones(len(extra_y), dtype=bool)])
    if cfg.narrowband_val:  # clean speech through a telephone band is still clean
        idx = [i for i in range(len(val_y)) if val_y[i] == 0]
        val_audio = val_audio + [telephone_band(val_audio[i]) for i in idx]
        val_y = np.concatenate([val_y, np.zeros(len(idx), dtype=np.int64)])
        val_real = np.concatenate([val_real, val_real[idx]])
    router = AudioQualityRouter().to(device)
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
            loss = loss_fn(router(feats.to(device), mask.to(device)), torch.as_tensor(train_y[idx], device=device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(router.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        scores = predict(router, val_audio, cfg.batch_size)
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), **metrics(val_y, scores, 0.5)}
        if val_real.any():
            record["real_auc"] = auc(val_y[val_real], scores[val_real])
        history.append(record)
        if best is None or (record["auc"], record["accuracy"]) > (best["auc"], best["accuracy"]):
            best = {**record, "state": {k: v.clone() for k, v in router.state_dict().items()}, "scores": scores}
    assert best is not None
    router.load_state_dict(best.pop("state"))
    router.cpu()
    scores = best.pop("scores")
    threshold = pick_threshold(val_y, scores)
    summary = {"best_epoch": best["epoch"], "threshold": threshold, "val_at_0.5": metrics(val_y, scores, 0.5),
               "val_at_threshold": metrics(val_y, scores, threshold), "history": history,
               "val_real_speakers": cfg.real_val_speakers,
               "val_real_at_threshold": metrics(val_y[val_real], scores[val_real], threshold) if val_real.any() else None,
               "train_clips": len(train_y), "train_degraded": int(train_y.sum()),
               "train_real_clips": len(train_y) - n_tts_train,
               "val_speakers_held_out": True, "seconds": round(time.monotonic() - started, 1),
               "config": cfg.model_dump()}
    router.mark_trained({k: v for k, v in summary.items() if k != "history"})
    final = router.save(out_dir / "final")
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    return final
