"""Recipe variants trained side by side on one set of clips (``scripts/device_train.sh CONFIG VARIANT ...``).

Why: a lent GPU call is 10 minutes and a tiny model leaves most of the GPU idle, so two variants of a recipe can
train at once after one ``train data``; that is only sound if they read the same clips with the same base model
and write to different folders, which this checks before any device time is spent.

``python -m training.variants [--stage rl] CONFIG [CONFIG ...]`` prints ``NAME TRAIN_DIR EVAL_DIR`` per variant
(NAME: the file name without ``.toml``; TRAIN_DIR: the ``[sft]`` out_dir, or ``[rl]``'s with ``--stage rl``, the
stage the device run trains: GPU run 3 trains DG-WGPO variants from the shipped bundle) or exits 2 with the reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

from training.config import load_config


def variant_dirs(paths: list[str | Path], stage: str = "sft") -> list[tuple[str, str, str]]:
    """``(name, the stage's out_dir, eval out_dir)`` per recipe; ValueError if they cannot share one data stage."""
    if stage not in ("sft", "rl"):
        raise ValueError(f"stage must be sft or rl, got {stage!r}")
    if not paths:
        raise ValueError("no recipe given")
    names = [Path(p).stem for p in paths]
    if len(set(names)) != len(names):
        raise ValueError(f"variants need distinct file names, got {names}")
    cfgs = [load_config(p) for p in paths]
    first = cfgs[0]
    for name, cfg in zip(names[1:], cfgs[1:]):
        if cfg.data != first.data:
            raise ValueError(f"{name} builds other clips than {names[0]}: variants share one [data]")
        if cfg.sft.base_model != first.sft.base_model:
            raise ValueError(f"{name} adapts {cfg.sft.base_model}, {names[0]} {first.sft.base_model}")
    train_dirs = [getattr(c, stage).out_dir for c in cfgs]
    dirs = train_dirs + [c.eval.out_dir for c in cfgs]
    if len(set(dirs)) != len(dirs):
        raise ValueError(f"variants need distinct [{stage}] and [eval] out_dir (one would overwrite another)")
    return [(name, train_dir, cfg.eval.out_dir) for name, train_dir, cfg in zip(names, train_dirs, cfgs)]


def main(argv: list[str]) -> int:
    stage = "sft"
    if argv[:1] == ["--stage"]:
        stage, argv = (argv[1] if len(argv) > 1 else ""), argv[2:]
    try:
        rows = variant_dirs(argv, stage)
    except (ValueError, OSError) as err:
        print(f"device_train: {err}", file=sys.stderr)
        return 2
    for row in rows:
        print(*row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
