"""DG-WGPO curves: what a reader checks first in an RL run (``rl/rl-curves.png``, written by ``train rl``).

Three panels: the mean group reward and rollout WER of the groups that trained; the share of drawn clips whose K
rollouts all got the same reward (dynamic sampling's zero-variance groups: it rises toward 1 when the policy
stops exploring, and then the steps train nothing) with the KL to the reference and the policy's token entropy;
validation WER. GPU run 3
(docs/training.md) is the run that made the middle panel necessary.

``python -m training.rl_curves METRICS_JSONL OUT_PNG`` draws it for an existing run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from training.data import read_manifest


def zero_variance_share(record: dict) -> float | None:
    """Share of the clips drawn in one step whose rollouts all scored alike (None before the first step)."""
    sampled = record.get("sampled", 0)
    return record.get("zero_variance", 0) / sampled if sampled else None


def plot_rl_curves(metrics_path: Path, out_png: Path) -> Path | None:
    """Draw the three panels from a ``metrics.jsonl`` of :func:`training.rl.train_rl`; None if it is empty."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_manifest(metrics_path) if Path(metrics_path).exists() else []
    if not records:
        return None
    fig, (ax_reward, ax_collapse, ax_val) = plt.subplots(1, 3, figsize=(15, 4))
    trained = [r for r in records if "reward_mean" in r]
    if trained:
        steps = [r["step"] for r in trained]
        ax_reward.plot(steps, [r["reward_mean"] for r in trained], ".", alpha=0.4, label="mean reward")
        ax_reward.plot(steps, [r["rollout_wer"] for r in trained], ".", alpha=0.4, label="rollout WER")
        ax_reward.legend()
    ax_reward.set(xlabel="step", title="groups that trained")
    shares = [(r["step"], s) for r in records if (s := zero_variance_share(r)) is not None]
    if shares:
        ax_collapse.plot(*zip(*shares), ".", alpha=0.5, color="tab:red", label="zero-variance share of draws")
    kls = [(r["step"], r["kl"]) for r in trained if "kl" in r]
    if kls:
        ax_collapse.plot(*zip(*kls), ".", alpha=0.5, color="tab:purple", label="KL to the reference")
    ax_collapse.set(xlabel="step", ylim=(0, 1.05), title="exploration")
    handles, labels = ax_collapse.get_legend_handles_labels()
    entropies = [(r["step"], r["entropy"]) for r in trained if "entropy" in r]
    if entropies:  # logged since round 17; on its own axis (nats)
        ax_entropy = ax_collapse.twinx()
        (line,) = ax_entropy.plot(*zip(*entropies), ".", alpha=0.5, color="tab:green")
        ax_entropy.set(ylabel="token entropy (nats)")
        handles, labels = [*handles, line], [*labels, "token entropy (nats, right axis)"]
    ax_collapse.legend(handles, labels, loc="upper left", fontsize="small")
    evals = [(r["step"], r["val_wer"]) for r in records if "val_wer" in r]
    ax_val.plot(*zip(*evals), marker="o")
    ax_val.set(xlabel="step", ylabel="WER", title="validation WER (degraded)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m training.rl_curves METRICS_JSONL OUT_PNG", file=sys.stderr)
        return 2
    out = plot_rl_curves(Path(argv[0]), Path(argv[1]))
    print(out or f"{argv[0]}: no records")
    return 0 if out else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
