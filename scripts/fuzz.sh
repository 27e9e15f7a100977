#!/usr/bin/env bash
# Coverage-guided fuzzing of every file-format entry point with libFuzzer (clang from Debian), each harness
# under ASan and UBSan (tests/fuzz/fuzz_*.cpp: Dict, List, RecordArray, Mapping and spill files, the codec,
# schemas with rows).
#   scripts/fuzz.sh                 every harness for 60 s
#   scripts/fuzz.sh 600             every harness for 10 minutes
#   scripts/fuzz.sh 30 dict codec   those two for 30 s each
# The committed seed corpus (tests/fuzz/corpus/<harness>, written by tests/fuzz/make_corpus.py) is copied to
# build/fuzz/work/<harness>, where the fuzzer keeps what it finds; a crash, sanitizer report, leak, timeout
# (60 s) or out-of-memory input lands in build/fuzz/artifacts/<harness>-* and fails the script, which prints
# the report's first lines and the reproducer's path. Prints executions, coverage (edges) and features per
# harness. scripts/test.sh (CI) runs it for MMSTORE_FUZZ_SECONDS (default 30) per harness.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
shift || true
HARNESSES=("$@")
((${#HARNESSES[@]})) || HARNESSES=(dict list records mapping spill codec schema)

scripts/bootstrap.sh  # clang and libclang-rt-14-dev (libFuzzer) among the rest
GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
[ -x build/venv/bin/ninja ] && GEN=(-G Ninja -DCMAKE_MAKE_PROGRAM="$PWD/build/venv/bin/ninja")
echo "fuzz: building the instrumented harnesses (build/fuzz; a few minutes the first time)"
CC=clang CXX=clang++ cmake -S . -B build/fuzz "${GEN[@]}" -DMMSTORE_BUILD_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/fuzz -j "$(nproc 2>/dev/null || echo 2)" --target $(printf 'fuzz_%s ' "${HARNESSES[@]}")

mkdir -p build/fuzz/artifacts
export MMSTORE_FUZZ_DIR=${MMSTORE_FUZZ_DIR:-/dev/shm}
status=0
findings=()
printf '%-9s %12s %8s %9s %s\n' harness executions edges features result
for h in "${HARNESSES[@]}"; do
  work=build/fuzz/work/$h
  mkdir -p "$work"
  # The committed seeds always replace their copies (a format change makes old copies shallow); what the
  # fuzzer found itself keeps its content-hash names.
  cp tests/fuzz/corpus/"$h"/* "$work"/ 2>/dev/null || true
  log=build/fuzz/$h.log
  # -timeout=60: an input that runs for 60 s hangs (every seed runs in well under a second); a lower bound
  # is wall-clock noise on a loaded machine, where a starved harness once took 42 s for a 1 ms input.
  if build/fuzz/fuzz_"$h" -max_total_time="$SECONDS_EACH" -timeout=60 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix=build/fuzz/artifacts/"$h"- "$work" >"$log" 2>&1; then
    result=ok
  else
    result="FINDING (log: $log)"
    status=1
    findings+=("$h")
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  edges=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
  feats=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
  printf '%-9s %12s %8s %9s %s\n' "$h" "$execs" "$edges" "$feats" "$result"
done
for h in "${findings[@]}"; do
  echo "fuzz: $h found a failing input; the sanitizer report:"
  grep -E -m 12 'ERROR: |SUMMARY: |runtime error|#[0-9]+ 0x.* in .*(mmstore|fuzz)' build/fuzz/"$h".log | sed 's/^/   /' || true
  for a in build/fuzz/artifacts/"$h"-*; do
    [ -e "$a" ] && echo "   reproducer: $a  (replay: build/fuzz/fuzz_$h $a; once fixed, add it to tests/fuzz/corpus/$h)"
  done
done
exit $status
