#!/usr/bin/env bash
# Create the venv of the chosen ROS 2 distribution and install what the project needs, idempotently.
# Usage: [ROS_DISTRO=jazzy|kilted] scripts/bootstrap.sh
#   jazzy (default): .venv; kilted: .venv-kilted. Runtime + simulation + tests + training.
# A stamp file keyed on the requirements' hash skips the work when nothing changed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$rc_root"
venv="$rc_venv"
py="${PYTHON:-python3}"
stamp="$venv/.bootstrap-stamp"
reqs=(requirements/ros-"$rc_distro".txt requirements/python.txt requirements/train.txt)
want="$(cat "${reqs[@]}" setup.py | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import rclpy, residual_control" 2>/dev/null; then
  exit 0
fi
echo "[bootstrap] setting up $venv for ROS 2 $rc_distro (one-time; later runs skip this)" >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
# torch first and alone: the CPU build; anything that depends on torch after it.
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" -r "requirements/ros-$rc_distro.txt" -r requirements/python.txt -r requirements/train.txt
"${pip[@]}" --no-deps -e .
echo "$want" > "$stamp"
echo "[bootstrap] done" >&2
