#!/usr/bin/env bash
# Round 31, as run (2026-12-07): the WPE probe, the ROVER probe over existing runs, the ensemble bundle and its
# served evals. Needs the run folders of rounds 22, 24, 25, 28 and 29 (runs/ is not committed).
set -ex
cd "$(git rev-parse --show-toplevel)"
M=.venv/bin/megaasr; C=training/configs/base-r19.toml; V=runs/r24/val-eval/manifest.jsonl
D=docs/cpu-runs/2026-12-07-ensemble; R=checkpoints/whisper-base-robust/router; T=0.8464999794960022

# 1. WPE dereverberation in front of both models, validation speakers (round 22 ungated, beam 5)
.venv/bin/python $D/wpe_manifest.py $V runs/wpe/val-t10 10 3 3
$M eval --config $C --manifest runs/wpe/val-t10/manifest.jsonl --robust runs/r31/shipped-r28 --no-speech-gate none \
  --router $R --decode served --beam-size 5 --out runs/wpe/eval-val-t10
.venv/bin/python $D/compare_by_effect.py runs/wpe/eval-val-t10 runs/r24/val-r22 > $D/wpe-val-by-effect.txt

# 2. validation decodes of rounds 29 and 25 (round 22's exist: runs/r24/val-r22), then ROVER on both splits
for v in r29 r25; do mkdir -p runs/wpe/val-$v && cp runs/r24/val-r22/base_hyps.json runs/wpe/val-$v/; done
$M eval --config $C --manifest $V --robust runs/base-r29/sft/final --router $R --threshold $T --beam-size 5 --out runs/wpe/val-r29
$M eval --config $C --manifest $V --robust runs/base-r25/bundle --router $R --threshold $T --beam-size 5 --out runs/wpe/val-r25
.venv/bin/python -m training.rover --member r22=runs/r24/val-r22 --member r29=runs/wpe/val-r29 --member r25=runs/wpe/val-r25 --out runs/r31/val-rover3
for d in std fresh; do
  .venv/bin/python -m training.rover --member r22=runs/r22/$d-b5 --member r29=runs/base-r29/eval-$d \
    --member r25=runs/base-r25/eval-$d --out runs/r31/$d-rover3-ungated
done

# 3. the ensemble bundle (round 22's adapter + rounds 29 and 25 as members, round 28's gate) and its served evals
$M export --config $C --robust runs/r31/shipped-r28 --ensemble-member runs/base-r29/sft/final \
  --ensemble-member runs/base-r25/bundle --router $R --threshold $T --no-speech-gate 0.7 \
  --eval-summary runs/r28/std-g0.7/summary.json --out runs/r31/bundle
$D/evals.sh   # with the bundle in checkpoints/whisper-base-robust: std, fresh, 200 non-speech clips
