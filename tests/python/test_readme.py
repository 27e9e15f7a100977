"""Every code block of README.md is a complete program that runs as written.

Each ```python block runs in a fresh interpreter in an empty temporary directory (skipped, with the reason,
when it imports an optional package that is absent, such as dask) and must leave no shared-memory segment
behind. The ```cpp block is the source of tests/consumer/readme_example.cpp, which scripts/test.sh compiles
through find_package(mmstore); here it must be identical to that file, and it runs when that build exists.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mmstore

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CONSUMER_SOURCE = ROOT / "tests" / "consumer" / "readme_example.cpp"

_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)


def _blocks(lang: str) -> list[tuple[int, str]]:
    """(line number, source) of every ```lang block of the README."""
    if not README.is_file():
        return []
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(2)) for m in _BLOCK.finditer(text) if m.group(1) == lang]


def _missing_imports(source: str) -> list[str]:
    """Top-level modules the block imports that are not installed."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


def _need_readme():
    if not README.is_file():
        pytest.skip(f"README.md not found at {README} (tests run from a source tree only)")


PYTHON_BLOCKS = _blocks("python")


def test_readme_has_python_blocks():
    _need_readme()
    assert len(PYTHON_BLOCKS) >= 5, "the README's tour lost its Python examples"


@pytest.mark.parametrize("line,source", PYTHON_BLOCKS, ids=[f"README.md:{ln}" for ln, _ in PYTHON_BLOCKS])
def test_python_block_runs_as_written_in_a_fresh_process(line, source, tmp_path):
    missing = _missing_imports(source)
    if missing:
        pytest.skip(f"README.md:{line} needs {', '.join(missing)}, not installed")
    script = tmp_path / "block.py"
    script.write_text(source, encoding="utf-8")
    work = tmp_path / "cwd"
    work.mkdir()
    proc = subprocess.Popen([sys.executable, str(script)], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"README.md:{line} failed:\n{stderr}"
    assert stdout.strip(), f"README.md:{line} printed nothing: an example should show its results"
    # Only the block's own segments: other test runs on this machine share /dev/shm.
    leaked = {s.name for s in mmstore.shared_dicts() if s.creator_pid == proc.pid}
    assert not leaked, f"README.md:{line} left shared-memory segments behind: {leaked}"
    big = [p for p in work.rglob("*") if p.is_file() and p.stat().st_size > 64 << 20]
    assert not big, f"README.md:{line} left big files: {big}"


def test_cpp_block_is_the_consumer_source_the_suite_compiles():
    _need_readme()
    blocks = _blocks("cpp")
    assert len(blocks) == 1, "the README should have exactly one ```cpp block, the C++ quickstart"
    assert blocks[0][1] == CONSUMER_SOURCE.read_text(encoding="utf-8"), (
        f"README.md:{blocks[0][0]} and {CONSUMER_SOURCE} differ: edit both (scripts/test.sh compiles the file)")


def test_cpp_block_runs_when_the_consumer_build_exists(tmp_path):
    _need_readme()
    exe = ROOT / "build" / "consumer" / "readme_example"
    if not os.access(exe, os.X_OK):
        pytest.skip(f"{exe} not built (scripts/test.sh builds it through find_package before running pytest)")
    out = subprocess.run([str(exe)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["key -> value", "alice -> 31, 2 entries", "2 samples, sum 4.0"]
    with mmstore.Dict(tmp_path / "users.mms", readonly=True) as d:  # what C++ wrote reads in Python
        assert dict(d.items()) == {b"key": b"value", "alice": 31}
