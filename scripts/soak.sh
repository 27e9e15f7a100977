#!/usr/bin/env bash
# Kill -9 soak of every kind of store (tools/soak.py): scripts/soak.sh [KILLS], default 1000.
# Prints kills, recoveries and lost acknowledged operations; non-zero exit if anything was lost.
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${1:-1000}
PY=${MMSTORE_PYTHON:-build/venv/bin/python}
if [ "$PY" = build/venv/bin/python ]; then
  scripts/bootstrap.sh
  echo "soak: installing the package into build/venv"
  $PY -m pip install --disable-pip-version-check --no-build-isolation .
fi
exec "$PY" tools/soak.py --kills "$KILLS"
