"""Weighted sums of robust bundles' adapters: model soups and scaled task vectors, as one bundle.

Why: every bundle's adapter is a LoRA delta ``B @ A`` on the same base model, and a weighted sum of
such deltas is itself a LoRA (``training.export.combine_adapters`` stacks them along the rank axis
with the weight folded into B). So two fine-tunes of one base model can be averaged (a model soup:
``--bundle A=0.5 --bundle B=0.5``), or one fine-tune's delta pushed further than training took it
(task-vector scaling: ``--bundle A=1.3``), and the result ships and serves (peft or vLLM LoRA) exactly
like a trained bundle. Nothing is retrained; the weights should be picked on validation clips, never
on the evaluation draws.

    python -m training.soup --bundle checkpoints/whisper-base-robust=1.3 --out runs/soup

The router, its threshold and the confidence gate come from the first bundle; the card records the
recipe (each bundle and its weight) so the result can be rebuilt.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from service.models.bundle import Bundle, load_bundle
from training.export import export_bundle


def parse_weighted(spec: str) -> tuple[str, float]:
    """``DIR=W`` (or ``DIR``, weight 1) into the folder and its weight."""
    folder, sep, weight = spec.rpartition("=")
    if not sep:
        return spec, 1.0
    try:
        return folder, float(weight)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{spec!r}: expected DIR=WEIGHT with a number after '='") from None


def soup_card(base_model: str, specs: list[tuple[str, float]]) -> str:
    """Model card of a soup: what it is made of (the folders as given), and how to rebuild it."""
    lines = [f"# Mega-ASR robust LoRA soup for {base_model}", "",
             ("A weighted sum of trained robust adapters on the same base model (`training/soup.py`); "
              "no training ran to make it. Router, threshold and confidence gate are the first bundle's."), "",
             "| bundle | weight |", "|---|---|"]
    lines += [f"| `{folder}` | {weight:g} |" for folder, weight in specs]
    command = " ".join(f"--bundle {folder}={weight:g}" for folder, weight in specs)
    lines += ["", f"Rebuild: `python -m training.soup {command} --out <folder>`", ""]
    return "\n".join(lines)


def make_soup(specs: list[tuple[str, float]], out_dir: str | Path) -> Bundle:
    """Write a bundle whose adapter is ``sum(weight * adapter)`` over the given bundles."""
    if not specs:
        raise ValueError("give at least one --bundle DIR=WEIGHT")
    parts = [(load_bundle(folder), weight) for folder, weight in specs]
    bases = {bundle.base_model for bundle, _ in parts}
    if len(bases) != 1:
        raise ValueError(f"the bundles are on different base models ({sorted(bases)}): their adapters cannot be summed")
    missing = [str(bundle.root) for bundle, _ in parts if bundle.adapter is None]
    if missing:
        raise ValueError(f"no adapter in {missing}: only adapters (not merged-only bundles) can be summed")
    first = parts[0][0]
    card = soup_card(first.base_model, specs)
    bundle = export_bundle(out_dir, first.base_model, [b.adapter for b, _ in parts], None, first.router,
                           first.router_threshold, card, first.robust_logprob_gate,
                           adapter_weights=[w for _, w in parts])
    (Path(out_dir) / "soup.json").write_text(json.dumps(
        {"bundles": [{"path": folder, "weight": weight} for folder, weight in specs]}, indent=2))
    return bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.soup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", action="append", type=parse_weighted, required=True, metavar="DIR=WEIGHT",
                        help="an exported bundle and the weight of its adapter (repeat; default weight 1)")
    parser.add_argument("--out", required=True, help="folder of the new bundle (replaced if it exists)")
    args = parser.parse_args(argv)
    bundle = make_soup(args.bundle, args.out)
    print(f"wrote {bundle.root} ({len(args.bundle)} adapter(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
