#!/usr/bin/env bash
# Installs everything mmstore needs to build and test on a fresh Debian machine, skipping what is present:
# Debian -dev packages for the C++ side, then a virtualenv (build/venv) with the Python build and test
# dependencies from PyPI. Idempotent; safe to run before every command.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(libgtest-dev libgmock-dev libbenchmark-dev libabsl-dev liblmdb-dev cmake g++ python3-venv)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  # cmake, g++ and venv may come from elsewhere (pyenv, pip); only install what is truly absent.
  need=()
  for p in "${missing[@]}"; do
    case "$p" in
      cmake) command -v cmake >/dev/null || need+=("$p") ;;
      g++) command -v g++ >/dev/null || need+=("$p") ;;
      python3-venv) python3 -c 'import venv, ensurepip' 2>/dev/null || need+=("$p") ;;
      *) need+=("$p") ;;
    esac
  done
  if ((${#need[@]})); then
    echo "bootstrap: installing Debian packages: ${need[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

if [ ! -x build/venv/bin/python ]; then
  mkdir -p build
  python3 -m venv --system-site-packages build/venv
fi
build/venv/bin/python -m pip install -q --disable-pip-version-check \
  "scikit-build-core>=0.10" "nanobind>=2.0" "cmake>=3.24" ninja pytest "hypothesis>=6" numpy xxhash \
  dask distributed zict psutil  # Pool: mmstore.dask, its tests, and the peers of bench/bench_pool.py
