#!/usr/bin/env bash
# Validate the deployment files without a Docker engine or a cluster.
#
#   scripts/validate_deploy.sh           # offline: the CI checks (pytest tests/deploy) + lock freshness
#   scripts/validate_deploy.sh --online  # also ask PyPI that every pinned wheel exists (pip dry-runs)
#
# What each check covers, and what cannot be checked here, is in docs/deploy.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "no .venv: run scripts/setup.sh test first" >&2; exit 1; }

echo "==> tests/deploy (Dockerfile, compose config, dashboard PromQL vs metrics, k8s schemas)"
"$PY" -m pytest -q -p no:cacheprovider tests/deploy

echo "==> constraints.txt against this venv (names and versions)"
if ! "$PY" deploy/docker/freeze_constraints.py --check; then
  echo "    (the venv drifted from the lock: rerun deploy/docker/freeze_constraints.py if that is intended)" >&2
  status=1
fi

if command -v hadolint >/dev/null 2>&1; then
  echo "==> hadolint"
  hadolint Dockerfile
fi
if command -v promtool >/dev/null 2>&1; then
  echo "==> promtool check config"
  promtool check config deploy/prometheus/prometheus.yml
  promtool check config deploy/prometheus/prometheus.gpu.yml
fi

if [ "${1:-}" = "--online" ]; then
  # pip resolves against PyPI only (no local wheel folders, no pip.conf), binary wheels only,
  # for this interpreter and platform: CPython 3.11 manylinux x86_64, as in the images.
  dry() { env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "$PY" -m pip install --dry-run --quiet \
            --ignore-installed --only-binary :all: --index-url https://pypi.org/simple "$@"; }
  tmp=$(mktemp); trap 'rm -f "$tmp"' EXIT
  grep -v '^torch==' deploy/docker/constraints.txt > "$tmp"  # torch comes from the CPU index in the image
  echo "==> every service pin has a wheel on PyPI"
  dry --no-deps -r "$tmp"
  echo "==> vLLM environment resolves from constraints-gpu.txt"
  dry -c deploy/docker/constraints-gpu.txt "vllm==$(sed -n 's/^vllm==//p' deploy/docker/constraints-gpu.txt)"
  echo "==> CUDA torch resolves from constraints-cuda.txt"
  dry -c deploy/docker/constraints.txt -c deploy/docker/constraints-cuda.txt "$(grep '^torch==' deploy/docker/constraints.txt)"
  echo "==> ray resolves from constraints-ray.txt"
  dry -c "$tmp" -c deploy/docker/constraints-ray.txt "ray[default]==$(sed -n 's/^ray==//p' deploy/docker/constraints-ray.txt)"
fi
exit "${status:-0}"
