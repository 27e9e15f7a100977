#!/usr/bin/env bash
# Runs the seeds' own public test suites against mmstore's compatibility layers and prints pass counts
# (issue 14; results and the remaining failures are in docs/compat.md).
#
# The peers' code never enters this repository. Their snapshots are cloned into a scratch folder outside it:
#
#   PEERS=/tmp/peers (default)   $PEERS/UltraDict      github.com/ronny-rentner/UltraDict
#                                $PEERS/sharedbuffers  github.com/jampp/sharedbuffers
#                                $PEERS/pyrsistence    github.com/huku-/pyrsistence
#                                $PEERS/MemPool.jl     github.com/JuliaData/MemPool.jl (Julia: read for its
#                                                      exported names only, see docs/compat.md)
#   In this project's sessions the snapshots come from the `fetch` tool (fetch github:jampp/sharedbuffers puts a
#   git directory in /work/.mirror/jampp+sharedbuffers/repo), then, for each of the four:
#         git clone /work/.mirror/jampp+sharedbuffers/repo $PEERS/sharedbuffers
#   and with network access:  git clone https://github.com/jampp/sharedbuffers $PEERS/sharedbuffers
#   (measured at: UltraDict 54f8ccc, sharedbuffers a65aa8f, pyrsistence a8e764b, MemPool.jl 18cf6c0).
#
# The shim: $PEERS/shim holds one module per old name that re-exports mmstore.compat.* and nothing else
# (UltraDict.py, sharedbuffers/, pyrsistence.py); this script writes it. Each suite is copied (tests and
# examples only, never the library itself) into $PEERS/run/<seed> and run there with PYTHONPATH=$PEERS/shim,
# so `import UltraDict` / `from sharedbuffers import mapped_struct` / `import pyrsistence` load the shim.
#
# Python: build/venv with mmstore installed (`build/venv/bin/python -m pip install --no-build-isolation .`);
# the suites' own test dependencies (six, python-dateutil, networkx, psutil) are pip-installed if missing.
#
#   scripts/compat-suites.sh [ultradict|sharedbuffers|pyrsistence|mempool ...]   (default: all)
#
# sharedbuffers runs all 662 tests, its 43 "huge" ones included (builds of 2 and 10 million entries, about 260
# million entries in all: the whole file took 582 s of CPU time, so about 10 minutes on an idle core, and 51
# minutes of wall time on a machine at a load average of 20 on 2 cores; SB_TIMEOUT, default 7200 s). SKIP_HUGE=1 (the suite's own switch) skips them, for a quick run.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS=${PEERS:-/tmp/peers}
PY=${PY:-$ROOT/build/venv/bin/python}
SHIM=$PEERS/shim
RUN=${RUN:-$PEERS-run}  # not under $PEERS: the examples put ../.. on sys.path
seeds=("$@")
((${#seeds[@]})) || seeds=(ultradict sharedbuffers pyrsistence mempool)

"$PY" -c 'import six, dateutil, networkx, psutil' 2>/dev/null ||
  "$PY" -m pip install -q --disable-pip-version-check six python-dateutil networkx psutil

mkdir -p "$SHIM/sharedbuffers" "$RUN"
cat > "$SHIM/UltraDict.py" <<'PY'
# shim: the old module name, re-exporting mmstore.compat.ultradict
from mmstore.compat.ultradict import *  # noqa: F401,F403
from mmstore.compat.ultradict import UltraDict, Exceptions  # noqa: F401
PY
cat > "$SHIM/pyrsistence.py" <<'PY'
# shim: the old module name, re-exporting mmstore.compat.pyrsistence
from mmstore.compat.pyrsistence import *  # noqa: F401,F403
PY
cat > "$SHIM/sharedbuffers/__init__.py" <<'PY'
# shim: the old package name, re-exporting mmstore.compat.sharedbuffers
import sys
from mmstore.compat.sharedbuffers import *  # noqa: F401,F403
from mmstore.compat.sharedbuffers import mapped_struct  # noqa: F401
try:
    from mmstore.compat.sharedbuffers import cmp  # noqa: F401
except ImportError:  # an mmstore before issue 14: sharedbuffers' Python-3 cmp(a, b), for the "before" count
    def cmp(a, b):
        return (a > b) - (a < b)
sys.modules[__name__ + ".mapped_struct"] = mapped_struct
PY

ultradict() {
  local src=$PEERS/UltraDict dst=$RUN/ultradict
  rm -rf "$dst"; mkdir -p "$dst"; cp -r "$src/tests" "$src/examples" "$dst/"
  echo "== UltraDict: tests/tests.py (unittest)"
  (cd "$dst" && PYTHONPATH=$SHIM timeout 900 "$PY" tests/tests.py -v 2>&1) | tee "$RUN/ultradict.log" |
    grep -E '^(test_|Ran |OK|FAILED)' | grep -vE '\.\.\. ok$'
  echo "== UltraDict: examples/*.py (each must exit 0)"
  local ok=0 n=0 f
  # mccoydj1*.py loop forever by design (two writers and a printer): they pass when they run for 20 s without
  # an error; each is stopped with its whole process group (its writer processes included).
  for f in "$dst"/examples/*.py; do
    n=$((n + 1))
    local b; b=$(basename "$f")
    local limit=300; case "$b" in mccoydj1*) limit=20 ;; esac
    (cd "$dst" && PYTHONPATH=$SHIM timeout -s KILL "$limit" "$PY" "examples/$b" 2>&1 | tail -c 20000 >"$RUN/ultradict-$b.log"
     exit "${PIPESTATUS[0]}") 2>/dev/null  # (the shell's "Killed" notice for the stopped endless examples)
    local rc=$?
    if [ "$rc" = 0 ] || { [ "$limit" = 20 ] && [ "$rc" = 137 ] && ! grep -q Traceback "$RUN/ultradict-$b.log"; }; then
      ok=$((ok + 1))
    else
      echo "   FAIL examples/$b (exit $rc; log: $RUN/ultradict-$b.log)"
    fi
  done
  echo "examples: $ok/$n passed"
}

sharedbuffers() {
  local src=$PEERS/sharedbuffers dst=$RUN/sharedbuffers
  rm -rf "$dst"; mkdir -p "$dst"; cp -r "$src/tests" "$dst/"
  echo "== sharedbuffers: tests/mapped_struct.py (pytest)"
  local TIMEFORMAT="   (%0R s wall, %0U s user + %0S s system CPU: the CPU time does not depend on the machine's load)"
  time (cd "$dst" && COLUMNS=400 PYTHONPATH=$SHIM timeout "${SB_TIMEOUT:-7200}" "$PY" -m pytest -q -p no:cacheprovider \
     -o addopts="" --tb=line -rf --durations=10 tests/mapped_struct.py > "$RUN/sharedbuffers.log" 2>&1)
  grep -E '^FAILED' "$RUN/sharedbuffers.log" | sed 's/^/   /' | head -${SB_SHOW:-40}
  tail -1 "$RUN/sharedbuffers.log"
}

pyrsistence() {
  local src=$PEERS/pyrsistence dst=$RUN/pyrsistence
  rm -rf "$dst"; mkdir -p "$dst"; cp -r "$src/tests" "$src/examples" "$dst/"
  echo "== pyrsistence: tests/*.py and examples/*.py (each must exit 0)"
  local ok=0 n=0 f
  for f in "$dst"/tests/em_*.py "$dst"/examples/*.py; do
    n=$((n + 1))
    local rel=${f#$dst/}
    if (cd "$(dirname "$f")" && PYTHONPATH=$SHIM timeout 600 "$PY" "$(basename "$f")" >"$RUN/pyrsistence-$(basename "$f").log" 2>&1); then
      ok=$((ok + 1))
    else
      echo "   FAIL $rel: $(tail -1 "$RUN/pyrsistence-$(basename "$f").log")"
    fi
  done
  echo "pyrsistence: $ok/$n passed"
}

mempool() {
  # MemPool.jl is Julia: its suite cannot run against Python. What is checked is that every name it exports
  # has an equivalent in mmstore.compat.mempool (tests/python/test_compat_mempool.py tests their behaviour).
  local src=$PEERS/MemPool.jl
  echo "== MemPool.jl: exported names (src/MemPool.jl 'export' lines) present in mmstore.compat.mempool"
  local names
  names=$(grep -hE '^export ' "$src"/src/*.jl | sed 's/^export //; s/,/ /g')
  "$PY" - $names <<'PY'
import sys
from mmstore.compat import mempool
names = sys.argv[1:]
missing = [n for n in names if not hasattr(mempool, n)]
for n in missing:
    print("   MISSING", n)
print(f"mempool: {len(names) - len(missing)}/{len(names)} exported names present")
PY
}

for s in "${seeds[@]}"; do "$s"; done
