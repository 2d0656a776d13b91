#!/usr/bin/env bash
# GPU run, the calls before the last (docs/training.md, "GPU run"): stage one kit part on the warm machine.
# The carry limit (64 MiB with the working tree) is below what a run needs, so the payload (model archive, then the
# clean speech: training/kit_payload.py) is cut over N parts sent in N calls to the *same* machine:
# `device_stage1.sh .gpu/part1` (the default) starts a fresh
# stage in .gpu-stage/ (git-ignored, so the device keeps it between calls) with the first payload slice, installs
# the wheels there and checks that the training code imports and sees the GPU: seconds. When the kit has more
# than 2 parts, `device_stage1.sh .gpu/partK` adds slice K. The last part goes with scripts/device_train.sh.
# Send each next call at once: a machine idle for ~30 s is given back, and .gpu-stage/ with it.
# Usage: scripts/device_stage1.sh [PART]   Env: PY (default python3), KIT_STAGE (.gpu-stage), KIT_WHEELS
# (install; skip: use PY's packages), OUT (the device tool's return folder).
set -euo pipefail
cd "$(dirname "$0")/.."
part="${1:-.gpu/part1}"
py="${PY:-python3}"
out="${OUT:-runs/gpu/out}"
stage_dir="${KIT_STAGE:-.gpu-stage}"
mkdir -p "$out"
start=$SECONDS
[ -d "$part" ] || { echo "device_stage1: $part is missing: build the kit (python scripts/device_kit.py) and carry $part" >&2; exit 2; }
shopt -s nullglob
slices=("$part"/payload.*)
[ ${#slices[@]} -eq 1 ] || { echo "device_stage1: $part holds ${#slices[@]} payload slices, not 1" >&2; exit 2; }
if [ -f "$part/payload.1" ]; then
    rm -rf "$stage_dir"
    mkdir -p "$stage_dir"
elif [ ! -f "$stage_dir/payload.1" ]; then
    echo "device_stage1: no $stage_dir/payload.1: call 1 (scripts/device_stage1.sh) did not run on this machine (it was given back between the calls); start again with call 1" >&2
    exit 2
fi
cp "${slices[0]}" "$stage_dir/"
if [ -d "$part/wheels" ]; then  # part 1: install the wheels (unless told not to), then check the imports
    if [ "${KIT_WHEELS:-install}" = install ]; then
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$stage_dir/site" \
            "$part"/wheels/*.whl
    fi
    export PYTHONPATH="$PWD/$stage_dir/site${PYTHONPATH:+:$PYTHONPATH}"
    "$py" -c "import service.cli, training.data, training.sft, training.eval, training.export; print('imports ok')"
    "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
fi
echo "device_stage1: staged $(basename "${slices[0]}") in $((SECONDS - start)) s; send the next call now" >&2
