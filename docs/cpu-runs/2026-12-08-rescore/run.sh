#!/usr/bin/env bash
# Round 32, as run (2026-12-08, a fresh checkout: runs/ was empty): the shipped ensemble bundle's evals
# re-decoded from scratch (beam 5, both draws), then ensemble_pick = likelihood measured on the same decodes.
set -ex
cd "$(git rev-parse --show-toplevel)"
M=.venv/bin/megaasr; B=checkpoints/whisper-base-robust; D=docs/cpu-runs/2026-12-08-rescore
mkdir -p runs/r32
# one thread per eval, two evals side by side on the 2-core CPU (threads do not change what is decoded)
printf 'extends = "../../training/configs/base-r19.toml"\n\n[eval]\nthreads = 1\n' > runs/r32/t1.toml
C=runs/r32/t1.toml

# 1. round 31's bundle as shipped (the vote): both draws
$M eval --config $C --robust $B --router $B/router --beam-size 5 --out runs/r32/std > runs/r32/std.log 2>&1 &
$M eval --config $C --robust $B --router $B/router --beam-size 5 --seed 2026 --clips-per-scenario 4 \
  --out runs/r32/fresh > runs/r32/fresh.log 2>&1 &
wait
# (as run: the fresh eval was stopped after member 1 and member 2 was decoded beside it by
#  $D/decode_member.py --config $C --seed 2026 --clips-per-scenario 4 --beam-size 5 --bundle $B --member 2
#  --out runs/r32/fresh-m2/robust_hyps-member2.json, copied in, and the eval run again on the caches)

# 2. the same bundle with "ensemble_pick": "likelihood" written into bundle.json (the decode caches are keyed
#    on the bundle's path, so the members' transcripts are reused; only the scoring runs), then put back
python - <<'PY'
import json, pathlib
p = pathlib.Path("checkpoints/whisper-base-robust/bundle.json")
p.write_text(json.dumps({**json.loads(p.read_text()), "ensemble_pick": "likelihood"}, indent=2))
PY
for d in std fresh; do
  mkdir -p runs/r32/$d-lik && cp runs/r32/$d/*hyps*.json runs/r32/$d-lik/
done
$M eval --config $C --robust $B --router $B/router --beam-size 5 --out runs/r32/std-lik > runs/r32/std-lik.log 2>&1
# (as run: the fresh draw alone on the CPU, so the recipe's own two threads)
$M eval --config training/configs/base-r19.toml --robust $B --router $B/router --beam-size 5 --seed 2026 \
  --clips-per-scenario 4 --out runs/r32/fresh-lik > runs/r32/fresh-lik.log 2>&1
git checkout $B/bundle.json

# 3. paired: likelihood pick minus the vote, pooled over both draws
.venv/bin/python -m training.compare_pair --names "likelihood pick" "vote (round 31)" \
  --draw runs/r32/std-lik runs/r32/std --draw runs/r32/fresh-lik runs/r32/fresh --split-effect crosstalk \
  --out $D/pair-likelihood-vs-vote
# the decode caches, committed so a later session can measure without decoding again (keyed on absolute paths
# under /work/main)
for d in std fresh; do mkdir -p $D/caches/$d && cp runs/r32/$d/*hyps*.json $D/caches/$d/; done
