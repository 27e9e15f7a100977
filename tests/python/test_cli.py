"""The ``mmstore`` command line (python -m mmstore): demo, stats, verify, compact, and its exit codes."""

import json
import subprocess
import sys

import mmstore


def _run(*args):
    return subprocess.run([sys.executable, "-m", "mmstore", *args], capture_output=True, text=True, timeout=120)


def test_demo_reopens_the_dict_in_a_new_process_and_prints_stats():
    out = _run("demo", "--n", "2000")
    assert out.returncode == 0, out.stderr
    assert "opened 2,001 entries" in out.stdout
    assert "'k1000': {'i': 1000" in out.stdout and "'k1999'" in out.stdout
    assert "B/entry" in out.stdout and "reopened: len=2,000" in out.stdout


def test_demo_shows_the_other_three_faces_with_exact_results():
    out = _run("demo", "--n", "2000")
    assert out.returncode == 0, out.stderr
    assert "arr[1000] = (a=1000, b=500.0, s='k0001000')" in out.stdout  # typed records
    assert f"sum = {sum(range(2000)):,}" in out.stdout and "m['k0001999'].a = 1999" in out.stdout
    assert "n = 6,000, m = 6,000" in out.stdout and "nested workers done = 3" in out.stdout  # SharedDict
    assert "spills" in out.stdout and "zero-copy view: True" in out.stdout  # Pool
    assert not [s for s in mmstore.shared_dicts() if s.name in out.stdout]  # the demo's segment is gone


def test_stats_verify_and_compact_work_on_dicts_and_lists(tmp_path):
    d_path, l_path = tmp_path / "d.mms", tmp_path / "l.mms"
    with mmstore.Dict(d_path) as d:
        d.update((i, "x" * 50) for i in range(5000))
        for i in range(4500):
            del d[i]
    with mmstore.List(l_path) as lst:
        lst.extend(range(100))
    stats = json.loads(_run("stats", str(d_path)).stdout)
    assert stats["kind"] == "Dict" and stats["entries"] == 500
    assert json.loads(_run("stats", str(l_path)).stdout)["kind"] == "List"
    ok = _run("verify", str(d_path))
    assert ok.returncode == 0 and "OK (500 entries)" in ok.stdout
    compacted = json.loads(_run("compact", str(d_path)).stdout)
    assert compacted["file_bytes"] < stats["file_bytes"]
    with mmstore.Dict(d_path) as d:
        assert dict(d.items()) == {i: "x" * 50 for i in range(4500, 5000)}


def test_a_corrupt_file_exits_3_with_the_problem_on_stderr(tmp_path):
    path = tmp_path / "junk.mms"
    path.write_bytes(b"not a store" * 1000)
    out = _run("verify", str(path))
    assert out.returncode == 3
    assert str(path) in out.stderr and "not an mmstore file" in out.stderr
