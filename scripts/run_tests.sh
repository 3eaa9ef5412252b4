#!/usr/bin/env bash
# Run the whole test suite in the venv of $ROS_DISTRO (default jazzy) with a private ROS 2 domain,
# so parallel runs never cross-talk. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$rc_root"
export ROS_DISTRO="$rc_distro"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 101 ))}"
# Keep discovery on this host: ROS_AUTOMATIC_DISCOVERY_RANGE on Iron and newer; Humble ignores it and
# reads ROS_LOCALHOST_ONLY instead (which the newer distributions deprecate, with a warning per process).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
if [ "$rc_distro" = humble ]; then export ROS_LOCALHOST_ONLY=1; fi
export PYTHONUNBUFFERED=1
echo "[tests] ROS 2 $rc_distro ($rc_venv), ROS_DOMAIN_ID=$ROS_DOMAIN_ID" >&2
exec "$rc_venv/bin/python" -m pytest "$@"
