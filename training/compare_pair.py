"""Is variant A better than variant B? Their WER difference, paired clip by clip and pooled over eval draws.

Why: ``training.compare`` gives each run's gain over the base with an interval, but two variants' intervals
overlap long before their difference is noise; the question a training round asks is the difference itself.
Each ``--draw A_DIR B_DIR`` pairs two ``megaasr eval`` runs made on the same clips (checked text by text);
several draws (e.g. the standard seed and a fresh one) are pooled. Clips are resampled with replacement,
both variants keeping the same clips, and the micro-averaged WER difference A - B (in points; negative
means A is better) is recomputed each time; the percentile interval is reported per group:
all degraded clips, 3+ effects, clips with/without a given effect, and each draw on its own.

    python -m training.compare_pair --names "round 9" "round 3" \\
        --draw runs/tiny-r9/eval-std runs/served/tiny-r3-std \\
        --draw runs/tiny-r9/eval-replica runs/served/tiny-r3-replica --split-effect crosstalk --out runs/tiny-r9/pair
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.scoring import score
from simulation.effects import canonical_effect
from training.compare import align, pick_system, read_clips
from training.data import clip_effects
from training.eval import speech_groups


@dataclass(frozen=True)
class PairedClip:
    draw: str
    n_effects: int
    effects: tuple[str, ...]
    base_edits: int
    a_edits: int
    b_edits: int
    words: int


@dataclass(frozen=True)
class Difference:
    group: str
    n: int
    base_wer: float
    a_wer: float
    b_wer: float
    a_minus_b: float  # WER points; negative: A is better
    interval: tuple[float, float]  # 95 % paired-bootstrap interval of a_minus_b
    a_gain: float  # relative gain over the base model, percent
    b_gain: float


def paired_clips(draw: str, a_run: list[dict[str, Any]], b_run: list[dict[str, Any]],
                 system: str | None = None) -> list[PairedClip]:
    """The degraded speech clips of one draw, scored for the base model and both variants."""
    a_sys, b_sys = pick_system(a_run, system), pick_system(b_run, system)
    rows = align(a_run, b_run, b_sys)  # refuses runs made on different clips
    out = []
    for clip in speech_groups(rows)["degraded"]:
        base, a, b = (score(clip["text"], clip[key]) for key in ("base_hyp", f"{a_sys}_hyp", "candidate_hyp"))
        if base.reference_words == 0:
            continue
        out.append(PairedClip(draw, clip["n_effects"], clip_effects(clip), base.word_edits, a.word_edits,
                              b.word_edits, base.reference_words))
    return out


def difference(group: str, clips: list[PairedClip], n_boot: int = 2000, seed: int = 0,
               level: float = 0.95) -> Difference:
    """Corpus WERs of base, A and B on ``clips``, and the paired-bootstrap interval of A - B."""
    if not clips:
        raise ValueError(f"group {group!r} holds no clips")
    base, a, b, words = (np.array([getattr(c, f) for c in clips], dtype=float)
                         for f in ("base_edits", "a_edits", "b_edits", "words"))
    idx = np.random.default_rng(seed).integers(0, len(clips), size=(n_boot, len(clips)))
    diffs = 100 * (a[idx].sum(1) - b[idx].sum(1)) / words[idx].sum(1)
    tail = 100 * (1 - level) / 2
    total = words.sum()

    def gain(edits: np.ndarray) -> float:
        return round(100 * (base.sum() - edits.sum()) / base.sum(), 1) if base.sum() else 0.0

    return Difference(group, len(clips), round(100 * base.sum() / total, 2), round(100 * a.sum() / total, 2),
                      round(100 * b.sum() / total, 2), round(100 * (a.sum() - b.sum()) / total, 2),
                      (round(float(np.percentile(diffs, tail)), 2), round(float(np.percentile(diffs, 100 - tail)), 2)),
                      gain(a), gain(b))


def grouped(clips: list[PairedClip], split_effects: list[str]) -> list[Difference]:
    """The pooled groups, the effect splits, then each draw on its own."""
    groups: list[tuple[str, list[PairedClip]]] = [("all degraded", clips),
                                                   ("3+ effects", [c for c in clips if c.n_effects >= 3])]
    for effect in split_effects:
        groups += [(f"with {effect}", [c for c in clips if effect in c.effects]),
                   (f"without {effect}", [c for c in clips if effect not in c.effects])]
    draws = list(dict.fromkeys(c.draw for c in clips))
    if len(draws) > 1:
        groups += [(f"draw {d}", [c for c in clips if c.draw == d]) for d in draws]
    return [difference(name, rows) for name, rows in groups if rows]


def markdown(results: list[Difference], a_name: str, b_name: str) -> str:
    head = (f"| group | n | base | {a_name} | {b_name} | {a_name} - {b_name} [95 % CI] | gain {a_name} | "
            f"gain {b_name} |\n|---|---|---|---|---|---|---|---|\n")
    return head + "".join(f"| {r.group} | {r.n} | {r.base_wer:.2f} | {r.a_wer:.2f} | {r.b_wer:.2f} | "
                          f"{r.a_minus_b:+.2f} [{r.interval[0]:+.2f} .. {r.interval[1]:+.2f}] | {r.a_gain} % | "
                          f"{r.b_gain} % |\n" for r in results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.compare_pair", description=__doc__.split("\n\n")[0])
    parser.add_argument("--draw", nargs=2, action="append", required=True, metavar=("A_DIR", "B_DIR"),
                        help="two eval runs on the same clips (repeat for more draws)")
    parser.add_argument("--names", nargs=2, default=["A", "B"], metavar=("A", "B"))
    parser.add_argument("--system", choices=("routed", "robust", "base"), default=None,
                        help="which hypotheses to compare (default: routed, else robust)")
    parser.add_argument("--split-effect", action="append", default=[], help="also report with/without this effect")
    parser.add_argument("--out", default=None, help="folder for pair.md and pair.json")
    args = parser.parse_args(argv)
    try:
        splits = [canonical_effect(e) for e in args.split_effect]
    except ValueError as exc:
        parser.error(str(exc))
    clips = [c for a_dir, b_dir in args.draw
             for c in paired_clips(Path(a_dir).name, read_clips(a_dir), read_clips(b_dir), args.system)]
    results = grouped(clips, splits)
    text = markdown(results, *args.names)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "pair.md").write_text(text)
        (out / "pair.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
