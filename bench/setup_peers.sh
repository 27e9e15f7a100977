#!/usr/bin/env bash
# Installs the benchmark peers that cannot live in the test venv: sharedbuffers (for bench_records.py).
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
