"""Compare several ``megaasr eval`` runs on the same clips: WER and the gain over one base, with intervals.

Why: each training round tries a few variants, and a table of three WERs per variant hides how much
of a difference is the luck of 108 clips. Every run's ``clips.jsonl`` is aligned with the reference
run's (same seeded clips, checked text by text), one system's hypotheses are taken from each
(``routed``, ``robust`` or ``base``; a run of another base model, e.g. whisper-base, is compared
through its ``base`` column), and the relative corpus-WER gain over the reference run's base model
is reported with its paired-bootstrap 95 % interval (:func:`training.eval.gain_interval`).

    python -m training.compare --reference runs/tiny-r3/eval \\
        --run "round 3=runs/tiny-r3/eval" --run "whisper-base=runs/base-ref/eval:base" --out runs/compare
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.scoring import corpus_score
from training.eval import gain_interval, relative_gain, speech_groups

SYSTEM_PREFERENCE = ("routed", "robust", "base")


@dataclass(frozen=True)
class Row:
    name: str
    system: str
    wer: dict[str, float]  # group -> corpus WER (percent)
    gain: dict[str, float]  # group -> relative gain over the reference base (percent)
    interval: dict[str, list[float] | None]  # group -> 95 % bootstrap interval of the gain


def read_clips(run_dir: str | Path) -> list[dict[str, Any]]:
    with open(Path(run_dir) / "clips.jsonl") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def pick_system(clips: list[dict[str, Any]], system: str | None) -> str:
    """The asked system, or the most complete one the run holds (routed > robust > base)."""
    if system:
        if f"{system}_hyp" not in clips[0]:
            raise ValueError(f"the run has no {system!r} hypotheses")
        return system
    return next(s for s in SYSTEM_PREFERENCE if f"{s}_hyp" in clips[0])


def align(reference: list[dict[str, Any]], other: list[dict[str, Any]], system: str) -> list[dict[str, Any]]:
    """Reference clips with ``candidate_hyp`` from ``other``; refuses runs made on different clips."""
    if len(reference) != len(other):
        raise ValueError(f"the runs hold {len(reference)} and {len(other)} clips: not the same evaluation set")
    out = []
    for i, (ref, oth) in enumerate(zip(reference, other)):
        if (ref["text"], ref["scenario"], ref["severity"]) != (oth["text"], oth["scenario"], oth["severity"]):
            raise ValueError(f"clip {i} differs ({ref['id']} {ref['scenario']} vs {oth['id']} {oth['scenario']}): "
                             "not the same evaluation set")
        out.append({**ref, "candidate_hyp": oth[f"{system}_hyp"]})
    return out


def compare_run(name: str, reference: list[dict[str, Any]], other: list[dict[str, Any]],
                system: str | None = None) -> Row:
    """One run's WER by group and its gain over the reference run's base model."""
    chosen = pick_system(other, system)
    groups = speech_groups(align(reference, other, chosen))
    wer, gain, interval = {}, {}, {}
    for group, rows in groups.items():
        base = 100 * corpus_score((c["text"], c["base_hyp"]) for c in rows).wer
        cand = 100 * corpus_score((c["text"], c["candidate_hyp"]) for c in rows).wer
        wer[group] = round(cand, 2)
        gain[group] = relative_gain(base, cand)
        interval[group] = gain_interval(rows, "candidate") if group != "clean" else None
    return Row(name, chosen, wer, gain, interval)


def markdown_table(rows: list[Row], target_gain: float | None = None) -> str:
    head = "| run (system) | clean WER | degraded WER | gain [95 % CI] | 3+ effects WER | gain [95 % CI] |\n"
    head += "|---|---|---|---|---|---|\n"

    def cell(row: Row, group: str) -> str:
        lo_hi = row.interval[group]
        return f"{row.gain[group]}% [{lo_hi[0]} .. {lo_hi[1]}]" if lo_hi else f"{row.gain[group]}%"

    body = "".join(f"| {r.name} ({r.system}) | {r.wer['clean']:.2f} | {r.wer['degraded']:.2f} | {cell(r, 'degraded')} | "
                   f"{r.wer['3+ effects']:.2f} | {cell(r, '3+ effects')} |\n" for r in rows)
    foot = f"\nTarget: a gain of at least {target_gain:g} % on both degraded groups.\n" if target_gain else ""
    return head + body + foot


def plot_gains(rows: list[Row], out_png: Path, target_gain: float | None = None) -> Path:
    """Gain over the base model with its interval, per run, for the degraded groups."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 0.6 * len(rows) + 1.8), sharex=True)
    for ax, group in zip(axes, ("degraded", "3+ effects")):
        ys = range(len(rows))
        gains = [r.gain[group] for r in rows]
        lows = [r.gain[group] - r.interval[group][0] for r in rows]
        highs = [r.interval[group][1] - r.gain[group] for r in rows]
        ax.errorbar(gains, list(ys), xerr=[lows, highs], fmt="o", capsize=4)
        ax.axvline(0, color="grey", lw=0.8)
        if target_gain:
            ax.axvline(target_gain, color="red", ls="--", lw=1)  # named in the title: a legend can hide a point
        ax.set_yticks(list(ys), [f"{r.name} ({r.system})" for r in rows] if ax is axes[0] else [""] * len(rows))
        ax.invert_yaxis()
        target = f"\n(dashed line: target {target_gain:g} %)" if target_gain else ""
        ax.set_title(f"{group}: WER gain over the base{target}", fontsize=10)
        ax.set_xlabel("relative gain, % (95 % bootstrap interval)")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def parse_run(spec: str) -> tuple[str, Path, str | None]:
    """``name=DIR`` or ``name=DIR:system``."""
    if "=" not in spec:
        raise argparse.ArgumentTypeError(f"--run {spec!r}: expected name=DIR[:system]")
    name, rest = spec.split("=", 1)
    path, _, system = rest.partition(":")
    if system and system not in SYSTEM_PREFERENCE:
        raise argparse.ArgumentTypeError(f"--run {spec!r}: system must be one of {', '.join(SYSTEM_PREFERENCE)}")
    return name, Path(path), system or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, help="eval run whose base hypotheses are the baseline")
    parser.add_argument("--run", action="append", type=parse_run, required=True, help="name=DIR[:system]")
    parser.add_argument("--target-gain", type=float, default=15.0, help="drawn as a line (percent; 0: none)")
    parser.add_argument("--out", required=True, help="folder for compare.md, compare.json and compare.png")
    args = parser.parse_args(argv)
    reference = read_clips(args.reference)
    rows = [compare_run(name, reference, read_clips(path), system) for name, path, system in args.run]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown_table(rows, args.target_gain or None)
    (out / "compare.md").write_text(text)
    (out / "compare.json").write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    plot_gains(rows, out / "compare.png", args.target_gain or None)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
