#!/usr/bin/env bash
# GPU run, call 1 of 2 (docs/training.md, "GPU run"): stage the kit's first part on the warm machine.
# The carry limit (64 MiB with the working tree) is below what a run needs, so the model archive is split
# across two calls to the *same* machine: this one copies part 1 (model slice + wheels) into .gpu-stage/
# (git-ignored, so the device keeps it between calls), installs the wheels there and checks that the training
# code imports and sees the GPU: seconds, so that call 2 (scripts/device_train.sh) can be sent at once (a
# machine idle for ~30 s is given back, and .gpu-stage/ with it).
# Env: PY (default python3), KIT_STAGE (.gpu-stage), OUT (the device tool's return folder).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PY:-python3}"
out="${OUT:-runs/gpu/out}"
stage_dir="${KIT_STAGE:-.gpu-stage}"
mkdir -p "$out"
start=$SECONDS
[ -d .gpu/part1 ] || { echo "device_stage1: .gpu/part1 is missing: build the kit (python scripts/device_kit.py) and carry .gpu/part1" >&2; exit 2; }
rm -rf "$stage_dir"
mkdir -p "$stage_dir"
cp .gpu/part1/model.tar.xz.1 "$stage_dir/"
if [ "${KIT_WHEELS:-install}" = install ]; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$stage_dir/site" \
        .gpu/part1/wheels/*.whl
fi
export PYTHONPATH="$PWD/$stage_dir/site${PYTHONPATH:+:$PYTHONPATH}"
"$py" -c "import service.cli, training.data, training.sft, training.eval, training.export; print('imports ok')"
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
echo "device_stage1: staged in $((SECONDS - start)) s; send call 2 (scripts/device_train.sh) now" >&2
