#!/usr/bin/env bash
# The whole test suite, C++ and Python, from a fresh clone: bootstrap, build, run.
#   scripts/test.sh            everything
#   scripts/test.sh -k dict    extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
PY=build/venv/bin/python
JOBS=$(nproc 2>/dev/null || echo 2)

echo "== C++: library, GoogleTest suite, cross-language tool"
cmake -S . -B build/test-cpp -DMMSTORE_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/test-cpp -j "$JOBS"
build/test-cpp/mmstore_tests --gtest_brief=1

echo "== C++: install, then build a downstream project with find_package(mmstore)"
rm -rf build/install build/consumer
cmake --install build/test-cpp --prefix build/install >/dev/null
cmake -S tests/consumer -B build/consumer -DCMAKE_PREFIX_PATH="$PWD/build/install" >/dev/null
cmake --build build/consumer -j "$JOBS" >/dev/null
tmpd=$(mktemp -d) && build/consumer/consumer "$tmpd" && rm -rf "$tmpd"

echo "== Python: build and install the package, run pytest"
$PY -m pip install -q --disable-pip-version-check --no-build-isolation .
cd tests/python  # import the installed package, not the source tree
MMSTORE_XLANG="$PWD/../../build/test-cpp/mmstore_xlang" ../../$PY -m pytest -q -p no:cacheprovider \
  --hypothesis-profile=ci "$@" .
