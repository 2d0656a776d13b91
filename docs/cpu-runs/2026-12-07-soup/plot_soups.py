"""Round 24: relative WER gain over whisper-base of each soup, on the validation speakers vs the eval draws.

Reads the `megaasr eval` outputs under runs/r24/ (and round 22's and round 5's eval draws); run from the root:
    python docs/cpu-runs/2026-12-07-soup/plot_soups.py docs/cpu-runs/2026-12-07-soup/soup-val-vs-eval.png
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

R = Path("runs/r24")
variants = [("r5", "round 5 (0, 1)"), ("r22", "round 22 (1, 0)"), ("s130", "x1.3 (1.3, 0)"), ("m55", "soup (0.5, 0.5)"),
            ("a105", "soup (1, 0.5)"), ("a11", "sum (1, 1)")]
sets = [("val-{}", "validation speakers\nwideband"), ("val8k-{}", "validation speakers\n8 kHz band"),
        ("std-{}", "eval (held out)\nstd draw"), ("fresh-{}", "eval (held out)\nfresh draw")]
special = {("std-{}", "r22"): "runs/r22/std-b5", ("fresh-{}", "r22"): "runs/r22/fresh-b5",
           ("std-{}", "r5"): "runs/r5b5/std-b5", ("fresh-{}", "r5"): "runs/r5b5/fresh-b5"}

def gains(path):
    s = json.loads((Path(path) / "summary.json").read_text())
    o, t = s["overall_degraded"], s["by_effect_count"]["3+ effects"]
    return (100 * (1 - o["robust"]["wer"] / o["base"]["wer"]), 100 * (1 - t["robust"]["wer"] / t["base"]["wer"]))

fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
width = 0.8 / len(variants)
for ax, idx, title in zip(axes, (0, 1), ("all degraded clips", "3+ effects")):
    for i, (v, label) in enumerate(variants):
        xs, ys = [], []
        for j, (pattern, _) in enumerate(sets):
            path = special.get((pattern, v), R / pattern.format(v))
            if (Path(path) / "summary.json").exists():
                xs.append(j + (i - len(variants) / 2 + 0.5) * width)
                ys.append(gains(path)[idx])
        ax.bar(xs, ys, width, label=label)
    ax.axhline(15, color="k", ls="--", lw=1)
    ax.text(-0.45, 15.3, "section 7: 15 %", fontsize=8)
    ax.set_xticks(range(len(sets)))
    ax.set_xticklabels([s[1] for s in sets], fontsize=8)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
axes[0].set_ylabel("WER gain over whisper-base, % (beam 5)")
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(handles, labels, title="adapter (weight of round 22, of round 5)", fontsize=8, loc="lower center", ncol=6)
fig.suptitle("Round 24: weight soups of two whisper-base adapters, picked on validation, measured on the eval")
fig.tight_layout(rect=(0, 0.12, 1, 1))
fig.savefig(sys.argv[1], dpi=110)
