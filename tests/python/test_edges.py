"""Edges of the public API found by an adversarial probe (issue 15): NUL bytes in paths, symlinks and
FIFOs, leftovers of failed operations, wrong-shaped records, foreign empty files, argument and error
details."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import traceback
from collections import OrderedDict

import pytest

import mmstore


@mmstore.struct
class Item:
    a: int
    b: float


def _listing(d):
    return sorted(p.name for p in d.iterdir())


# -- 3. a NUL byte in any path is refused before the filesystem is touched ----------------------------------

def _nul_cases(tmp_path):
    bad = str(tmp_path / "a\0.secret")
    pool = mmstore.Pool(max_memory=1 << 20, spill_dir=tmp_path / "spill")
    ref = pool.put(b"x" * 100)
    good = tmp_path / "m.mms"
    m = mmstore.Mapping.build([("k", 1)], good)
    yield "Dict", lambda: mmstore.Dict(bad)
    yield "Dict create", lambda: mmstore.Dict(bad, create=True)
    yield "Dict readonly", lambda: mmstore.Dict(bad, readonly=True)
    yield "List", lambda: mmstore.List(bad)
    yield "Pool.save", lambda: pool.save(ref, bad)
    yield "load", lambda: mmstore.load(bad)
    yield "RecordArray", lambda: mmstore.RecordArray(bad)
    yield "RecordArray.build", lambda: mmstore.RecordArray.build([Item(1, 2.0)], bad)
    yield "Mapping", lambda: mmstore.Mapping(bad)
    yield "Mapping.build", lambda: mmstore.Mapping.build([("k", 1)], bad)
    yield "merge", lambda: mmstore.merge(m, m, bad)
    yield "Pool spill_dir", lambda: mmstore.Pool(spill_dir=str(tmp_path / "p\0q"))
    m.close()
    pool.close()


def test_nul_byte_in_any_path_raises_value_error_and_touches_nothing(tmp_path):
    victim = tmp_path / "a"  # what the kernel would open if the path were cut at the NUL
    with mmstore.Dict(victim) as d:
        d["secret"] = 1
    before = victim.read_bytes()
    cases = _nul_cases(tmp_path)
    for name, call in cases:
        listing = _listing(tmp_path)
        with pytest.raises(ValueError, match="(?i)nul") as info:
            call()
        assert not isinstance(info.value, mmstore.CorruptFileError), name
        assert _listing(tmp_path) == listing, f"{name} left files behind"
        assert victim.read_bytes() == before, name


def test_nul_byte_in_shared_dict_name_is_refused():
    with pytest.raises(ValueError):
        mmstore.SharedDict("a\0b")


# -- 4. compact() through a symbolic link rewrites the target and keeps the link ---------------------------

@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
@pytest.mark.parametrize("cls", [mmstore.Dict, mmstore.List], ids=["Dict", "List"])
def test_compact_through_symlink_rewrites_the_target_and_keeps_the_link(tmp_path, cls, relative):
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "store.mms"
    link = tmp_path / "link.mms"
    link.symlink_to("data/store.mms" if relative else target)
    with cls(link) as s:
        if cls is mmstore.Dict:
            s.update((i, "v" * 200) for i in range(5000))
            for i in range(100, 5000):
                del s[i]
        else:
            s.extend("v" * 200 for _ in range(5000))
            del s[100:]
        big = target.stat().st_size
        s.compact()
        assert len(s) == 100
        s.append("after") if cls is mmstore.List else s.__setitem__("after", 1)
    assert link.is_symlink()
    assert os.readlink(link) == ("data/store.mms" if relative else str(target))
    assert target.stat().st_size < big
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["store.mms"]
    with cls(target, readonly=True) as s:  # the target holds the compacted data and the later write
        assert len(s) == 101


# -- 5. FIFOs and other non-regular files are refused at once ----------------------------------------------

_OPEN_FIFO = r"""
import sys, mmstore
path = sys.argv[1]
opens = {
    "Dict readonly": lambda: mmstore.Dict(path, readonly=True),
    "Dict": lambda: mmstore.Dict(path),
    "List readonly": lambda: mmstore.List(path, readonly=True),
    "List": lambda: mmstore.List(path),
    "RecordArray": lambda: mmstore.RecordArray(path),
    "Mapping": lambda: mmstore.Mapping(path),
    "load": lambda: mmstore.load(path),
}
for name, f in opens.items():
    try:
        f()
    except mmstore.ForeignFileError as e:
        assert "FIFO" in str(e), (name, str(e))
        print(name, "refused")
    else:
        print(name, "OPENED")
"""


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # A subprocess, so that a regression (open(2) blocking forever) fails the test instead of hanging it.
    out = subprocess.run([sys.executable, "-c", _OPEN_FIFO, str(fifo)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 7 and all(line.endswith("refused") for line in lines), out.stdout


@pytest.mark.parametrize("readonly", [False, True], ids=["write", "readonly"])
def test_directory_is_refused_as_foreign(tmp_path, readonly):
    with pytest.raises(mmstore.ForeignFileError, match="directory"):
        mmstore.Dict(tmp_path, readonly=readonly)


# -- 6. leftovers ----------------------------------------------------------------------------------------------

# Disk full, simulated without a mount: RLIMIT_FSIZE makes growing a file past the limit fail with EFBIG
# (SIGXFSZ ignored), which mmstore reports as DiskFullError, as it does ENOSPC.
_LIMITED = r"""
import resource, signal, sys, mmstore
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
path = sys.argv[1]
try:
    if sys.argv[3] == "compact":
        with mmstore.Dict(path) as d:
            d.compact()
    else:
        mmstore.Dict(path)
