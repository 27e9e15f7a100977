"""A second process opening the same store never corrupts it: writers are refused with the holder's pid."""

import os
import subprocess
import sys

import mmstore

OPEN_IN_CHILD = r"""
import sys, mmstore
kind, path, readonly = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
cls = mmstore.Dict if kind == "dict" else mmstore.List
try:
    h = cls(path, readonly=readonly)
except mmstore.StoreLockedError as e:
    print("LOCKED", e.pid, e)
    sys.exit(0)
print("OPENED", len(h))
h.close()
"""


def _child(kind, path, readonly=False):
    out = subprocess.run([sys.executable, "-c", OPEN_IN_CHILD, kind, str(path), "1" if readonly else "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_second_writer_process_is_refused_with_holder_pid(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d.update({i: i for i in range(1000)})
        line = _child("dict", path)
        assert line.startswith(f"LOCKED {os.getpid()} ")
        assert str(path) in line and f"pid {os.getpid()}" in line
        d[5000] = "still writable"  # the refusal changed nothing for the holder
        d.verify()
    assert _child("dict", path) == "OPENED 1001"


def test_reader_process_is_refused_while_a_writer_holds_the_list(tmp_path):
    path = tmp_path / "l.mms"
    with mmstore.List(path) as lst:
        lst.extend(range(10))
        assert _child("list", path, readonly=True).startswith(f"LOCKED {os.getpid()} ")
    assert _child("list", path, readonly=True) == "OPENED 10"


def test_readers_share_a_store_and_block_writers(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d["a"] = 1
    with mmstore.Dict(path, readonly=True) as r:
        assert _child("dict", path, readonly=True) == "OPENED 1"
        assert _child("dict", path).startswith("LOCKED")
        assert r["a"] == 1


def test_handle_inherited_through_fork_is_refused_in_the_child_and_parent_keeps_working(tmp_path):
    path = tmp_path / "d.mms"
    d = mmstore.Dict(path)
    d["a"] = 1
    pid = os.fork()
    if pid == 0:  # child: any use of the inherited handle raises, and closing it leaves the parent alone
        code = 0
        try:
            d["b"] = 2
            code = 1
        except mmstore.ForkedHandleError:
            pass
        d.close()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    d["c"] = 3
    d.verify()
    assert dict(d.items()) == {"a": 1, "c": 3}
    d.close()
