"""A larger non-speech test set for section 7's "fewer hallucinations on noise-only and silent clips".

Why: each eval draw holds 16 non-speech clips (12 synthetic coloured noise at -45..-15 dBFS, 4 silent), and on
them every whisper-base system with a beam of 5 says nothing, so "fewer" can only read as a tie. This set is
made the way the training build makes its non-speech clips (`training.data.nonspeech_rows`): half real recorded
noise from Debian's sonic-pi samples (CC0: instruments, loops, hums, glitches, impacts), the rest coloured noise
and silence or room tone, levels -50..-12 dBFS, 1.5-8 s. Its own seed, so the clips are not the training ones;
the robust model did train on other segments of the same sonic-pi recordings with an empty target (the recipe's
`nonspeech_fraction`), which the docs say when quoting the result. Writes wavs and a manifest that
`megaasr eval --manifest OUT/manifest.jsonl` reads. Run from the repository root:

    python docs/cpu-runs/2026-12-07-nonspeech/make_nonspeech_set.py runs/nonspeech --clips 200
"""
import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from training.config import DataConfig
from training.data import nonspeech_rows

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("out")
parser.add_argument("--clips", type=int, default=200)
parser.add_argument("--seed", type=int, default=4242, help="not the training builds' seed (0)")
args = parser.parse_args()

sonic_pi = DataConfig().sonic_pi_dir
if not Path(sonic_pi).is_dir():
    raise SystemExit(f"{sonic_pi} is missing: install Debian's sonic-pi-samples for the real-noise half")
out = Path(args.out)
rows = nonspeech_rows(args.clips, "eval", np.random.default_rng([args.seed, 7]), out, sonic_pi)
(out / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
print(f"{len(rows)} rows -> {out / 'manifest.jsonl'}:",
      dict(Counter(r["source"].split(":")[0] for r in rows)))
