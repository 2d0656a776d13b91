"""Round 33's probe: what would the silenced clips' answers be under two rules fixed before looking at the decodes?

The shipped bundle answers "" on every clip below (decode_gated.py decoded them without the gate, by every
member). Rules, fixed in advance:

* ``vote``: the ROVER vote of the three ungated transcripts, as served without the gate;
* ``unanimous``: only the vote's words that all three members wrote (aligned equal in each), "" if none.

Each rule replaces the shipped answer on those clips only; every other clip keeps its shipped answer. Printed per
draw and pooled: WER on all degraded and on 3+ effects clips, the gain over whisper-base, and the words written on
the draws' noise-only and silent clips.

    python docs/cpu-runs/2026-12-08-gated-rescue/rescue.py runs/r32/std:runs/r33/std-gated.json \\
        runs/r32/fresh:runs/r33/fresh-gated.json
"""
import json
import sys
from pathlib import Path

import jiwer

from service.engines.rover import combine, tokens
from service.scoring import corpus_score

RULES = ("shipped", "vote", "unanimous")


def unanimous(hyps: list[str]) -> str:
    """The vote's words that every transcript has aligned as an equal word."""
    vote = tokens(combine(hyps))
    if not vote:
        return ""
    keep = [True] * len(vote)
    for h in hyps:
        keys = [k for k, _ in tokens(h)]
        if not keys:
            return ""
        ok = [False] * len(vote)
        for chunk in jiwer.process_words(" ".join(k for k, _ in vote), " ".join(keys)).alignments[0]:
            if chunk.type == "equal":
                for i in range(chunk.ref_start_idx, chunk.ref_end_idx):
                    ok[i] = True
        keep = [a and b for a, b in zip(keep, ok)]
    return " ".join(w for (_, w), k in zip(vote, keep) if k)


def answers(rows: list[dict], gated: dict) -> dict[str, list[str]]:
    out = {rule: [r["routed_hyp"] for r in rows] for rule in RULES}
    for c in gated["clips"]:
        i, hyps = c["index"], c["member_hyps"]
        assert rows[i]["id"] == c["id"] and rows[i]["routed_hyp"].strip() == ""
        out["vote"][i] = combine(hyps)
        out["unanimous"][i] = unanimous(hyps)
    return out


def wer(rows: list[dict], hyps: list[str], test) -> float:
    pairs = [(r["text"], h) for r, h in zip(rows, hyps) if test(r)]
    return 100 * corpus_score(pairs).wer


degraded = lambda r: r["scenario"] not in ("clean", "noise_only", "silent")
three_plus = lambda r: degraded(r) and r["n_effects"] >= 3
non_speech = lambda r: r["scenario"] in ("noise_only", "silent")

def main(args: list[str]) -> None:
    pooled: dict[str, list] = {}
    for arg in args:
        rows_dir, gated_path = arg.split(":")
        rows = [json.loads(line) for line in Path(rows_dir, "clips.jsonl").read_text().splitlines()]
        gated = json.loads(Path(gated_path).read_text())
        out = answers(rows, gated)
        base = [r["base_hyp"] for r in rows]
        print(f"\n{rows_dir}: {len(gated['clips'])} silenced clips")
        for rule in RULES:
            d, t = wer(rows, out[rule], degraded), wer(rows, out[rule], three_plus)
            bd, bt = wer(rows, base, degraded), wer(rows, base, three_plus)
            words = sum(len(h.split()) for r, h in zip(rows, out[rule]) if non_speech(r))
            print(f"  {rule:10s} degraded {d:6.2f} ({100 * (1 - d / bd):5.1f} %)  3+ {t:6.2f} ({100 * (1 - t / bt):5.1f} %)"
                  f"  non-speech words {words}")
            pooled.setdefault(rule, []).extend((r, h) for r, h in zip(rows, out[rule]))
        pooled.setdefault("base", []).extend((r, r["base_hyp"]) for r in rows)
    print("\npooled")
    for rule in (*RULES, "base"):
        rows, hyps = zip(*pooled[rule])
        print(f"  {rule:10s} degraded {wer(rows, hyps, degraded):6.2f}  3+ {wer(rows, hyps, three_plus):6.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