except mmstore.DiskFullError as e:
    print("DiskFullError", e)
else:
    print("no error")
"""


def _run_limited(path, limit, what):
    out = subprocess.run([sys.executable, "-c", _LIMITED, str(path), str(limit), what], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_compact_that_fails_for_lack_of_space_removes_its_copy(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d.update((i, "v" * 100) for i in range(40_000))
        for i in range(0, 40_000, 2):
            del d[i]
    assert path.stat().st_size > 4 << 20
    before = _listing(tmp_path)
    assert "DiskFullError" in _run_limited(path, 1 << 20, "compact")
    assert _listing(tmp_path) == before  # no d.mms.compact.<pid>
    with mmstore.Dict(path) as d:  # the original is intact
        assert len(d) == 20_000 and d[1] == "v" * 100
        d.verify()


def test_failed_creation_leaves_no_file(tmp_path):
    path = tmp_path / "new.mms"
    assert "DiskFullError" in _run_limited(path, 16 << 10, "create")
    assert _listing(tmp_path) == []
    with mmstore.Dict(path) as d:  # and the path is free for a later creation
        d["k"] = 1


_KILLED_EXTEND = r"""
import os, signal, sys, mmstore
lst = mmstore.List(sys.argv[1])
def items():
    for i in range(int(sys.argv[2])):
        yield i
    os.kill(os.getpid(), signal.SIGKILL)  # killed inside extend, after every element was produced
lst.extend(items())
"""


def test_killed_extend_leaves_a_prefix(tmp_path):
    path = tmp_path / "l.mms"
    with mmstore.List(path) as lst:
        lst.append("before")
    n = 10_000
    out = subprocess.run([sys.executable, "-c", _KILLED_EXTEND, str(path), str(n)], capture_output=True, text=True)
    assert out.returncode == -signal.SIGKILL, out.stderr
    with mmstore.List(path) as lst:
        lst.verify()
        got = list(lst)
    # extend is not atomic (documented): what a killed extend leaves is a prefix of its elements.
    assert got[0] == "before"
    assert got[1:] == list(range(len(got) - 1))
    assert len(got) - 1 <= n


def test_extend_is_documented_as_not_atomic():
    assert "not atomic" in " ".join(mmstore.List.extend.__doc__.split())
    assert "not atomic" in " ".join(mmstore.List.__doc__.split())


# -- 8. wrong-shaped records raise TypeError naming the item --------------------------------------------------

@pytest.mark.parametrize(
    "bad, words",
    [(5, ["int"]), ("hello", ["str"]), ({"zz": 1}, ["zz"]), ({"a": 1, "zz": 1}, ["zz"]), ((1,), ["2 fields"]),
     ((1, 2.0, 3), ["2 fields"]), (None, ["NoneType"]), (b"ab", ["bytes"])],
    ids=["int", "str", "unknown-key", "extra-key", "short-tuple", "long-tuple", "None", "bytes"])
def test_wrong_shaped_item_raises_type_error_naming_its_index(tmp_path, bad, words):
    path = tmp_path / "a.mms"
    items = [Item(1, 1.0), {"a": 2, "b": 2.0}, bad]
    with pytest.raises(TypeError, match="item 2") as info:
        mmstore.RecordArray.build(items, path, schema=Item.__schema__)
    for w in words:
        assert w in str(info.value)
    with pytest.raises(TypeError, match="item 2"):
        mmstore.Mapping.build([(i, x) for i, x in enumerate(items)], tmp_path / "m.mms", schema=Item.__schema__)
    with pytest.raises(TypeError):
        Item.__schema__.pack(bad)
    assert _listing(tmp_path) == []


def test_item_index_counts_from_the_start_of_the_input(tmp_path):
    # build() takes the first item apart to find the schema: the index still counts it.
    with pytest.raises(TypeError, match="item 3"):
        mmstore.RecordArray.build([Item(1, 1.0), Item(2, 2.0), Item(3, 3.0), 7], tmp_path / "a.mms")


def test_records_from_sequences_mappings_and_instances(tmp_path):
    from collections import namedtuple

    Pair = namedtuple("Pair", "b a")  # by name, not by position
    items = [Item(1, 1.5), (2, 2.5), [3, 3.5], {"a": 4, "b": 4.5}, OrderedDict(a=5, b=5.5), Pair(b=6.5, a=6),
             {"a": 7}]
    with mmstore.RecordArray.build(items, tmp_path / "a.mms", schema=Item.__schema__) as arr:
        got = [(r.a, r.b) for r in arr]
    assert got == [(1, 1.5), (2, 2.5), (3, 3.5), (4, 4.5), (5, 5.5), (6, 6.5), (7, None)]


# -- 9. an existing empty (or foreign) file is never turned into a store ---------------------------------------

@pytest.mark.parametrize("cls", [mmstore.Dict, mmstore.List], ids=["Dict", "List"])
@pytest.mark.parametrize("content", [b"", bytes(64 << 10)], ids=["empty", "zeros"])
def test_existing_empty_file_is_foreign_and_left_alone(tmp_path, cls, content):
    path = tmp_path / "user-file"
    path.write_bytes(content)
    with pytest.raises(mmstore.ForeignFileError) as info:
        cls(path)
    assert str(path) in str(info.value)
    with pytest.raises(mmstore.StoreExistsError):
        cls(path, create=True)
    assert path.read_bytes() == content


_CREATE_RACE = r"""
import os, sys, mmstore
with mmstore.Dict(sys.argv[1]) as d:
    d[os.getpid()] = 1
