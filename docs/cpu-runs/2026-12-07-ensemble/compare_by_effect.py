"""Base and robust WER of two megaasr eval runs on the same manifest (A, then B), by clip group and by effect.

Usage: compare_by_effect.py RUN_A RUN_B (round 31: the WPE-processed validation run against the unprocessed one).
"""

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from service.scoring import score

EFFECTS = ("strong_echo", "far_field", "barrier", "crosstalk", "distortion", "noise", "stutter")


def load(run: str) -> dict[str, dict]:
    rows = (json.loads(line) for line in (Path(run) / "clips.jsonl").read_text().splitlines() if line.strip())
    return {r["id"]: r for r in rows}


def main() -> None:
    a_run, b_run = load(sys.argv[1]), load(sys.argv[2])
    totals: dict[str, Counter] = defaultdict(Counter)
    for clip_id, a in a_run.items():
        if not a["text"].strip():
            continue
        keys = ["clean"] if a["n_effects"] == 0 else (
            ["degraded", f"n{min(a['n_effects'], 3)}"] + [e for e in EFFECTS if e in a["scenario"]])
        for key in keys:
            c = totals[key]
            for tag, row in (("A", a), ("B", b_run[clip_id])):
                for system in ("base", "robust"):
                    c[tag + system] += score(a["text"], row[system + "_hyp"]).word_edits
            c["words"] += score(a["text"], a["text"]).reference_words
            c["n"] += 1
    print(f"{'group':12s} {'n':>4s} {'A base':>7s} {'B base':>7s} {'A rob':>7s} {'B rob':>7s}")
    for key, c in totals.items():
        w = c["words"] / 100
        print(f"{key:12s} {c['n']:4d} {c['Abase'] / w:7.2f} {c['Bbase'] / w:7.2f} "
              f"{c['Arobust'] / w:7.2f} {c['Brobust'] / w:7.2f}")


if __name__ == "__main__":
    main()
