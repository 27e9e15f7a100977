"""The ``mmstore`` command line (python -m mmstore): stats, verify, compact, help, and the exit codes.

The demo has its own file, test_demo.py."""

import json
import subprocess
import sys

import mmstore


def _run(*args):
    return subprocess.run([sys.executable, "-m", "mmstore", *args], capture_output=True, text=True, timeout=120)


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


def test_help_texts_are_plain_text_without_rest_markup():
    for args in (("--help",), ("demo", "--help"), ("stats", "--help"), ("verify", "--help"), ("compact", "--help")):
        out = _run(*args)
        assert out.returncode == 0, out.stderr
        assert "``" not in out.stdout and ":class:" not in out.stdout, (args, out.stdout)
    top = _run("--help").stdout
    assert "python -m mmstore demo --keep" in top and "exit codes" in top


def test_verify_says_entry_for_one_and_entries_otherwise(tmp_path):
    for n, word in ((1, "1 entry)"), (0, "0 entries)"), (2, "2 entries)")):
        path = tmp_path / f"{n}.mms"
        with mmstore.Dict(path) as d:
            d.update((i, i) for i in range(n))
        out = _run("verify", str(path))
        assert out.returncode == 0 and out.stdout.strip().endswith(word), out.stdout
