"""The command line on every store kind: info, stats, verify, compact, dump/load, shm ls|rm|gc, --json, --help,
and one clear line with a non-zero exit on a bad target (python/mmstore/_cli_store.py)."""

import datetime as dt
import decimal
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import mmstore


def _run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "mmstore", *map(str, args)], capture_output=True, text=True,
                          timeout=120, **kw)


@mmstore.struct
class Item:
    a: int
    b: float
    s: str


@pytest.fixture
def stores(tmp_path):
    """One file of each kind."""
    paths = {k: tmp_path / f"{k}.mms" for k in ("Dict", "List", "RecordArray", "Mapping", "PoolFile")}
    with mmstore.Dict(paths["Dict"]) as d:
        d.update((f"k{i}", i) for i in range(50))
    with mmstore.List(paths["List"]) as lst:
        lst.extend(range(30))
    mmstore.RecordArray.build([Item(i, i / 2, f"s{i}") for i in range(40)], paths["RecordArray"]).close()
    mmstore.Mapping.build(((f"k{i}", Item(i, 0.0, "x")) for i in range(20)), paths["Mapping"], key=str,
                          schema=Item.__schema__, progress=False).close()
    with mmstore.Pool() as pool:
        pool.save(pool.put(np.arange(10.0)), paths["PoolFile"])
    return paths


@pytest.fixture
def segment():
    name = f"clitest_{os.getpid()}"
    d = mmstore.SharedDict(name, create=True)
    d.update_many({"x": 1, "y": "two"})
    yield name, d
    d.close()
    try:
        mmstore.SharedDict.unlink_by_name(name)
    except mmstore.Error:
        pass


@pytest.mark.parametrize("kind,entries", [("Dict", 50), ("List", 30), ("RecordArray", 40), ("Mapping", 20)])
def test_info_stats_verify_report_every_file_kind(stores, kind, entries):
    info = _run("info", stores[kind], "--json")
    assert info.returncode == 0, info.stderr
    got = json.loads(info.stdout)
    # stores carry the store format; record images keep format 2, unchanged by store format 3 (format.md §1.1)
    want_version = mmstore.FORMAT_VERSION if kind in ("Dict", "List") else 2
    assert got["kind"] == kind and got["entries"] == entries and got["format_version"] == want_version
    assert got["file_bytes"] == os.path.getsize(stores[kind])
    if kind in ("RecordArray", "Mapping"):
        assert got["schema"] == {"a": "int64", "b": "float64", "s": "str"}
    else:
        assert got["state"] == "clean"
    stats = json.loads(_run("stats", stores[kind]).stdout)
    assert stats["kind"] == kind and stats["entries"] == entries
    ok = _run("verify", stores[kind])
    assert ok.returncode == 0 and f"OK ({entries} entries)" in ok.stdout
    assert json.loads(_run("verify", stores[kind], "--json").stdout)["ok"] is True


def test_info_and_verify_of_a_pool_save_file(stores):
    got = json.loads(_run("info", stores["PoolFile"], "--json").stdout)
    assert got["kind"] == "PoolFile" and got["object_type"] == "ndarray" and got["shape"] == [10]
    assert _run("verify", stores["PoolFile"]).returncode == 0


def test_info_verify_and_compact_a_shared_dict_by_name(segment):
    name, _ = segment
    got = json.loads(_run("info", f"shm:{name}", "--json").stdout)
    assert got["kind"] == "SharedDict" and got["entries"] == 2 and got["creator_pid"] == os.getpid()
    assert _run("verify", f"shm:{name}").returncode == 0
    busy = _run("compact", f"shm:{name}")  # compact needs the store to itself
    assert busy.returncode == 2 and busy.stderr.count("\n") == 1 and "to itself" in busy.stderr


def test_compact_an_unused_shared_dict_by_name():
    name = f"clitest_compact_{os.getpid()}"
    subprocess.run([sys.executable, "-c", _LEAVE_SEGMENT, name], check=True)
    try:
        out = _run("compact", f"shm:{name}")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["compacted"] is True
        with mmstore.SharedDict(name, create=False) as d:
            assert d.copy() == {"x": 1}
    finally:
        mmstore.SharedDict.unlink_by_name(name)


def test_compact_of_a_built_image_says_there_is_nothing_to_do(stores):
    out = _run("compact", stores["RecordArray"], "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["compacted"] is False


@pytest.mark.parametrize("cmd", ["info", "stats", "verify", "compact", "dump"])
def test_a_bad_file_exits_non_zero_with_one_line(tmp_path, cmd):
    junk = tmp_path / "junk.mms"
    junk.write_bytes(b"garbage!" * 100)
    out = _run(cmd, junk)
    assert out.returncode == 3 and out.stderr.count("\n") == 1
    assert str(junk) in out.stderr and "not an mmstore file" in out.stderr
    missing = _run(cmd, tmp_path / "nope.mms")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no such file" in missing.stderr
    assert _run(cmd, "shm:no_such_segment_xyz").returncode == 2


def test_a_truncated_record_file_is_reported_not_crashed(stores, tmp_path):
    cut = tmp_path / "cut.mma"
    cut.write_bytes(stores["RecordArray"].read_bytes()[:300])
    out = _run("verify", cut)
    assert out.returncode == 3 and out.stderr.startswith("mmstore: ") and out.stderr.count("\n") == 1


@pytest.mark.parametrize("cmd", ["info", "stats", "verify", "compact", "dump", "load", "demo"])
def test_every_command_has_its_own_help(cmd):
    out = _run(cmd, "--help")
    assert out.returncode == 0 and f"usage: mmstore {cmd}" in out.stdout
    for sub in ("ls", "rm", "gc"):
        out = _run("shm", sub, "--help")
        assert out.returncode == 0 and f"usage: mmstore shm {sub}" in out.stdout


ODD_VALUES = [None, True, False, 0, -(2**70), 1.5, float("inf"), float("nan"), "é", b"\x00\xff", (1, (2,)), [1, [2]],
              {"a": 1, 2: "b"}, {1, 2}, frozenset({"x"}), dt.date(2024, 2, 29), dt.datetime(2024, 1, 2, 3, 4, 5, 6),
              dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc), decimal.Decimal("1.10"), np.arange(6).reshape(2, 3)]