"""


def test_processes_racing_to_create_a_store_share_one(tmp_path):
    path = tmp_path / "d.mms"
    procs = [subprocess.Popen([sys.executable, "-c", _CREATE_RACE, str(path)]) for _ in range(6)]
    assert all(p.wait() == 0 for p in procs)
    with mmstore.Dict(path) as d:
        assert len(d) == 6
        d.verify()
    assert _listing(tmp_path) == ["d.mms"]


# -- 10. argument types, error messages, exception modules -----------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda p: mmstore.Dict(p, mode="r"),
    lambda p: mmstore.List(p, mode="r"),
    lambda p: mmstore.SharedDict(None, mode="r"),
], ids=["Dict", "List", "SharedDict"])
def test_mode_of_the_wrong_type_raises_type_error_naming_it(tmp_path, make):
    with pytest.raises(TypeError) as info:
        make(tmp_path / "x")
    msg = str(info.value)
    assert "mode" in msg and "str" in msg
    assert "_segment" not in msg and "incompatible function arguments" not in msg
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("kwargs, word", [
    ({"create": "yes"}, "create"), ({"durable": 1}, "durable"), ({"readonly": "no"}, "readonly"),
    ({"allow_pickle": None}, "allow_pickle"), ({"mode": 1.5}, "mode"), ({"mode": True}, "mode"),
])
@pytest.mark.parametrize("cls", [mmstore.Dict, mmstore.List], ids=["Dict", "List"])
def test_wrong_option_types_name_the_option(tmp_path, cls, kwargs, word):
    with pytest.raises(TypeError, match=word) as info:
        cls(tmp_path / "x", **kwargs)
    assert "_segment" not in str(info.value)


def test_mode_out_of_range_and_bad_path_type(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        mmstore.Dict(tmp_path / "x", mode=-1)
    with pytest.raises(TypeError, match="path") as info:
        mmstore.Dict(b"bytes-path")
    assert "_segment" not in str(info.value)
    with pytest.raises(TypeError, match="path"):
        mmstore.List(12)
    assert _listing(tmp_path) == []


def test_shared_dict_unlink_by_name_of_the_wrong_type_names_the_argument():
    with pytest.raises(TypeError, match="name must be a str") as info:
        mmstore.SharedDict.unlink_by_name(5)
    assert "unlink_shared" not in str(info.value)


def test_closed_error_names_the_class_of_the_handle(tmp_path):
    sd = mmstore.SharedDict()
    sd["k"] = 1
    sd.close()
    for op in (lambda: sd["k"], lambda: len(sd), lambda: sd.sync(), lambda: sd.__setitem__("k", 2)):
        with pytest.raises(mmstore.ClosedError, match="closed SharedDict"):
            op()
    d = mmstore.Dict(tmp_path / "d")
    d.close()
    for op in (lambda: d["k"], lambda: d.sync()):
        with pytest.raises(mmstore.ClosedError, match="closed Dict"):
            op()
    lst = mmstore.List(tmp_path / "l")
    lst.close()
    with pytest.raises(mmstore.ClosedError, match="closed List"):
        lst[0]
    arr = mmstore.RecordArray.build([Item(1, 1.0)], tmp_path / "a")
    arr.close()
    with pytest.raises(mmstore.ClosedError, match="closed RecordArray"):
        len(arr)


def test_exceptions_live_in_the_mmstore_module_and_pickle(tmp_path):
    for name in mmstore._errors.__all__:
        cls = getattr(mmstore, name)
        assert cls.__module__ == "mmstore", name
        assert getattr(mmstore, cls.__qualname__) is cls
    path = tmp_path / "bad"
    path.write_bytes(b"not a store at all" * 300)
    try:
        mmstore.Dict(path)
    except mmstore.CorruptFileError as e:
        text = "".join(traceback.format_exception(type(e), e, e.__traceback__))  # the form 3.9 has too
        err = e
    assert "mmstore.ForeignFileError: " in text and "_errors" not in text
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is mmstore.ForeignFileError and str(back) == str(err)
    for exc in (mmstore.StoreLockedError("m", "p", 3), mmstore.DiskFullError("m", "p"), mmstore.ClosedError("m")):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
