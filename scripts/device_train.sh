#!/usr/bin/env bash
# GPU run, the last call (docs/training.md, "GPU run"): check and unpack the kit, run the recipe, return results.
# Carries the kit's last part (the one with kit.json) and needs the earlier calls (scripts/device_stage1.sh) on the
# same warm machine: they left the other model slices and the wheels in .gpu-stage/. Stages: train data, train sft, eval (the std draw), export, then while time is left
# the eval on the fresh draw and the CUDA tests of the training code (tests/training/test_device.py); each
# stage's wall time is printed, and results are copied to $OUT after every stage, so a
# run stopped at the call's limit still returns what it finished.
# Usage: scripts/device_train.sh [CONFIG]   Env: DEVICE (cuda), PY (python3), BUDGET_S (540: an optional stage
# starts only if its measured size still fits in it; TESTS=0 skips the tests), KIT_STAGE (.gpu-stage), ROUTER (checkpoints/whisper-tiny.en-robust/router), KIT_WHEELS (skip: use PY's packages).
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-training/configs/tiny-en-gpu.toml}"
device="${DEVICE:-cuda}"
py="${PY:-python3}"
budget="${BUDGET_S:-540}"
router="${ROUTER:-checkpoints/whisper-tiny.en-robust/router}"
out="${OUT:-runs/gpu/out}"
stage_dir="${KIT_STAGE:-.gpu-stage}"
mkdir -p "$out"
exec > >(tee -a "$out/train.log") 2>&1
fail() { echo "device_train: $*" >&2; exit 2; }
[ -f "$stage_dir/model.tar.xz.1" ] || fail "no $stage_dir/model.tar.xz.1: call 1 (scripts/device_stage1.sh) did not run on this machine (it was given back between the calls); start again with call 1"
shopt -s nullglob
kits=(.gpu/part*/kit.json)
[ ${#kits[@]} -eq 1 ] || fail "found ${#kits[@]} kit.json under .gpu/part*/, not 1: carry the kit's last part (built by scripts/device_kit.py)"
kit_dir="$(dirname "${kits[0]}")"
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

# Unpack: model (checksummed), held-out data, clean speech (Opus -> the wav cache `train data` reads).
stage unpack "$py" - "$config" <<'PY'
import hashlib, io, json, os, sys, tarfile
from pathlib import Path
import soundfile as sf
from training.config import load_config
from training.sources import write_audio

kit_dir = Path(os.environ["KIT_DIR"])
kit = json.loads((kit_dir / "kit.json").read_text())
n_parts = kit.get("parts", 2)  # kits built before the N-part split had 2 and no count
slices = [Path(os.environ["KIT_STAGE"], f"model.tar.xz.{k}") for k in range(1, n_parts)]
slices.append(kit_dir / f"model.tar.xz.{n_parts}")
for k, path in enumerate(slices, start=1):
    if not path.is_file():
        sys.exit(f"device_train: no {path}: call {k} (scripts/device_stage1.sh .gpu/part{k}) did not run on this "
                 "machine; start again with call 1")
archive = b"".join(path.read_bytes() for path in slices)
if hashlib.sha256(archive).hexdigest() != kit["model_archive_sha256"]:
    sys.exit(f"device_train: the model archive's checksum differs: the {n_parts} parts come from different kits")
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
with tarfile.open(kit_dir / "clean.tar") as tar:
    for member in tar:
        audio, sr = sf.read(io.BytesIO(tar.extractfile(member).read()), dtype="float32")
        assert sr == 16000, (member.name, sr)
        write_audio(clean / (member.name.removesuffix(".ogg") + ".wav"), audio)
        n += 1
print(f"model {kit['base_model']} -> {models}; {n} clean utterances -> {clean}; data -> .gpu/data")
PY

read -r sft_dir eval_dir data_dir < <("$py" -c "
import sys; from training.config import load_config
c = load_config(sys.argv[1]); print(c.sft.out_dir, c.eval.out_dir, c.data.out_dir)" "$config")
gpu_dir="$(dirname "$sft_dir")"
cli=("$py" -m service.cli)
stage data "${cli[@]}" train data --config "$config" --device "$device"
cp "$data_dir/summary.json" "$out/data-summary.json"
stage sft "${cli[@]}" train sft --config "$config" --device "$device"
cp "$sft_dir/metrics.jsonl" "$out/sft-metrics.jsonl"
stage eval "${cli[@]}" eval --config "$config" --device "$device" --robust "$sft_dir/final" --router "$router"
cp "$eval_dir/summary.json" "$out/eval-std.json"
stage export "${cli[@]}" export --config "$config" --robust "$sft_dir/final" --router "$router" \
    --eval-summary "$eval_dir/summary.json" --no-merged --out "$gpu_dir/bundle"
tar czf "$out/bundle.tar.gz" -C "$gpu_dir" bundle
# Optional stages, each only if it still fits the budget at its size measured on the H200 (2026-11-27: fresh eval
# 95 s, CUDA tests 46 s): the fresh eval first (it is a result), then the tests (a check, cut at 90 s).
fits() { [ $((SECONDS + $1)) -le "$budget" ]; }
if fits 110; then
    stage eval-fresh "${cli[@]}" eval --config "$config" --device "$device" --robust "$sft_dir/final" \
        --router "$router" --seed 2026 --clips-per-scenario 4 --out "$gpu_dir/replica"
    cp "$gpu_dir/replica/summary.json" "$out/eval-fresh.json"
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
