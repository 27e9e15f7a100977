#!/usr/bin/env bash
# Installs the benchmark peers, which the test suite does not need, into build/bench-venv:
#   * sharedbuffers (bench_records.py), which cannot live in the test venv (see below);
#   * UltraDict, shared-memory-dict, redis-py and the Debian redis-server (bench_shared.py).
#
# sharedbuffers 1.2.3 (latest on PyPI) does not build with Cython 3: its dependency clru fails to cythonize
# clru/cuckoocache/cycuckoocache.pyx ("Cannot assign type 'double' to 'unsigned int'" at
# `ntablesize += max(1, ntablesize / 2)`: `/` is true division under Cython 3's default language_level=3).
# With Cython < 3 both build on Python 3.11. They go into build/bench-venv (system site packages visible, so
# numpy and the source tree's mmstore work there too).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x build/bench-venv/bin/python ]; then
  mkdir -p build
  python3 -m venv --system-site-packages build/bench-venv
fi
build/bench-venv/bin/python -m pip install -q --disable-pip-version-check "cython<3" setuptools wheel
build/bench-venv/bin/python -m pip install -q --disable-pip-version-check --no-build-isolation "sharedbuffers==1.2.3"
build/bench-venv/bin/python -c "import sharedbuffers.mapped_struct; print('sharedbuffers ready in build/bench-venv')"

build/bench-venv/bin/python -m pip install -q --disable-pip-version-check UltraDict shared-memory-dict redis
if ! command -v redis-server >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
build/bench-venv/bin/python -c "import UltraDict, shared_memory_dict, redis; print('bench_shared peers ready in build/bench-venv')"
