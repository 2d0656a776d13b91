"""Round 33 on a manifest set (validation speech, non-speech): the rules' effect on the clips the bundle silences.

Reads decode_silenced.py's output. The shipped answer on every one of those clips is "", and no rule changes any
other clip, so the change in word errors is exact without decoding the rest: on speech, each rule's errors on
these clips minus their reference words (all deleted as shipped); on non-speech, the words each rule writes.
Printed as WER points on the set's degraded and 3+ effects clips (the reference word counts of all of them are in
the file) and words / clips written on noise-only and silent clips.

    python docs/cpu-runs/2026-12-08-gated-rescue/rescue_manifest.py runs/r33/val-silenced.json
"""
import json
import sys
from pathlib import Path

from service.engines.rover import combine
from service.scoring import score

sys.path.insert(0, str(Path(__file__).parent))
from rescue import degraded, three_plus, unanimous

RULES = {"vote": combine, "unanimous": unanimous}

for path in sys.argv[1:]:
    data = json.loads(Path(path).read_text())
    clips = data["clips"]
    speech = [c for c in clips if c["text"].strip()]
    silent = [c for c in clips if not c["text"].strip()]
    print(f"\n{path}: {len(clips)} silenced clips ({len(speech)} speech, {len(silent)} non-speech)")
    rows = [json.loads(line) for line in Path(data["manifest"]).read_text().splitlines()]
    for group, test in (("degraded", degraded), ("3+ effects", three_plus)):
        words = sum(score(r["text"], "").word_edits for r in rows if test(r))  # normalised reference words
        members = [c for c in speech if test(c)]
        ref = sum(score(c["text"], "").word_edits for c in members)
        print(f"  {group}: {len(members)} of {sum(map(test, rows))} clips silenced, {ref} of {words} reference words"
              " deleted as shipped")
        for rule, answer in RULES.items():
            edits = sum(score(c["text"], answer(c["member_hyps"])).word_edits for c in members)
            print(f"    {rule:10s} word errors {edits - ref:+5d} -> {100 * (edits - ref) / max(words, 1):+6.2f} WER points")
    for rule, answer in RULES.items():
        written = [len(answer(c["member_hyps"]).split()) for c in silent]
        print(f"  non-speech {rule:10s}: {sum(w > 0 for w in written)} clips / {sum(written)} words")