def _same(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    return type(a) is type(b) and a == b


def test_dump_load_round_trip_preserves_every_codec_type(tmp_path):
    src, dump, dst = tmp_path / "d.mms", tmp_path / "d.jsonl", tmp_path / "d2.mms"
    with mmstore.Dict(src) as d:
        for i, v in enumerate(ODD_VALUES):
            d[(i, "key")] = v
    out = _run("dump", src, "-o", dump)
    assert out.returncode == 0, out.stderr
    assert json.loads(dump.read_text().splitlines()[0])["kind"] == "Dict"
    out = _run("load", dump, dst)
    assert out.returncode == 0, out.stderr
    with mmstore.Dict(dst, readonly=True) as d:
        assert len(d) == len(ODD_VALUES)
        for i, v in enumerate(ODD_VALUES):
            assert _same(v, d[(i, "key")]), (v, d[(i, "key")])


def test_dump_load_round_trips_lists_records_mappings_and_shared_dicts(stores, tmp_path, segment):
    for kind in ("List", "RecordArray", "Mapping"):
        dump, dst = tmp_path / f"{kind}.jsonl", tmp_path / f"{kind}.copy"
        assert _run("dump", stores[kind], "-o", dump).returncode == 0
        out = _run("load", dump, dst)
        assert out.returncode == 0, out.stderr
        assert _run("dump", dst).stdout == dump.read_text()
    name, _ = segment
    dump = tmp_path / "shm.jsonl"
    assert _run("dump", f"shm:{name}", "-o", dump).returncode == 0
    target = f"{name}_copy"
    try:
        assert _run("load", dump, f"shm:{target}").returncode == 0
        with mmstore.SharedDict(target, create=False) as d:
            assert d.copy() == {"x": 1, "y": "two"}
    finally:
        mmstore.SharedDict.unlink_by_name(target)


def test_load_refuses_to_overwrite_and_reports_a_bad_dump(stores, tmp_path):
    out = _run("load", stores["Dict"], stores["List"])
    assert out.returncode == 2 and "already exists" in out.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text("hello\n")
    out = _run("load", bad, tmp_path / "new.mms")
    assert out.returncode == 3 and "not JSON" in out.stderr


def test_dump_format_arrow_round_trips_records(stores, tmp_path):
    pytest.importorskip("pyarrow")
    for kind in ("RecordArray", "Mapping"):
        dump, dst = tmp_path / f"{kind}.arrow", tmp_path / f"{kind}.copy"
        out = _run("dump", stores[kind], "--format", "arrow", "-o", dump)
        assert out.returncode == 0, out.stderr
        assert dump.read_bytes()[:6] == b"ARROW1"
        out = _run("load", dump, dst)
        assert out.returncode == 0, out.stderr
        assert _run("dump", dst).stdout == _run("dump", stores[kind]).stdout
    out = _run("dump", stores["Dict"], "--format", "arrow")
    assert out.returncode == 2 and "RecordArray and Mapping" in out.stderr


_LEAVE_SEGMENT = r"""
import os, sys, mmstore
d = mmstore.SharedDict(sys.argv[1], create=True, auto_unlink=False)
d["x"] = 1
os._exit(0)   # no close: the segment stays, unused, as after a crash
"""


def test_shm_ls_rm_and_gc(segment):
    name, _ = segment
    orphan = f"{name}_orphan"
    subprocess.run([sys.executable, "-c", _LEAVE_SEGMENT, orphan], check=True)
    try:
        rows = {r["name"]: r for r in json.loads(_run("shm", "ls", "--json").stdout)}
        assert rows[name]["in_use"] is True and rows[name]["creator_pid"] == os.getpid()
        assert rows[orphan]["in_use"] is False and rows[orphan]["size"] > 0
        assert name in _run("shm", "ls").stdout
        busy = _run("shm", "rm", name)
        assert busy.returncode == 2 and "in use" in busy.stderr
        gc = json.loads(_run("shm", "gc", "--json").stdout)
        assert orphan in gc["removed"] and name not in gc["removed"]
        assert orphan not in {s.name for s in mmstore.shared_dicts()}
        assert _run("shm", "rm", orphan).returncode == 2  # gone already
    finally:
        try:
            mmstore.SharedDict.unlink_by_name(orphan)
        except mmstore.Error:
            pass


def test_shm_rm_removes_an_unused_segment(tmp_path):
    name = f"clitest_rm_{os.getpid()}"
    subprocess.run([sys.executable, "-c", _LEAVE_SEGMENT, name], check=True)
    out = _run("shm", "rm", f"shm:{name}", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"removed": [name]}
    assert name not in {s.name for s in mmstore.shared_dicts()}
