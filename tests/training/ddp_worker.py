"""Run by tests/training/test_ddp.py, once under ``torchrun --nproc_per_node 2`` and once alone.

Trains one SFT phase of a tiny Whisper for 4 steps without dropout (comparable across world
sizes), the same with the clean-teacher distillation term (each clip's "clean source" is a seeded
noisy copy written here, so the term is not zero), then with dropout 4 steps straight and again
interrupted after step 2 and resumed from the checkpoint in a fresh model; saves this rank's LoRA
tensors (the losses are in metrics.jsonl).
Usage: python ddp_worker.py MODEL_DIR TRAIN_JSONL OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from training import distributed
from training.config import PhaseConfig, SFTConfig
from training.data import read_manifest
from training.distill import CleanTeacher
from training.encoder_cache import LowerStateCache
from training.sft import Pieces, train_phase
from training.sources import read_audio, write_audio
from training.whisper import FeatureMaker, TargetTokens, load_model


def main(model_path: str, train_jsonl: str, out: str) -> None:
    world = distributed.init("gloo")
    torch.set_num_threads(1)
    rows = read_manifest(train_jsonl)
    phase = PhaseConfig(name="joint", scope="joint", steps_per_stage=4, lr_encoder=3e-3, lr_decoder=3e-3,
                        warmup_fraction=0.2)
    cfg = SFTConfig(base_model=model_path, out_dir=out, upper_encoder_blocks=1, phases=[phase], batch_size=4,
                    eval_every=0, save_every=2, threads=1)

    def run(folder: Path, max_steps: int, dropout: float = 0.1, distill: float = 0.0) -> dict[str, torch.Tensor]:
        folder.mkdir(parents=True, exist_ok=True)
        model, processor, _ = load_model(model_path)
        features = FeatureMaker(processor, model.config)
        teacher = CleanTeacher(model, sources, features, read_audio) if distill else None
        pieces = Pieces(processor, TargetTokens.from_processor(processor, model.config), features,
                        LowerStateCache(model, 1, features, read_audio), 1, teacher)
        c = cfg.model_copy(update={"out_dir": str(folder), "distill_weight": distill}, deep=True)
        c.lora.dropout = dropout  # > 0: per-rank dropout masks, which resume must reproduce too
        peft_model = train_phase(model, 0, c.phases[0], c, rows, rows, pieces, None, folder, 0.0, max_steps=max_steps)
        return {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}

    root = Path(out)
    sources = {}
    for i, row in enumerate(rows):  # every rank writes the same seeded files (its own folder)
        path = root / f"rank{world.rank}-source-{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        audio = read_audio(row["audio"])
        write_audio(path, audio + 0.05 * np.random.default_rng(i).standard_normal(len(audio)).astype(np.float32))
        sources[row["id"]] = str(path)
        row.update(clean_id=row["id"], duration=len(audio) / 16000)
    nodrop = run(root / "nodrop", 4, dropout=0.0)  # deterministic: comparable with one process
    run(root / "distill", 4, dropout=0.0, distill=100.0)  # the tiny random encoder's MSE is ~1e-3
    straight = run(root / "straight", 4)
    run(root / "resumed", 2)
    resumed = run(root / "resumed", 4)
    torch.save({"nodrop": nodrop, "straight": straight, "resumed": resumed, "world": world.size},
               root / f"rank{world.rank}.pt")
    distributed.barrier(world)


if __name__ == "__main__":
    main(*sys.argv[1:4])
