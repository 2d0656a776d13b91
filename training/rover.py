"""ROVER over ``megaasr eval`` runs: one eval run whose transcripts are voted word by word from several runs'.

Why: to measure what an ensemble of robust adapters would give before exporting it as one bundle, from eval
runs that already exist (round 31). The vote is the service's own (:mod:`service.engines.rover`), so an
ensemble bundle served or evaluated with ``megaasr eval`` gives the same transcripts.

    python -m training.rover --member r22=runs/r22/std-b5 --member r29=runs/base-r29/eval-std \\
        --member r25=runs/base-r25/eval-std --pivot medoid --out runs/rover/std
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.engines.rover import PIVOTS, combine
from training.compare import read_clips
from training.eval import markdown, summarise


def combine_runs(runs: Sequence[list[dict[str, Any]]], pivot: str = "medoid") -> list[dict[str, Any]]:
    """One eval run's clips whose robust and routed transcripts are the ROVER of the runs' own.

    The runs must be ``megaasr eval`` outputs on the same clips (checked clip by clip) and the same base
    model; the base transcripts are the first run's. ``routed_robust`` is true where any member sent the
    clip to its robust model (members of one bundle family share the router, so they agree).
    """
    if len(runs) < 2:
        raise ValueError("ROVER needs at least two runs")
    first = runs[0]
    for n, run in enumerate(runs[1:], start=2):
        if len(run) != len(first):
            raise ValueError(f"run {n} holds {len(run)} clips, run 1 {len(first)}: not the same evaluation set")
        for i, (a, b) in enumerate(zip(first, run)):
            if (a["id"], a["text"], a["scenario"], a["severity"]) != (b["id"], b["text"], b["scenario"], b["severity"]):
                raise ValueError(f"clip {i} differs between run 1 ({a['id']}) and run {n} ({b['id']})")
            if a["base_hyp"] != b["base_hyp"]:
                raise ValueError(f"clip {i} ({a['id']}): run {n} has another base transcript (another base model?)")
    out = []
    for i, clip in enumerate(first):
        row = {k: v for k, v in clip.items() if k not in ("robust_hyp", "routed_hyp", "p_dirty", "routed_robust")}
        for system in ("robust", "routed"):
            if f"{system}_hyp" in clip:
                row[f"{system}_hyp"] = combine([run[i][f"{system}_hyp"] for run in runs], pivot)
        if "routed_robust" in clip:
            row["routed_robust"] = any(run[i]["routed_robust"] for run in runs)
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.rover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--member", action="append", required=True, metavar="NAME=DIR",
                        help="a megaasr eval output (clips.jsonl); give two or more, on the same clips")
    parser.add_argument("--pivot", choices=PIVOTS, default="medoid",
                        help="the transcript the others are aligned to: the first member's, or the one closest "
                             "to all the others (default)")
    parser.add_argument("--out", required=True, help="folder for clips.jsonl, summary.json and summary.md")
    args = parser.parse_args(argv)
    members = []
    for spec in args.member:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            parser.error(f"--member takes NAME=DIR, got {spec!r}")
        if not (Path(folder) / "clips.jsonl").is_file():
            parser.error(f"--member {name}: {folder} holds no clips.jsonl (not a megaasr eval output)")
        members.append((name, read_clips(folder)))
    if len(members) < 2:
        parser.error("give at least two --member runs")
    try:
        clips = combine_runs([run for _, run in members], args.pivot)
    except ValueError as err:
        parser.error(str(err))
    systems = tuple(s for s in ("base", "robust", "routed") if f"{s}_hyp" in clips[0])
    summary = summarise(clips, systems)
    summary["rover"] = {"members": {name: spec.partition("=")[2] for (name, _), spec in zip(members, args.member)},
                        "pivot": args.pivot}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "clips.jsonl", "w") as handle:
        handle.writelines(json.dumps(c) + "\n" for c in clips)
    text = (f"ROVER of {', '.join(n for n, _ in members)} (pivot: {args.pivot}); base transcripts from "
            f"{members[0][0]}.\n\n" + markdown(summary, systems))
    summary["markdown"] = text
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(text)
    print(text)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
