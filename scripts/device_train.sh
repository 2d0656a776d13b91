#!/usr/bin/env bash
# GPU run, the last call (docs/training.md, "GPU run"): check and unpack the kit, run the recipe, return results.
# Carries the kit's last part (the one with kit.json) and needs the earlier calls (scripts/device_stage1.sh) on the
# same warm machine: they left the other model slices and the wheels in .gpu-stage/. Stages: train data, train sft (or rl), export, eval (the std draw), then while time is left
# the eval on the fresh draw and the CUDA tests of the training code (tests/training/test_device.py); each
# stage's wall time is printed, and results are copied to $OUT after every stage, so a
# run stopped at the call's limit still returns what it finished.
# Usage: scripts/device_train.sh [CONFIG [VARIANT_CONFIG ...]]   (variants: same [data], trained side by side)
# TRAIN=rl trains each variant with `train rl` (DG-WGPO from its [rl].init, e.g. the shipped bundle) in place of
# `train sft`; evaluation and export then read [rl].out_dir/final (GPU run 3).
# Env: REUSE_DATA (1: skip unpack and train data, reuse an earlier call's clips), DEVICE (cuda), PY (python3), BUDGET_S (540: an optional stage
# starts only if its measured size still fits in it; TESTS=0 skips the tests), KIT_STAGE (.gpu-stage), ROUTER (checkpoints/whisper-tiny.en-robust/router), KIT_WHEELS (skip: use PY's packages).
set -euo pipefail
cd "$(dirname "$0")/.."
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(training/configs/tiny-en-gpu.toml)
config="${configs[0]}"  # the kit's recipe: its [data] builds the clips every variant trains on
device="${DEVICE:-cuda}"
train="${TRAIN:-sft}"
[ "$train" = sft ] || [ "$train" = rl ] || { echo "device_train: TRAIN must be sft or rl, got $train" >&2; exit 2; }
py="${PY:-python3}"
budget="${BUDGET_S:-540}"
router="${ROUTER:-checkpoints/whisper-tiny.en-robust/router}"
out="${OUT:-runs/gpu/out}"
stage_dir="${KIT_STAGE:-.gpu-stage}"
res="${RESULTS:-runs/gpu/results}"
mkdir -p "$out" "$res"
exec > >(tee -a "$out/train.log") 2>&1
fail() { echo "device_train: $*" >&2; exit 2; }
kit_dir=""
if [ "${REUSE_DATA:-0}" != 1 ]; then
    [ -f "$stage_dir/payload.1" ] || fail "no $stage_dir/payload.1: call 1 (scripts/device_stage1.sh) did not run on this machine (it was given back between the calls); start again with call 1"
    shopt -s nullglob
    kits=(.gpu/part*/kit.json)
    [ ${#kits[@]} -eq 1 ] || fail "found ${#kits[@]} kit.json under .gpu/part*/, not 1: carry the kit's last part (built by scripts/device_kit.py)"
    kit_dir="$(dirname "${kits[0]}")"
fi
[ "${KIT_WHEELS:-install}" = skip ] || export PYTHONPATH="$PWD/$stage_dir/site${PYTHONPATH:+:$PYTHONPATH}"
export MEGAASR_HOME="$PWD/$stage_dir/home" KIT_STAGE="$stage_dir" KIT_DIR="$kit_dir" PYTHONUNBUFFERED=1

stage() {  # stage NAME COMMAND...: run it, print and log its wall time and exit status, return that status
    local name=$1 t0=$SECONDS rc=0
    shift
    echo "== $name: $*"
    "$@" || rc=$?
    echo "== $name: $((SECONDS - t0)) s, rc $rc (total $SECONDS s)"
    echo "{\"stage\": \"$name\", \"seconds\": $((SECONDS - t0)), \"rc\": $rc, \"total\": $SECONDS}" >> "$out/timings.jsonl"
    return $rc
}

# Variants: every config after the first trains beside it on the same clips (same [data] and base model, checked by
# training/variants.py before any device time is spent), each with its own sft/eval folders; their stages run at
# once (a tiny model leaves most of the GPU and cores idle), each variant's results in $res/NAME/ (NAME = the
# config's file name without .toml; its log of each stage there as STAGE.log), packed into $OUT (below).
variant_rows="$("$py" -m training.variants --stage "$train" "${configs[@]}")" || exit 2
variants=()
declare -A train_dir eval_dir config_of  # train_dir: the [sft] or [rl] out_dir (TRAIN), its final/ is evaluated
while read -r name tdir evl; do
    variants+=("$name"); train_dir[$name]=$tdir; eval_dir[$name]=$evl; mkdir -p "$res/$name"
done <<< "$variant_rows"
for k in "${!variants[@]}"; do config_of[${variants[$k]}]=${configs[$k]}; done

data_dir="$("$py" -c "import sys; from training.config import load_config; print(load_config(sys.argv[1]).data.out_dir)" "$config")"
# REUSE_DATA=1: a later call on the same warm machine trains more variants on the clips an earlier call built
# (unpack and `train data` skipped; refused if that call's data is not there).
reuse=0
if [ "${REUSE_DATA:-0}" = 1 ]; then
    [ -f "$data_dir/summary.json" ] && [ -d "$MEGAASR_HOME/models" ] \
        || fail "REUSE_DATA=1 but no $data_dir/summary.json or $MEGAASR_HOME/models: run without it (unpack + train data)"
    reuse=1
    echo "== unpack, data: reused ($data_dir, built by an earlier call)"
fi
# Unpack: the payload (model and clean speech, checksummed), held-out data; clean speech Opus -> the wav cache `train data` reads.
[ $reuse = 1 ] || stage unpack "$py" - "$config" <<'PY'
import io, json, os, sys, tarfile
from pathlib import Path
import soundfile as sf
from training.config import load_config
from training.kit_payload import unpack
from training.sources import write_audio

kit_dir = Path(os.environ["KIT_DIR"])
kit = json.loads((kit_dir / "kit.json").read_text())
n_parts = kit["parts"]
slices = [Path(os.environ["KIT_STAGE"], f"payload.{k}") for k in range(1, n_parts)]
slices.append(kit_dir / f"payload.{n_parts}")
for k, path in enumerate(slices, start=1):
    if not path.is_file():
        sys.exit(f"device_train: no {path}: call {k} (scripts/device_stage1.sh .gpu/part{k}) did not run on this "
                 "machine; start again with call 1")
try:
    archive, clean_tar = unpack([path.read_bytes() for path in slices], kit)
except ValueError as err:
    sys.exit(f"device_train: {err}")
cfg = load_config(sys.argv[1])
if cfg.sft.base_model != kit["base_model"]:
    sys.exit(f"device_train: the kit holds {kit['base_model']}, the recipe wants {cfg.sft.base_model}")
models = Path(os.environ["MEGAASR_HOME"]) / "models"
models.mkdir(parents=True, exist_ok=True)
with tarfile.open(fileobj=io.BytesIO(archive), mode="r:xz") as tar:
    tar.extractall(models, filter="data")
with tarfile.open(kit_dir / "data.tar.xz") as tar:
    tar.extractall(".gpu/data", filter="data")
clean = Path(cfg.data.out_dir) / "clean"
n = 0
with tarfile.open(fileobj=io.BytesIO(clean_tar)) as tar:
    for member in tar:
        audio, sr = sf.read(io.BytesIO(tar.extractfile(member).read()), dtype="float32")
        assert sr == 16000, (member.name, sr)
        write_audio(clean / (member.name.removesuffix(".ogg") + ".wav"), audio)
        n += 1
print(f"model {kit['base_model']} -> {models}; {n} clean utterances -> {clean}; data -> .gpu/data")
PY

cli=("$py" -m service.cli)

each() {  # each STAGE FUNCTION: FUNCTION NAME for every live variant at once; a variant that fails drops out
    local name=$1 fn=$2 t0=$SECONDS v rc live=() pids=()
    echo "== $name: ${variants[*]}"
    for v in "${variants[@]}"; do "$fn" "$v" > "$res/$v/$name.log" 2>&1 & pids+=($!); done
    for k in "${!pids[@]}"; do
        v=${variants[$k]}; rc=0
        wait "${pids[$k]}" || rc=$?
        echo "{\"stage\": \"$name\", \"variant\": \"$v\", \"rc\": $rc, \"total\": $SECONDS}" >> "$out/timings.jsonl"
        if [ $rc -eq 0 ]; then live+=("$v"); else echo "== $name $v: rc $rc, dropped (tail of its $name.log):"; tail -5 "$res/$v/$name.log"; fi
    done
    echo "== $name: $((SECONDS - t0)) s, ${#live[@]} of ${#variants[@]} variants ok (total $SECONDS s)"
    echo "{\"stage\": \"$name\", \"seconds\": $((SECONDS - t0)), \"rc\": $(( ${#live[@]} ? 0 : 1 )), \"total\": $SECONDS}" >> "$out/timings.jsonl"
    variants=("${live[@]}")
    [ ${#variants[@]} -gt 0 ]
}

# What comes back: $OUT holds at most 8 files of at most 16 MiB (the device tool's limits), so each variant's results
# (stage logs, SFT metrics, both evals with their per-clip rows, the bundle with its adapter stored in float16: a
# rank-64 adapter is 35 MB in float32) are packed into $OUT/NAME.tar.gz after every stage, split into 15 MiB pieces
# NAME.tar.gz.00, .01, ... when larger (join with cat).
pack() {
    local v
    for v in "${!config_of[@]}"; do
        rm -f "$out/$v".tar.gz*
        tar czf "$res/$v.tar.gz" -C "$res" "$v"
        if [ "$(stat -c %s "$res/$v.tar.gz")" -gt $((15 * 2**20)) ]; then
            split -b 15M -d "$res/$v.tar.gz" "$out/$v.tar.gz."
        else
            cp "$res/$v.tar.gz" "$out/"
        fi
    done
}
train_one() {
    "${cli[@]}" train "$train" --config "${config_of[$1]}" --device "$device" || return
    cp "${train_dir[$1]}/metrics.jsonl" "$res/$1/$train-metrics.jsonl"
}
eval_into() {  # eval_into NAME FOLDER RESULT [EVAL ARGS...]
    local v=$1 dir=$2 dest=$3
    shift 3
    "${cli[@]}" eval --config "${config_of[$v]}" --device "$device" --robust "${train_dir[$v]}/final" \
        --router "$router" --out "$dir" "$@" || return
    mkdir -p "$res/$v/$dest"
    cp "$dir/summary.json" "$dir/clips.jsonl" "$dir/robust_hyps.json" "$res/$v/$dest/"
}
eval_std_one() { eval_into "$1" "${eval_dir[$1]}" eval-std; }
eval_fresh_one() { eval_into "$1" "$(dirname "${train_dir[$1]}")/replica" eval-fresh --seed 2026 --clips-per-scenario 4; }
export_one() {
    local dir
    dir="$(dirname "${train_dir[$1]}")"
    "${cli[@]}" export --config "${config_of[$1]}" --robust "${train_dir[$1]}/final" --router "$router" \
        --no-merged --out "$dir/bundle" || return
    rm -rf "$res/$1/bundle" && cp -r "$dir/bundle" "$res/$1/bundle"
    rm -r "$res/$1/bundle/router"  # the shipped one ($ROUTER): the machine here has it
    "$py" - "$res/$1/bundle/adapter/adapter_model.safetensors" <<'PY'
import sys
from safetensors.torch import load_file, save_file
path = sys.argv[1]
save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(path).items()}, path)
PY
}
each_packed() { local rc=0; each "$@" || rc=$?; pack; return $rc; }

[ $reuse = 1 ] || stage data "${cli[@]}" train data --config "$config" --device "$device"
cp "$data_dir/summary.json" "$out/data-summary.json"
each_packed "$train" train_one
# Export before any eval: the adapter is what cannot be redone elsewhere, and GPU run 3's second call ran out of
# device time during export, after its evals, so its best adapter never came back. The bundle's model card
# therefore holds no eval numbers; they come back as eval-std/ and eval-fresh/ beside it.
each_packed export export_one
each_packed eval eval_std_one
# Optional stages, each only if it still fits the budget at its size measured on the H200 (2026-11-27, one variant:
# fresh eval 95 s, CUDA tests 46 s): the fresh eval first (it is a result), then the tests (a check, cut at 90 s).
fits() { [ $((SECONDS + $1)) -le "$budget" ]; }
if fits 110; then
    each_packed eval-fresh eval_fresh_one || true
else
    echo "== eval-fresh: skipped, $SECONDS s of the $budget s budget used"
fi
if [ "${TESTS:-1}" != 0 ] && fits 90; then
    # The tests speak from the run's own clean rows: the training voices are in train.jsonl, flite-rms in val.jsonl.
    cat "$data_dir/train.jsonl" "$data_dir/val.jsonl" > "$data_dir/test-speech.jsonl"
    MEGAASR_TEST_SPEECH="$data_dir/test-speech.jsonl" \
        stage cuda-tests timeout 90 "$py" -m pytest -q -p no:cacheprovider tests/training/test_device.py \
        || echo "== cuda-tests: failed or cut at 90 s; the run goes on"
else
    echo "== cuda-tests: skipped, $SECONDS s of the $budget s budget used"
fi
echo "== total: $SECONDS s; results in $out"
