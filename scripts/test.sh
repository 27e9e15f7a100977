#!/usr/bin/env bash
# The whole test suite, from a fresh clone: bootstrap, then
#   1. C++: the library, the GoogleTest suite, an installed package used by a find_package(mmstore) consumer;
#   2. wheels: scripts/build-wheels.sh builds one manylinux wheel per supported CPython (3.9 ... 3.13) and
#      the sdist into dist/;
#   3. the matrix: each wheel is installed into a fresh virtualenv and the whole pytest suite runs against
#      the installed package (from tests/python, so the source tree is never imported), then once more
#      against an install from the sdist;
#   4. types: mypy.stubtest (the stubs match the runtime) and mypy --strict on tests/typing/example.py;
#   5. proofs: the C++ suite under ASan+UBSan and its thread/process tests under TSan (scripts/sanitize.sh cpp),
#      every libFuzzer harness for MMSTORE_FUZZ_SECONDS (default 30) from the committed seed corpus
#      (scripts/fuzz.sh), and a short kill -9 soak of Dict, List, SharedDict and Pool (tools/soak.py,
#      MMSTORE_SOAK_KILLS, default 60) that fails on any lost acknowledged operation;
#   6. docs: Sphinx with warnings as errors, links checked.
# A Python that cannot build, install or pass fails the run, and so does any failing step.
# The Python suite against an ASan build (scripts/sanitize.sh python) is not part of it: it takes longer
# than CI's budget allows (docs/testing.md has its last result).
#   scripts/test.sh                      everything
#   scripts/test.sh -k dict              extra arguments go to every pytest run
#   MMSTORE_PYTHONS="3.12" scripts/test.sh   only these Pythons (the sdist is tried with the last one)
#   MMSTORE_SKIP_CPP=1 scripts/test.sh       skip steps 1 and 5 (cross-language tests then skip too)
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
scripts/bootstrap.sh
export MMSTORE_BOOTSTRAPPED=1  # the scripts called below skip bootstrap.sh
PY=build/venv/bin/python
export PATH="$PWD/build/venv/bin:$PATH"  # the venv's cmake and ninja
export CMAKE_GENERATOR=Ninja
command -v ccache >/dev/null && export CMAKE_CXX_COMPILER_LAUNCHER=ccache
read -r -a PYTHONS <<<"${MMSTORE_PYTHONS:-3.9 3.10 3.11 3.12 3.13}"
SUMMARY=()
elapsed() { echo "$(((SECONDS - $1) / 60))m$(((SECONDS - $1) % 60))s"; }

if [[ -z ${MMSTORE_SKIP_CPP:-} ]]; then
  echo "== C++: library, GoogleTest suite, cross-language tool (build/test-cpp)"
  t=$SECONDS
  cmake -S . -B build/test-cpp -DMMSTORE_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
  cmake --build build/test-cpp
  build/test-cpp/mmstore_tests --gtest_brief=1

  echo "== C++: install, then build a downstream project with find_package(mmstore)"
  rm -rf build/install build/consumer
  cmake --install build/test-cpp --prefix build/install
  cmake -S tests/consumer -B build/consumer -DCMAKE_PREFIX_PATH="$PWD/build/install"
  cmake --build build/consumer
  tmpd=$(mktemp -d) && build/consumer/consumer "$tmpd" && rm -rf "$tmpd"
  SUMMARY+=("C++ suite and consumer: passed ($(elapsed $t))")
  export MMSTORE_XLANG="$PWD/build/test-cpp/mmstore_xlang"
fi

echo "== wheels and sdist (scripts/build-wheels.sh ${PYTHONS[*]})"
t=$SECONDS
scripts/build-wheels.sh "${PYTHONS[@]}"
SUMMARY+=("wheels ${PYTHONS[*]} and sdist built ($(elapsed $t))")

