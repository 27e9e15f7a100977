#!/usr/bin/env bash
# Minimal set-up shared by the user-facing scripts (scripts/demo.sh): the Debian packages needed to *build*
# the Python package (a C++20 compiler, Python headers, venv), a virtualenv in build/venv
# with the PyPI build dependencies, then `pip install .` with the build's progress shown line by line.
# Nothing for tests or benchmarks: scripts/bootstrap.sh installs those. Idempotent; safe to run every time.
#   scripts/_venv.sh            set up and (re)install the package (incremental after the first build)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# --- Debian packages: only what is truly absent (cmake and ninja may come from pip, g++ from elsewhere).
need=()
command -v g++ >/dev/null || need+=(g++)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need+=(python3-dev)
if ((${#need[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root or sudo to install Debian packages: ${need[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  say "installing Debian packages: ${need[*]} (apt-get, about a minute)"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${need[@]}"
fi

# --- virtualenv with the build dependencies (scikit-build-core, nanobind, cmake, ninja) from PyPI.
PY=build/venv/bin/python
if [ ! -x "$PY" ]; then
  say "creating the virtualenv build/venv"
  mkdir -p build
  python3 -m venv --system-site-packages build/venv
fi
if ! "$PY" -c 'import scikit_build_core, nanobind, cmake, ninja' 2>/dev/null; then
  say "installing the build dependencies into build/venv (pip: scikit-build-core, nanobind, cmake, ninja)"
  "$PY" -m pip install --disable-pip-version-check --progress-bar on \
    "scikit-build-core>=0.10" "nanobind>=2.0" "cmake>=3.24" ninja
fi

# --- the package itself. The first build compiles the C++ engine and the nanobind extension (about 3 min
# on 2 cores); later runs reuse build/<wheel tag> and only recompile what changed. The full pip/cmake log
# goes to build/pip-install.log; the terminal gets the compile progress ("[12/34] Building ...").
log=build/pip-install.log
if [ -d build/venv/lib ] && "$PY" -c 'import mmstore._core' 2>/dev/null; then
  say "updating mmstore in build/venv (incremental build; full log: $log)"
else
  say "building and installing mmstore into build/venv: compiling the C++ extension, about 3 min on 2 cores (full log: $log)"
fi
set +e
"$PY" -m pip install -v --disable-pip-version-check --no-build-isolation . >"$log" 2>&1 &
pip_pid=$!
# Show progress as it happens: ninja's "[i/n]" lines, abbreviated to the file being compiled.
tail -n +1 -f "$log" --pid="$pip_pid" 2>/dev/null | grep --line-buffered -E '^ *(\[[0-9]+/[0-9]+\]|\*\*\* [A-Z])' \
  | sed -u -E 's#^ *(\[[0-9]+/[0-9]+\]) ([A-Za-z ]+) [^ ]+ ([^ ]+)$#  \1 \2 \3#; s#^ *\*\*\* #  #'
wait "$pip_pid"; rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  echo "pip install failed (exit $rc); the last lines of $log:" >&2
  tail -n 40 "$log" >&2
  exit "$rc"
fi
say "mmstore is installed in build/venv"
