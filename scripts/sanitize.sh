#!/usr/bin/env bash
# The test suites under sanitizers.
#   scripts/sanitize.sh cpp       C++ suite under ASan+UBSan, then under TSan the tests that use threads or
#                                 processes (TSAN_FILTER below; MMSTORE_TSAN_FILTER='*' runs them all)
#   scripts/sanitize.sh python    Python suite against an ASan+UBSan build of the extension, every child
#                                 process instrumented too (LD_PRELOAD is inherited); extra arguments go to pytest
#   scripts/sanitize.sh           both
# A sanitizer report fails the run (halt_on_error). scripts/test.sh (CI) runs `cpp`; `python` takes too long
# for CI's budget (its last result is in docs/testing.md). Under ASan the Python tests that measure memory
# (RSS) skip themselves, naming the reason (tests/python/conftest.py, MMSTORE_UNDER_ASAN): ASan's shadow
# memory and quarantine inflate RSS by design, which says nothing about mmstore.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
shift || true
# Every test whose body starts threads or forks processes (tests/cpp/threads_test.cpp, shared_dict_test.cpp,
# sync/process_mutex_test.cpp, containers/spill_store_test.cpp, the writer-killed tests of the containers, and
# the child-process readers of region_open_test.cpp and dict_test.cpp). A new such test should carry one of
# these words in its name (Thread, Process, Fork, Killed, Exits) or be added here.
TSAN_FILTER='*Thread*:*Process*:*Fork*:*Killed*:*Exits*:SharedDict*.*:SpillDir.*:RegionOpenTest.*:*Damage*:ArenaTest.CorruptFreeList*'
TSAN_FILTER=${MMSTORE_TSAN_FILTER:-$TSAN_FILTER}
JOBS=$(nproc 2>/dev/null || echo 2)
GEN=(); [ -x build/venv/bin/ninja ] && GEN=(-G Ninja -DCMAKE_MAKE_PROGRAM="$PWD/build/venv/bin/ninja")
# -O1 -g1 (line tables: file and line in every report): instrumented test files compile in less than half
# the CPU time of -O2 -g (12 s instead of 27 s for list_test.cpp), which is what the builds cost in CI.
OPT=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG")
scripts/bootstrap.sh

if [ "$what" = cpp ] || [ "$what" = all ]; then
  echo "== sanitize: C++ suite under ASan+UBSan (build/asan)"
  cmake -S . -B build/asan "${GEN[@]}" -DMMSTORE_BUILD_TESTS=ON -DMMSTORE_SANITIZE=ON "${OPT[@]}" >/dev/null
  cmake --build build/asan -j "$JOBS" --target mmstore_tests
  ASAN_OPTIONS=halt_on_error=1:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    build/asan/mmstore_tests --gtest_brief=1
  echo "== sanitize: C++ suite under TSan (build/tsan)"
  cmake -S . -B build/tsan "${GEN[@]}" -DMMSTORE_BUILD_TESTS=ON -DMMSTORE_TSAN=ON "${OPT[@]}" >/dev/null
  cmake --build build/tsan -j "$JOBS" --target mmstore_tests
  # setarch -R: TSan of gcc 12 needs the old address-space layout on kernels with high mmap entropy.
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 setarch "$(uname -m)" -R build/tsan/mmstore_tests --gtest_brief=1 \
    --gtest_filter="$TSAN_FILTER"
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
    ../../build/asan-venv/bin/python -m pytest -q -p no:cacheprovider -rfEs --hypothesis-profile=ci "$@" .
fi
