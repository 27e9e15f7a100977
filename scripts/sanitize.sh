#!/usr/bin/env bash
# The test suites under sanitizers.
#   scripts/sanitize.sh cpp       C++ suite under ASan+UBSan, then under TSan (threads and forked processes)
#   scripts/sanitize.sh python    Python suite against an ASan+UBSan build of the extension, every child
#                                 process instrumented too (LD_PRELOAD is inherited)
#   scripts/sanitize.sh           both
# A sanitizer report fails the run (halt_on_error). Memory-budget tests are skipped under ASan only in the
# Python run: ASan's shadow memory and quarantine inflate RSS by design, which says nothing about mmstore.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
JOBS=$(nproc 2>/dev/null || echo 2)
GEN=(); [ -x build/venv/bin/ninja ] && GEN=(-G Ninja -DCMAKE_MAKE_PROGRAM="$PWD/build/venv/bin/ninja")
scripts/bootstrap.sh

if [ "$what" = cpp ] || [ "$what" = all ]; then
  echo "== sanitize: C++ suite under ASan+UBSan (build/asan)"
  cmake -S . -B build/asan "${GEN[@]}" -DMMSTORE_BUILD_TESTS=ON -DMMSTORE_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build/asan -j "$JOBS" --target mmstore_tests
  ASAN_OPTIONS=halt_on_error=1:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    build/asan/mmstore_tests --gtest_brief=1
  echo "== sanitize: C++ suite under TSan (build/tsan)"
  cmake -S . -B build/tsan "${GEN[@]}" -DMMSTORE_BUILD_TESTS=ON -DMMSTORE_TSAN=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build/tsan -j "$JOBS" --target mmstore_tests
  # setarch -R: TSan of gcc 12 needs the old address-space layout on kernels with high mmap entropy.
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 setarch "$(uname -m)" -R build/tsan/mmstore_tests --gtest_brief=1
fi

if [ "$what" = python ] || [ "$what" = all ]; then
  echo "== sanitize: Python suite against an ASan+UBSan extension (build/asan-venv)"
  [ -x build/asan-venv/bin/python ] || python3 -m venv --system-site-packages build/asan-venv
  build/asan-venv/bin/python -m pip install --disable-pip-version-check "scikit-build-core>=0.10" "nanobind>=2.0" \
    "cmake>=3.24" ninja pytest "hypothesis>=6" numpy psutil
  build/asan-venv/bin/python -m pip install --disable-pip-version-check --no-build-isolation \
    -C cmake.define.MMSTORE_SANITIZE=ON -C build-dir=build/asan-wheel .
  ASAN_LIB=$(g++ -print-file-name=libasan.so)
  UBSAN_LIB=$(g++ -print-file-name=libubsan.so)
  cd tests/python
  LD_PRELOAD="$ASAN_LIB $UBSAN_LIB" ASAN_OPTIONS=halt_on_error=1:detect_leaks=0 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 MMSTORE_UNDER_ASAN=1 \
    ../../build/asan-venv/bin/python -m pytest -q -p no:cacheprovider --hypothesis-profile=ci \
    -k "not within_their_memory_budget and not rss and not anonymous_memory" .
fi