# Runs the whole suite with the interpreter of venv $1 (which has mmstore installed); $2 names the run.
run_suite() {
  local venv=$1 what=$2 t=$SECONDS log
  log="build/matrix/$what.log"
  # The package must come from the venv, never from the source tree.
  (cd tests/python && "../../$venv/bin/python" -c 'import mmstore, sys; p = mmstore.__file__
assert "/site-packages/" in p, p; print("   mmstore", mmstore.__version__, "from", p)')
  set +e
  (cd tests/python && "../../$venv/bin/python" -m pytest -q -p no:cacheprovider -rfEs \
    --hypothesis-profile=ci "${PYTEST_ARGS[@]}" .) 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  set -e
  SUMMARY+=("$what: $(tail -n 1 "$log" | sed 's/=//g; s/^ *//') ($(elapsed $t))")
  return "$rc"
}
PYTEST_ARGS=("$@")

source scripts/build-wheels.sh --functions-only  # python_for
mkdir -p build/matrix
failed=()
for v in "${PYTHONS[@]}"; do
  tag="cp${v/./}"
  wheel=(dist/mmstore-*-"$tag"-"$tag"-manylinux*.whl)
  venv="build/matrix/py$v"
  echo "== Python $v: fresh venv, install ${wheel[0]##*/}[test], run the suite"
  rm -rf "$venv"
  "$(python_for "$v")" -m venv "$venv"
  "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off "${wheel[0]}[test]" \
    -c tests/python/constraints.txt
  run_suite "$venv" "wheel-py$v" || failed+=("wheel-py$v")
done

v=${PYTHONS[-1]}
venv="build/matrix/sdist-py$v"
echo "== Python $v: fresh venv, install from the sdist (compiles the extension), run the suite"
rm -rf "$venv"
"$(python_for "$v")" -m venv "$venv"
sdist=(dist/mmstore-*.tar.gz)
# pip unpacks the sdist under TMPDIR: inside the tree, ccache (base dir: the tree) reuses the wheels' objects.
mkdir -p build/tmp
TMPDIR="$PWD/build/tmp" CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1 "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off "${sdist[0]}[test]" \
  -c tests/python/constraints.txt
run_suite "$venv" "sdist-py$v" || failed+=("sdist-py$v")

echo "== types: mypy.stubtest mmstore, mypy --strict tests/typing/example.py (Python $v)"
t=$SECONDS
"$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off "mypy>=1.10"
if (cd tests/typing && "../../$venv/bin/python" -m mypy.stubtest mmstore --mypy-config-file mypy.ini \
      --allowlist stubtest-allowlist.txt && "../../$venv/bin/python" -m mypy --strict --config-file mypy.ini example.py); then
  SUMMARY+=("types: stubtest and mypy --strict passed ($(elapsed $t))")
else
  failed+=("types"); SUMMARY+=("types: FAILED")
fi

if [[ -z ${MMSTORE_SKIP_CPP:-} ]]; then
  echo "== sanitizers: C++ suite under ASan+UBSan, thread/process tests under TSan (scripts/sanitize.sh cpp)"
  t=$SECONDS
  if scripts/sanitize.sh cpp; then
    SUMMARY+=("sanitizers: C++ suite clean under ASan+UBSan, thread/process tests under TSan ($(elapsed $t))")
  else
    failed+=("sanitizers"); SUMMARY+=("sanitizers: FAILED ($(elapsed $t))")
  fi

  fuzz_s=${MMSTORE_FUZZ_SECONDS:-30}
  echo "== fuzz: every libFuzzer harness for ${fuzz_s} s from the committed seed corpus (scripts/fuzz.sh)"
  t=$SECONDS
  if scripts/fuzz.sh "$fuzz_s" | tee build/fuzz-ci.log; then
    SUMMARY+=("fuzz: 7 harnesses x ${fuzz_s} s, $(awk '$2 ~ /^[0-9]+$/ {n += $2} END {print n}' build/fuzz-ci.log) executions, no finding ($(elapsed $t))")
  else
    failed+=("fuzz"); SUMMARY+=("fuzz: FINDING, reproducer above ($(elapsed $t))")
  fi
fi

soak_kills=${MMSTORE_SOAK_KILLS:-60}
echo "== soak: ${soak_kills} kill -9 of Dict, List, SharedDict and Pool writers (tools/soak.py, Python $v)"
t=$SECONDS
if "$venv/bin/python" tools/soak.py --kills "$soak_kills" | tee build/soak-ci.log; then
  SUMMARY+=("soak: $(tail -n 1 build/soak-ci.log | awk '{print $2 " kills, " $3 " recovered, " $4 " lost"}') ($(elapsed $t))")
else
  failed+=("soak"); SUMMARY+=("soak: FAILED ($(elapsed $t))")
fi

echo "== docs: Sphinx with warnings as errors, internal links and anchors (scripts/docs.sh, Python $v)"
t=$SECONDS
if MMSTORE_DOCS_PYTHON="$venv/bin/python" scripts/docs.sh $(command -v chromium >/dev/null && echo --browser); then
  SUMMARY+=("docs: built with -W, links checked ($(elapsed $t))")
else
  failed+=("docs"); SUMMARY+=("docs: FAILED")
fi

echo
echo "== summary"
printf '   %s\n' "${SUMMARY[@]}"
ls -l dist | sed 's/^/   /'
echo "   total $(elapsed $t0)"
if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
