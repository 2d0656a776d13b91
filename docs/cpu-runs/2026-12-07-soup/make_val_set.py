"""Round 24's tuning set: the validation speakers' clean clips corrupted as `megaasr eval` corrupts the eval prompts.

Every scenario 4 times (rotating through the 69 clean validation clips of round 3's build), linear severity,
seed 777, plus the clean clips, 12 noise-only and 4 silent clips; `--band 8k` passes the clean clips through the
8 kHz telephone band first (the eval speaker's prompts are 8 kHz recordings). Writes wavs and a manifest that
`megaasr eval --manifest OUT/manifest.jsonl` reads. Run from the repository root:

    python docs/cpu-runs/2026-12-07-soup/make_val_set.py runs/tiny-r3/data/val.jsonl runs/r24/val-eval
    python docs/cpu-runs/2026-12-07-soup/make_val_set.py runs/tiny-r3/data/val.jsonl runs/r24/val8k-eval --band 8k
"""
import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from simulation import resolve_scenarios, simulate
from simulation.noise_bank import COLOURS, coloured_noise
from training.sources import SAMPLE_RATE, read_audio, telephone_band

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("val_manifest")
parser.add_argument("out")
parser.add_argument("--band", choices=["wide", "8k"], default="wide")
parser.add_argument("--seed", type=int, default=777)
parser.add_argument("--copies", type=int, default=4, help="corrupted clips per scenario")
args = parser.parse_args()

out = Path(args.out)
(out / "wav").mkdir(parents=True, exist_ok=True)
clean = [r for r in map(json.loads, Path(args.val_manifest).read_text().splitlines()) if r["scenario"] == "clean"]
band = telephone_band if args.band == "8k" else (lambda audio: audio)
audio = {r["id"]: band(read_audio(r["audio"])) for r in clean}
rng = np.random.default_rng(args.seed)
rows = []


def put(clip_id, text, scenario, n_effects, severity, samples):
    path = out / "wav" / (clip_id.replace("/", "_") + ".wav")
    sf.write(path, samples, SAMPLE_RATE)
    rows.append({"id": clip_id, "text": text, "scenario": scenario, "n_effects": n_effects, "severity": severity,
                 "audio": str(path)})


for r in clean:
    put(r["id"], r["text"], "clean", 0, 0.0, audio[r["id"]])
order, cursor = list(rng.permutation(len(clean))), 0
for scenario in resolve_scenarios("all"):
    for copy in range(args.copies):
        r = clean[order[cursor % len(clean)]]
        cursor += 1
        seed = int(rng.integers(2**31))
        result = simulate(audio[r["id"]], SAMPLE_RATE, scenario, None, seed, severity_mapping="linear")
        put(f"{r['id']}__{scenario}__{copy}", r["text"], scenario, len(result.effects), result.severity, result.audio)
for i in range(12):
    n = int(rng.uniform(2.0, 8.0) * SAMPLE_RATE)
    level = 10 ** (rng.uniform(-45.0, -15.0) / 20)
    colour = COLOURS[i % len(COLOURS)]
    put(f"noise-{colour}-{i}", "", "noise_only", 0, 0.0, (coloured_noise(colour, n, rng) * level).clip(-1, 1))
for i in range(4):
    n = int(rng.uniform(2.0, 8.0) * SAMPLE_RATE)
    level = 0.0 if i % 2 == 0 else 10 ** (-55 / 20)
    put(f"silent-{i}", "", "silent", 0, 0.0, (coloured_noise("pink", n, rng) * level).astype(np.float32))
with open(out / "manifest.jsonl", "w") as handle:
    handle.writelines(json.dumps(row) + "\n" for row in rows)
print(f"{len(rows)} rows -> {out / 'manifest.jsonl'}")
