#!/usr/bin/env bash
# The main job: bootstrap, install, then a short demo of the four faces of mmstore on embedded defaults
# (Dict/List files, typed records, SharedDict across processes, the spilling Pool).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh >/dev/null
build/venv/bin/python -m pip install -q --disable-pip-version-check --no-build-isolation .
cd /tmp && exec "$OLDPWD/build/venv/bin/python" -m mmstore demo "$@"
