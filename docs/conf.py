"""Sphinx configuration of the mmstore documentation site (built by scripts/docs.sh with -W into build/docs)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))

project = "mmstore"
author = "the mmstore authors"
copyright = "2026, the mmstore authors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "myst_parser",
    "bench_charts",  # draws bench/results/*.json with matplotlib at build time
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated/bench_charts.md"]  # included by benchmarks.md, not a page
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
suppress_warnings = ["myst.header"]  # format.md and design.md start at level-2 sections under one title

autodoc_member_order = "bysource"
autodoc_typehints = "none"  # signatures come from the docstrings and stubs; nanobind types resolve poorly
autodoc_default_options = {"members": True, "undoc-members": False}

html_theme = "alabaster"
html_title = "mmstore"
html_static_path = []
