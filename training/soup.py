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
from typing import Any

from service.models.bundle import Bundle, load_bundle
from training.export import export_bundle, model_card, router_summary, writing_destroys


def parse_weighted(spec: str) -> tuple[str, float]:
    """``DIR=W`` (or ``DIR``, weight 1) into the folder and its weight."""
    folder, sep, weight = spec.rpartition("=")
    if not sep:
        return spec, 1.0
    try:
        return folder, float(weight)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{spec!r}: expected DIR=WEIGHT with a number after '='") from None


def soup_card(base_model: str, specs: list[tuple[str, float]], rank: int,
              eval_summary: dict[str, Any] | None = None, router: dict[str, Any] | None = None) -> str:
    """Model card of a soup: its eval numbers, what it is made of (folders as given) and how to rebuild it."""
    recipe = {"soup": [{"bundle": folder, "weight": weight} for folder, weight in specs], "adapter_rank": rank}
    card = model_card(base_model, recipe, eval_summary, router, stage="soup")
    lines = ["## Soup", "", "| bundle | weight |", "|---|---|"]
    lines += [f"| `{folder}` | {weight:g} |" for folder, weight in specs]
    command = " ".join(f"--bundle {folder}={weight:g}" for folder, weight in specs)
    lines += ["", (f"Rebuild: `python -m training.soup {command} --out <folder>`. No training ran to make it; "
                   "router, threshold and confidence gate are the first bundle's."), "",
              (f"The summed adapter has rank {rank} (the ranks add up); vLLM serves LoRA up to rank 16 by "
               f"default, so start it with `--max-lora-rank {_vllm_rank(rank)}`." if rank > 16 else
               f"The summed adapter has rank {rank}."), ""]
    head, sep, tail = card.partition("## Training configuration")
    return head + "\n".join(lines) + "\n" + sep + tail


def _vllm_rank(rank: int) -> int:
    """The smallest ``--max-lora-rank`` value vLLM accepts (8, 16, 32, 64, ...) that holds ``rank``."""
    choices = (8, 16, 32, 64, 128, 256, 320, 512)
    return next((c for c in choices if c >= rank), rank)


def make_soup(specs: list[tuple[str, float]], out_dir: str | Path,
              eval_summary: dict[str, Any] | None = None) -> Bundle:
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
    if any(writing_destroys(out_dir, b.root) for b, _ in parts):
        raise ValueError(f"{out_dir} is one of the input bundles (or inside or around one), which writing it would "
                         "destroy: write the soup to a new folder, then move it")
    first = parts[0][0]
    bundle = export_bundle(out_dir, first.base_model, [b.adapter for b, _ in parts], None, first.router,
                           first.router_threshold, "", first.robust_logprob_gate,
                           adapter_weights=[w for _, w in parts], robust_no_speech_gate=first.robust_no_speech_gate)
    rank = int(json.loads((bundle.adapter / "adapter_config.json").read_text())["r"])
    router = router_summary(first.router) if first.router else None
    (Path(out_dir) / "README.md").write_text(soup_card(first.base_model, specs, rank, eval_summary, router))
    (Path(out_dir) / "soup.json").write_text(json.dumps(
        {"bundles": [{"path": folder, "weight": weight} for folder, weight in specs]}, indent=2))
    return bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.soup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", action="append", type=parse_weighted, required=True, metavar="DIR=WEIGHT",
                        help="an exported bundle and the weight of its adapter (repeat; default weight 1)")
    parser.add_argument("--out", required=True, help="folder of the new bundle (replaced if it exists)")
    parser.add_argument("--eval-summary", help="summary.json of `megaasr eval` on this soup, for the model card")
    args = parser.parse_args(argv)
    summary = json.loads(Path(args.eval_summary).read_text()) if args.eval_summary else None
    bundle = make_soup(args.bundle, args.out, summary)
    print(f"wrote {bundle.root} ({len(args.bundle)} adapter(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
