#!/usr/bin/env bash
# Install what Mega-ASR needs into ./.venv. Usage: scripts/setup.sh [serve|test]
# "test" also installs the dev tools and the Debian packages that hold the real speech and noise
# used by the tests and the training recipes (pocketsphinx-testdata, asterisk-core-sounds-en*,
# sonic-pi-samples, flite, dict-devil: public-domain prose for the voices to read) and Debian chromium
# for the browser demo test.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-serve}"
PY="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
extras=""
[ "$mode" = "test" ] && extras="[dev]"
echo "==> installing mega-asr${extras} (CPU torch from the local wheel; no CUDA)"
.venv/bin/python -m pip install -q -e ".${extras}" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import service, simulation, training" # fail loudly if the install did not take

if [ "$mode" = "test" ]; then
  pkgs=(pocketsphinx-testdata asterisk-core-sounds-en asterisk-core-sounds-en-wav sonic-pi-samples flite dict-devil
        chromium)
  missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing test data packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
