#!/usr/bin/env bash
# Builds the documentation site (Sphinx, docs/) into build/docs/html with warnings as errors, then checks
# every internal link and image of the built pages (scripts/check_links.py). With --browser, also renders
# the start page in headless Chromium (Debian's `chromium`) and fails if the page or a chart does not load.
# Needs the package installed in build/venv (scripts/test.sh does that); installs the docs tools from PyPI.
#   scripts/docs.sh              build + link check
#   scripts/docs.sh --browser    ... + headless Chromium check of the start page
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${MMSTORE_DOCS_PYTHON:-build/venv/bin/python}  # scripts/test.sh passes a matrix venv that has mmstore
[ -x "$PY" ] || scripts/bootstrap.sh
$PY -m pip install -q --disable-pip-version-check "sphinx>=7" "myst-parser>=2" matplotlib
if ! $PY -c "import mmstore" 2>/dev/null; then
  $PY -m pip install -q --disable-pip-version-check --no-build-isolation .
fi
rm -rf build/docs
# -W: warnings are errors; --keep-going: report all of them; -n: nitpicky about missing references
$PY -m sphinx -W --keep-going -q -b html docs build/docs/html
$PY scripts/check_links.py build/docs/html
if [ "${1:-}" = "--browser" ]; then
  $PY scripts/check_links.py --browser build/docs/html/index.html
fi
echo "docs: build/docs/html/index.html"
