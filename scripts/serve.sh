#!/usr/bin/env bash
# Install, fetch and convert the default model (whisper-tiny.en) on first use, and start the service.
# Extra arguments go to `megaasr serve` (e.g. --port 9000 --model whisper-base).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve
# Freed decoder buffers go back to the OS instead of staying in malloc's heaps (docs/reliability.md).
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-131072}" MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
exec .venv/bin/megaasr serve "$@"
