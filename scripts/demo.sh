#!/usr/bin/env bash
# The main job: bootstrap, install, then a short demo of mmstore on embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh >/dev/null
build/venv/bin/python -m pip install -q --disable-pip-version-check --no-build-isolation .
cd /tmp && exec "$OLDPWD/build/venv/bin/python" -m mmstore demo "$@"
