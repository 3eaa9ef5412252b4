#!/usr/bin/env bash
# Create .venv at the repo root and install what the project needs, idempotently.
# Usage: scripts/bootstrap.sh            runtime + simulation + tests + training
# A stamp file keyed on the requirements' hash skips the work when nothing changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
py="${PYTHON:-python3}"
stamp="$venv/.bootstrap-stamp"
want="$(cat requirements/*.txt setup.py | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import rclpy, residual_control" 2>/dev/null; then
  exit 0
fi
echo "[bootstrap] setting up $venv (one-time; later runs skip this)" >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
# torch first and alone: the CPU build; anything that depends on torch after it.
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" -r requirements/dev.txt -r requirements/train.txt
"${pip[@]}" --no-deps -e .
echo "$want" > "$stamp"
echo "[bootstrap] done" >&2
