#!/usr/bin/env bash
# The main job: a short demo of what mmstore does (python -m mmstore demo): a Dict and a List reopened in a
# new process, a writer killed with SIGKILL and its store reopened intact, typed records, a SharedDict
# shared by three processes, the spilling Pool, and C++ reading what Python wrote (when the C++ example
# tool has been built by scripts/test.sh).
#
# Needs only what the demo uses: scripts/_venv.sh installs the build dependencies (a C++ compiler,
# libxxhash-dev, Python headers; scikit-build-core, nanobind, cmake, ninja from PyPI) into build/venv and
# runs `pip install .`. No test or benchmark packages, no Dask, no numpy (the demo says what it skips).
#   scripts/demo.sh                    the demo
#   scripts/demo.sh --keep DIR         keep its files in DIR for `python -m mmstore stats DIR/demo.mms`
#   scripts/demo.sh --n 1000000        more entries (other options: build/venv/bin/python -m mmstore demo -h)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ -x build/venv/bin/python ] && build/venv/bin/python -c 'import mmstore._core' 2>/dev/null; then
  echo "mmstore demo: updating the package in build/venv (seconds), then the demo (about 5 s)"
else
  echo "mmstore demo: first run: setting up build/venv and compiling the C++ extension (about 3-4 min on 2 cores;"
  echo "              later runs about 10 s), then the demo itself (about 5 s)"
fi
scripts/_venv.sh
args=()
xlang=$root/build/test-cpp/mmstore_xlang
if [ -x "$xlang" ] && [ -z "${MMSTORE_XLANG:-}" ]; then args+=(--xlang "$xlang"); fi
# Run from a scratch directory, so the demo imports the installed package and not python/mmstore.
cd "${TMPDIR:-/tmp}"
exec "$root/build/venv/bin/python" -m mmstore demo ${args[@]+"${args[@]}"} "$@"
