"""``python -m mmstore demo``: every step prints evidence that holds, with and without numpy, with --keep,
with and without the C++ example tool (tools/mmstore_xlang.cpp)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mmstore

ROOT = Path(__file__).resolve().parents[2]

# Runs the demo with numpy made unimportable, as after a bare `pip install mmstore` without the extra.
_NO_NUMPY = "import sys; sys.modules['numpy'] = None; from mmstore.cli import main; sys.exit(main(sys.argv[1:]))"


def _env(xlang: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MMSTORE_XLANG"}
    if xlang:
        env["MMSTORE_XLANG"] = xlang
    return env


def _demo(*args: str, cwd, no_numpy: bool = False, env: dict | None = None):
    cmd = [sys.executable, "-c", _NO_NUMPY] if no_numpy else [sys.executable, "-m", "mmstore"]
    return subprocess.run([*cmd, "demo", "--n", "2000", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=env if env is not None else _env())


def _xlang_tool() -> str | None:
    env = os.environ.get("MMSTORE_XLANG")
    if env and os.path.isfile(env):
        return env
    cands = sorted(ROOT.glob("build*/mmstore_xlang")) + sorted(ROOT.glob("build/*/mmstore_xlang"))
    return str(cands[0]) if cands else None


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """One demo run with the defaults (numpy present, no C++ tool), shared by the tests that read it."""
    out = _demo(cwd=tmp_path_factory.mktemp("cwd"))
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_demo_says_what_it_does_and_how_long_before_the_first_step(plain):
    first = plain.splitlines()[0]
    assert first.startswith("mmstore demo: the four faces on 2,000 entries, about") and "--keep DIR" in first


def test_demo_reopens_the_dict_in_a_new_process_with_cold_and_warm_lookup_times(plain):
    assert "opened 2,000 entries in" in plain
    assert re.search(r"first lookup \d+ us \(cold: .*\), then [\d.]+ us per lookup warm", plain)
    assert "'k1000': {'i': 1000, 'sq': 1000000, 'tag': 'v1000'}" in plain and "'k1999'" in plain


def test_demo_formats_list_and_dict_stats_alike(plain):
    stats = re.findall(r"stats: (.*)", plain)
    assert len(stats) == 2
    shape = r"^2,000 entries, file [\d.]+ MiB, allocated [\d.]+ MiB \(\d+ B/entry\), capacity [\d,]+ before the next growth$"
    assert all(re.match(shape, s) for s in stats), stats
    assert "reopened read-only: len=2,000 head=['a', 'b', 'c', 3, 4] tail=[1998, 1999]" in plain


def test_demo_kills_a_writer_with_sigkill_and_reopens_the_store_intact(plain):
    m = re.search(r"killed \(exit -9\) after reporting ([\d,]+) writes", plain)
    assert m, plain
    m2 = re.search(r"verify\(\) OK, keys 0\.\.([\d,]+) all present with their values: True", plain)
    assert m2 and int(m2.group(1).replace(",", "")) + 1 >= int(m.group(1).replace(",", ""))


def test_demo_shows_the_other_faces_with_exact_results(plain):
    assert "arr[1000] = (a=1000, b=500.0, s='k0001000')" in plain  # typed records
    assert f"sum = {sum(range(2000)):,}" in plain and "m['k0001999'].a = 1999" in plain
    assert "n = 6,000, m = 6,000" in plain and "nested workers done = 3" in plain  # SharedDict
    # Pool: the data read back is visibly not all zeros, equals what was put, and is mapped from the file
    assert "get(refs[1]) -> [1000, 1001, 1002, ..., 263143], equal to what was put: True" in plain
    assert "zero-copy view of the spill file: True" in plain
    assert not [s for s in mmstore.shared_dicts() if s.name in plain]  # the demo's segment is gone


def test_demo_ends_with_a_summary_of_every_step(plain):
    summary = plain[plain.index("\nSummary ("):]
    for face in ("Dict:", "List:", "kill -9:", "records:", "SharedDict:", "Pool:", "C++:"):
        assert f"  - {face}" in summary, face


def test_demo_without_the_cpp_tool_says_how_to_build_it(plain):
    assert "skipped: the C++ example tool mmstore_xlang is not built (build it with scripts/test.sh" in plain


def test_demo_runs_without_numpy_and_says_what_it_substitutes(tmp_path):
    out = _demo(cwd=tmp_path, no_numpy=True)
    assert out.returncode == 0, out.stderr
    assert "column('a') (a zero-copy numpy view) skipped: numpy is not installed" in out.stdout
    assert "bytes stand in for arrays" in out.stdout
    assert "get(refs[1]) -> b'\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\x08'..., 2,097,152 bytes, equal to what was " \
           "put: True" in out.stdout
    assert "\nSummary (" in out.stdout


def test_demo_keep_leaves_files_the_cli_can_open_and_refuses_to_overwrite_them(tmp_path):
    keep = tmp_path / "kept"
    out = _demo("--keep", str(keep), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"Files kept in {keep}" in out.stdout
    for name, entries in (("demo.mms", "2,000"), ("demo.mml", "2,000")):
        ok = subprocess.run([sys.executable, "-m", "mmstore", "verify", str(keep / name)], capture_output=True,
                            text=True, timeout=60)
        assert ok.returncode == 0 and f"OK ({entries} entries)" in ok.stdout, ok.stderr
    with mmstore.Dict(keep / "crash.mms", readonly=True) as d:
        assert all(d[i] == f"value {i}" * (1 + i % 7) for i in range(len(d)))
    again = _demo("--keep", str(keep), cwd=tmp_path)
    assert again.returncode == 2
    assert "already holds demo.mms" in again.stderr and str(keep) in again.stderr


def test_demo_rejects_an_xlang_path_that_is_not_an_executable(tmp_path):
    out = _demo("--xlang", str(tmp_path / "missing"), cwd=tmp_path)
    assert out.returncode == 2 and f"--xlang {tmp_path / 'missing'}: no executable file there" in out.stderr


def test_demo_has_the_cpp_tool_read_what_python_wrote(tmp_path):
    tool = _xlang_tool()
    if tool is None:
        pytest.skip("mmstore_xlang not built (scripts/test.sh builds it and sets MMSTORE_XLANG)")
    out = _demo(cwd=tmp_path, env=_env(tool))
    assert out.returncode == 0, out.stderr
    assert f"{os.path.abspath(tool)} dump-dict: 7 entries (" in out.stdout
    assert "byte-identical to Python's encoding: True" in out.stdout
    assert "  - C++: mmstore_xlang read all 7 entries Python wrote, byte for byte" in out.stdout
