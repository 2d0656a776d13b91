#!/usr/bin/env bash
# Round 33, as run (2026-12-08): the clips the shipped ensemble silences, decoded without the no-speech gate by
# every member, and two answer rules fixed in advance measured on the eval draws and on validation. Needs round
# 32's eval folders (runs/r32/{std,fresh}: rebuild them from cpu-runs/2026-12-08-rescore/caches in minutes, see
# that folder's run.sh) and its one-thread config runs/r32/t1.toml.
set -ex
cd "$(git rev-parse --show-toplevel)"
D=docs/cpu-runs/2026-12-08-gated-rescue
PY=.venv/bin/python
mkdir -p runs/r33
# 1. the eval draws' silenced clips (46 std, 67 fresh), three members each, no gate; two processes side by side
# (as run, the script took the draw's settings as flags: --config runs/r32/t1.toml --beam-size 5 [--seed 2026
#  --clips-per-scenario 4]; it now reads them from the draw's summary.json, which holds the same EvalConfig but
#  for out_dir, checked before the change)
$PY $D/decode_gated.py --rows runs/r32/std --out runs/r33/std-gated.json &
$PY $D/decode_gated.py --rows runs/r32/fresh --out runs/r33/fresh-gated.json &
# 2. round 24's validation set, rebuilt without the whole round-3 data build (69 clean rows -> 301 clips), and
#    its silenced clips (router + served no-speech probe over all 301, then the members on the 97 silenced)
$PY $D/val_clean_rows.py training/configs/base.toml runs/r33/val-clean
$PY docs/cpu-runs/2026-12-07-soup/make_val_set.py runs/r33/val-clean/val.jsonl runs/r33/val-eval
$PY $D/decode_silenced.py runs/r33/val-eval/manifest.jsonl --out runs/r33/val-silenced.json
wait
# 3. the rules
$PY $D/rescue.py runs/r32/std:runs/r33/std-gated.json runs/r32/fresh:runs/r33/fresh-gated.json | tee $D/rescue-eval.txt
$PY $D/rescue_manifest.py runs/r33/val-silenced.json | tee $D/rescue-val.txt
# (as run: the 200-clip non-speech set's decode was started and stopped once validation had rejected both rules)
