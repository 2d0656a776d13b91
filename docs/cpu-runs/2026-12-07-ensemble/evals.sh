#!/usr/bin/env bash
# Round 31: the ROVER-ensemble bundle (r22 + r29 + r25, gate 0.7), served, on the non-speech test set and both
# draws (beam 5); base and main-adapter transcripts reused from round 28's gated runs (same model, gate, clips).
set -x
cd "$(git rev-parse --show-toplevel)"
M=.venv/bin/megaasr; B=checkpoints/whisper-base-robust; C=training/configs/base-r19.toml
for d in ns std fresh; do mkdir -p runs/r31/$d; done
for f in base_hyps.json robust_hyps.json; do
  cp runs/r28/ns-g0.7/$f runs/r31/ns/; cp runs/r28/std-g0.7/$f runs/r31/std/; cp runs/r28/fresh-g0.7/$f runs/r31/fresh/
done
$M eval --config $C --robust $B --router $B/router --beam-size 5 --out runs/r31/std > runs/r31/std.log 2>&1
$M eval --config $C --robust $B --router $B/router --beam-size 5 --seed 2026 --clips-per-scenario 4 --out runs/r31/fresh > runs/r31/fresh.log 2>&1
$M eval --config $C --manifest runs/nonspeech/manifest.jsonl --robust $B --router $B/router --beam-size 5 --out runs/r31/ns > runs/r31/ns.log 2>&1
echo evals-done
