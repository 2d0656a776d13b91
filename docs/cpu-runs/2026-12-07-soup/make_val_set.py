"""Round 24's tuning set: the validation speakers' clean clips corrupted as `megaasr eval` corrupts the eval prompts.

`training.eval.corrupt_utterances` (the eval's own clip maker) with every scenario 4 times, rotating through the
69 clean validation clips of round 3's build, linear severity, seed 777, plus the clean clips, 12 noise-only and
4 silent clips; `--band 8k` passes the clean clips through the 8 kHz telephone band first (the eval speaker's
prompts are 8 kHz recordings). Writes wavs and a manifest that `megaasr eval --manifest OUT/manifest.jsonl`
reads. Run from the repository root:

    python docs/cpu-runs/2026-12-07-soup/make_val_set.py runs/tiny-r3/data/val.jsonl runs/r24/val-eval
    python docs/cpu-runs/2026-12-07-soup/make_val_set.py runs/tiny-r3/data/val.jsonl runs/r24/val8k-eval --band 8k
"""
import argparse
import json
from pathlib import Path

from training.config import EvalConfig
from training.eval import CLEAN, corrupt_utterances
from training.sources import read_audio, telephone_band, write_audio

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("val_manifest")
parser.add_argument("out")
parser.add_argument("--band", choices=["wide", "8k"], default="wide")
parser.add_argument("--seed", type=int, default=777)
parser.add_argument("--copies", type=int, default=4, help="corrupted clips per scenario")
args = parser.parse_args()

band = telephone_band if args.band == "8k" else (lambda audio: audio)
rows = [json.loads(line) for line in Path(args.val_manifest).read_text().splitlines()]
utterances = [(r["id"], r["text"], band(read_audio(r["audio"]))) for r in rows if r["scenario"] == CLEAN]
cfg = EvalConfig(seed=args.seed, clips_per_scenario=args.copies, noise_only_clips=12, silent_clips=4)
out = Path(args.out)
manifest = []
for clip in corrupt_utterances(utterances, cfg):
    path = out / "wav" / (clip["id"].replace("/", "_") + ".wav")
    write_audio(path, clip.pop("audio"))
    manifest.append({**clip, "audio": str(path)})
(out / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in manifest))
print(f"{len(manifest)} rows -> {out / 'manifest.jsonl'}")
