"""ROVER: one transcript voted word by word from several systems' transcripts of the same clip.

Why: the whisper-base adapters trained so far (rounds 22-29) are level on average but wrong on different
clips, so a vote between them can beat each one (Fiscus 1997, "Recognizer Output Voting Error Reduction").
This is the pivot form of ROVER: every other transcript is aligned to one pivot transcript with jiwer's
word alignment; each pivot word becomes a slot that every system votes in (its aligned word, or "nothing"
where it deleted the word), and words a system inserts between two pivot words are kept only when more
than half of the systems insert the same words there. A slot's winner is the most voted entry, the pivot's
own word on a tie. Without word confidences every system's vote weighs the same.

Votes compare words after the scorer's English normaliser, so "Press 1." and "press one" agree; the
combined transcript is therefore in the normalised form (lower case, no punctuation).

    python -m training.rover --member r22=runs/r22/std-b5 --member r29=runs/base-r29/eval-std \\
        --member r25=runs/base-r25/eval-std --pivot medoid --out runs/rover/std
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jiwer

from service.scoring import normalise_text
from training.compare import read_clips
from training.eval import markdown, summarise

PIVOTS = ("first", "medoid")


def _edits(a: list[str], b: list[str]) -> int:
    """Word edits between two word lists (jiwer refuses empty strings, so those are counted here)."""
    if not a or not b:
        return max(len(a), len(b))
    out = jiwer.process_words(" ".join(a), " ".join(b))
    return out.substitutions + out.deletions + out.insertions


def medoid(transcripts: Sequence[list[str]]) -> int:
    """Index of the transcript with the fewest word edits to all the others (the first on a tie)."""
    return min(range(len(transcripts)), key=lambda i: (sum(_edits(transcripts[i], t) for t in transcripts), i))


def combine_words(transcripts: Sequence[list[str]], pivot: int = 0) -> list[str]:
    """The voted word sequence of several systems' word lists, aligned to ``transcripts[pivot]``."""
    if not transcripts:
        raise ValueError("ROVER needs at least one transcript")
    if not 0 <= pivot < len(transcripts):
        raise ValueError(f"pivot {pivot} is not one of the {len(transcripts)} transcripts")
    spine = list(transcripts[pivot])
    slots: list[Counter] = [Counter({word: 1}) for word in spine]
    inserts: list[Counter] = [Counter() for _ in range(len(spine) + 1)]
    for j, words in enumerate(transcripts):
        if j == pivot:
            continue
        if not spine or not words:
            if words:
                inserts[0][tuple(words)] += 1
            for slot in slots:
                slot[None] += 1
            continue
        for chunk in jiwer.process_words(" ".join(spine), " ".join(words)).alignments[0]:
            if chunk.type in ("equal", "substitute"):
                for k in range(chunk.ref_end_idx - chunk.ref_start_idx):
                    slots[chunk.ref_start_idx + k][words[chunk.hyp_start_idx + k]] += 1
            elif chunk.type == "delete":
                for k in range(chunk.ref_start_idx, chunk.ref_end_idx):
                    slots[k][None] += 1
            else:
                inserts[chunk.ref_start_idx][tuple(words[chunk.hyp_start_idx:chunk.hyp_end_idx])] += 1
    majority = len(transcripts) / 2
    out: list[str] = []
    for k in range(len(spine) + 1):
        if inserts[k]:
            words, votes = inserts[k].most_common(1)[0]
            if votes > majority:
                out.extend(words)
        if k < len(spine):
            top = max(slots[k].values())
            winner = spine[k] if slots[k][spine[k]] == top else slots[k].most_common(1)[0][0]
            if winner is not None:
                out.append(winner)
    return out


def combine(transcripts: Sequence[str], pivot: str = "medoid") -> str:
    """ROVER of several transcripts of one clip, normalised; ``pivot`` is "first" or "medoid"."""
    if pivot not in PIVOTS:
        raise ValueError(f"pivot must be one of {PIVOTS}, got {pivot!r}")
    words = [normalise_text(t).split() for t in transcripts]
    index = 0 if pivot == "first" else medoid(words)
    return " ".join(combine_words(words, index))


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
