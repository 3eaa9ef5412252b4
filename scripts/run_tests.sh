#!/usr/bin/env bash
# Run the whole test suite in .venv with a private ROS 2 domain, so parallel runs never cross-talk.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 101 ))}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export PYTHONUNBUFFERED=1
echo "[tests] ROS_DOMAIN_ID=$ROS_DOMAIN_ID" >&2
exec .venv/bin/python -m pytest "$@"
