#!/usr/bin/env bash
# Install, fetch and convert the default model (whisper-tiny.en) on first use, and start the service.
# Extra arguments go to `megaasr serve` (e.g. --port 9000 --model whisper-base).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve
exec .venv/bin/megaasr serve "$@"
