"""Grade an existing training build again with another model, without rendering its audio again.

Why: the paper grades its clips (the WER curriculum and the learnability cut) with the model it adapts, while
the whisper-base recipes graded with tiny.en's decode to save CPU time (``[data].grade_model``, base.toml).
Rendering the clips is half of a build; their grade is a pure function of the audio and the grader, so a
regrade reads the source build's manifests, decodes each graded clip with the new model (the served decode,
as ``train data`` grades) and writes a new build whose rows point at the source's audio files. Rows the build
does not grade (clean copies, noise-only and silent clips) are copied as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

from training.config import DataConfig
from training.data import degraded_rows, read_manifest, record_base_wer, write_build


def regrade_build(source: str | Path, cfg: DataConfig, grade_model: str, threads: int = 2,
                  transcribe=None) -> dict[str, Path]:
    """Write ``cfg.out_dir`` as ``source``'s build graded by ``grade_model``; returns the written paths.

    ``transcribe`` (audio arrays -> texts) replaces the model's served decode in tests.
    """
    source, out_dir = Path(source), Path(cfg.out_dir)
    if source.resolve() == out_dir.resolve():
        raise ValueError(f"{source} is the build being regraded: write the regraded build to another folder")
    summary_path = source / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{source} is not a training build: {summary_path.name} is missing "
                                "(write one with `megaasr train data`)")
    previous = json.loads(summary_path.read_text()).get("base_model")
    rows = {split: [dict(r) for r in read_manifest(source / f"{split}.jsonl")] for split in ("train", "val")}
    graded = [degraded_rows(split) for split in rows.values()]
    missing = [r["audio"] for split in graded for r in split if not Path(r["audio"]).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} audio files of {source} are missing, e.g. {missing[0]}")
    if transcribe is None:
        from training.whisper import Decoder, resolve_model

        transcribe = Decoder(resolve_model(grade_model), threads=threads, device=cfg.device)
    for split in graded:
        for row in split:
            row["grade_previous"] = {"model": previous, "base_wer": row.get("base_wer")}
        record_base_wer(split, transcribe)
    return write_build(rows, cfg, out_dir, grade_model, extra={"regraded_from": str(source),
                                                                "previous_grader": previous})
