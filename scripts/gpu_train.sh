#!/usr/bin/env bash
# The whole recipe on a GPU (train data, sft, rl, router, eval, export), printing each stage's time.
# Usage: scripts/gpu_train.sh CONFIG [DEVICE]    DEVICE: cuda (default, or $MEGAASR_TRAIN_DEVICE), cuda:N, cpu, auto
#   NPROC=8 scripts/gpu_train.sh ...   runs `train sft` under torchrun, one process per GPU (NCCL)
#   ROBUST=<dir>/final                 the model evaluated and exported (default: the RL stage's final)
# `train data` decodes its clips with the base model on DEVICE too (the base WER of every clip).
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:?usage: scripts/gpu_train.sh CONFIG [DEVICE]}"
device="${2:-${MEGAASR_TRAIN_DEVICE:-cuda}}"
py=.venv/bin/python
[ -x "$py" ] || py=python

# Validate the recipe with the device now (no CUDA: a clear error before any stage) and read its folders.
read -r sft_dir rl_dir router_dir eval_dir < <("$py" - "$config" "$device" <<'EOF'
import sys
from pydantic import ValidationError
from training.config import load_config
try:
    c = load_config(sys.argv[1], device=sys.argv[2])
except ValidationError as exc:
    sys.exit("gpu_train.sh: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:1]))
print(c.sft.out_dir, c.rl.out_dir, c.router.out_dir, c.eval.out_dir)
EOF
)
robust="${ROBUST:-$rl_dir/final}"
bundle="$(dirname "$sft_dir")/bundle"

stage() {  # stage NAME COMMAND...: run it and print its wall time
    local name=$1 start=$SECONDS
    shift
    echo "== $name: $*" >&2
    "$@"
    echo "== $name: $((SECONDS - start)) s" >&2
}

cli=("$py" -m service.cli)
sft=("${cli[@]}")
[ "${NPROC:-1}" -gt 1 ] && sft=("$py" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m service.cli)
stage data "${cli[@]}" train data --config "$config" --device "$device"
stage sft "${sft[@]}" train sft --config "$config" --device "$device"
stage rl "${cli[@]}" train rl --config "$config" --device "$device"
stage router "${cli[@]}" train router --config "$config" --device "$device"
stage eval "${cli[@]}" eval --config "$config" --device "$device" --robust "$robust" --router "$router_dir/final"
stage export "${cli[@]}" export --config "$config" --robust "$robust" --router "$router_dir/final" \
    --eval-summary "$eval_dir/summary.json" --out "$bundle"
echo "== total: $SECONDS s; bundle: $bundle" >&2
