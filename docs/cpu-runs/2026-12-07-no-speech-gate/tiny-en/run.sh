#!/usr/bin/env bash
# The no-speech gate for the tiny.en bundle: ungated served (greedy) decodes of the validation speech and
# non-speech sets, the threshold chosen by round 28's rule, then gated evals on the non-speech test set and both draws.
set -x
cd "$(git rev-parse --show-toplevel)"
M=.venv/bin/megaasr; B=checkpoints/whisper-tiny.en-robust; C=training/configs/tiny-en-r10b.toml; O=runs/tiny-gate
mkdir -p $O
$M eval --config $C --manifest runs/r24/val-eval/manifest.jsonl --robust $B --router $B/router --out $O/val > $O/val.log 2>&1 || exit 1
$M eval --config $C --manifest runs/r28/val-nonspeech/manifest.jsonl --robust $B --router $B/router --out $O/val-ns > $O/val-ns.log 2>&1 || exit 1
.venv/bin/python docs/cpu-runs/2026-12-07-no-speech-gate/choose_gate.py $O/choose --base whisper-tiny.en \
  runs/r24/val-eval/manifest.jsonl:$O/val runs/r28/val-nonspeech/manifest.jsonl:$O/val-ns > $O/choose.log 2>&1 || exit 1
T=$(.venv/bin/python -c "import json;print(json.load(open('$O/choose/thresholds.json'))['chosen'])")
echo "chosen $T"
$M eval --config $C --manifest runs/nonspeech/manifest.jsonl --robust $B --router $B/router --out $O/ns-none > $O/ns-none.log 2>&1
mkdir -p $O/ns-g $O/std-g $O/fresh-g; cp $O/ns-none/base_hyps.json $O/ns-g/
$M eval --config $C --manifest runs/nonspeech/manifest.jsonl --robust $B --router $B/router --no-speech-gate $T --out $O/ns-g > $O/ns-g.log 2>&1
$M eval --config $C --robust $B --router $B/router --out $O/std-none > $O/std-none.log 2>&1
cp $O/std-none/base_hyps.json $O/std-g/
$M eval --config $C --robust $B --router $B/router --no-speech-gate $T --out $O/std-g > $O/std-g.log 2>&1
$M eval --config $C --robust $B --router $B/router --seed 2026 --clips-per-scenario 4 --out $O/fresh-none > $O/fresh-none.log 2>&1
cp $O/fresh-none/base_hyps.json $O/fresh-g/
$M eval --config $C --robust $B --router $B/router --no-speech-gate $T --seed 2026 --clips-per-scenario 4 --out $O/fresh-g > $O/fresh-g.log 2>&1
echo tiny-gate-done
