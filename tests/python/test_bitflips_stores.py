"""Differential corruption test of the mutable stores: Dict, List and SharedDict (format 3, checked reads).

As tests/python/test_bitflips.py does for the build-once files: a seeded run damages a sample file -- a
single-bit flip (two cases in three) or a random byte overwritten, anywhere in the file -- then opens it,
reads everything through every read API (iteration, ``items()``, ``values()``, ``[]``, ``get``, ``in``,
``len``; List indexing, negative indices, slices, reversed iteration) and compares with the undamaged
file. The only allowed outcomes are "equal" and an ``mmstore.Error``: a wrong value, a key that iteration
yields but lookup misses, or any other exception fails the test.

Most cases open the damaged file read-only and restore the damaged byte afterwards (fast); every eighth
opens it writable, which lets the open-time repair run on a file whose commit slot or dirty flag was hit,
and then rewrites the whole file. SharedDict segments are damaged within the part of the segment the
arena has used (past it the segment is never read: flips there would only make the run longer).
"""

from __future__ import annotations

import os
import random

import pytest

import mmstore
from test_bitflips import CASES, watchdog

WRITABLE_EVERY = 8


def make_dict(path):
    with mmstore.Dict(path) as d:
        for i in range(300):
            # mixed int/str keys; inline, record and nested values; a long key; a record > 4 KiB
            d[i if i % 2 else f"key{i}"] = (i, [f"v{i}", {"n": i}]) if i % 3 else i * 1000
        d["long key " * 8] = "x" * 5000
        d[-(2**47)] = 2**47 - 1
        d[b"raw"] = b"\x00\xff" * 3
        for i in range(20):  # 7-character ASCII keys and values: inline kind 5 (7 bits a character)
            d[f"seven{i:02d}"] = f"v{i:06d}"
        d.compact()


def read_dict(path, writable=False):
    with mmstore.Dict(path, create=False, readonly=not writable) as d:
        items = list(d.items())
        keys = list(d)
        values = list(d.values())
        assert keys == [k for k, _ in items] and values == [v for _, v in items], "views disagree"
        for k, v in items:  # every key iteration yields is found by every lookup, with the same value
            assert d[k] == v and d.get(k) == v and k in d, f"lookup of {k!r} disagrees with iteration"
        absent = [("absent", None) in d, "absent" in d, d.get(123456789, "dflt")]
        return items, len(d), absent


def make_list(path):
    with mmstore.List(path) as lst:
        lst.extend(i if i % 2 else f"s{i}" * (i % 5) for i in range(300))
        lst.extend([(1, 2.5), {"a": [1, 2]}, "y" * 5000, -(2**47), 2**47, b"bytes"])
        lst.extend(f"e{i:06d}" for i in range(20))  # inline kind 5
        lst.compact()


def read_list(path, writable=False):
    with mmstore.List(path, create=False, readonly=not writable) as lst:
        n = len(lst)
        it = list(lst)
        assert [lst[i] for i in range(n)] == it, "indexing disagrees with iteration"
        assert [lst[i - n] for i in range(n)] == it, "negative indexing disagrees with iteration"
        assert lst[::3] == it[::3] and lst[5:50] == it[5:50], "slices disagree with iteration"
        assert list(reversed(lst)) == it[::-1], "reversed iteration disagrees"
        return it, n


def plain_value(v):
    """A value as plain data: a NestedDict (a live view) copied into a dict."""
    return v.copy() if isinstance(v, mmstore.NestedDict) else v


def write_at(path, pos: int, data: bytes, create: bool = False) -> None:
    """Writes `data` at byte `pos` of the file through pwrite (any mapping of the file sees it at once)."""
    fd = os.open(path, os.O_WRONLY | (os.O_CREAT if create else 0), 0o600)
    try:
        os.pwrite(fd, data, pos)
    finally:
        os.close(fd)


def make_shared(name):
    d = mmstore.SharedDict(name, create=True, recurse=True, auto_unlink=False)
    for i in range(120):
        d[i if i % 2 else f"k{i}"] = {"n": i, "sub": {"x": [i], "y": f"v{i}"}} if i % 4 == 0 else (i, f"t{i}")
    d["big"] = "z" * 5000
    top = d.stats()["arena_top"]
    d.close()
    return top


def read_shared(name, writable=True):
    d = mmstore.SharedDict(name, create=False, recurse=True, auto_unlink=False)
    try:
        items = [(k, plain_value(v)) for k, v in d.items()]
        for k, v in items:
            got = d[k]
            assert plain_value(got) == v and plain_value(d.get(k)) == v and k in d, f"lookup of {k!r} disagrees"
            if isinstance(got, mmstore.NestedDict):  # the nested table's own lookups
                for k2, v2 in got.items():
                    assert plain_value(got[k2]) == plain_value(v2) and k2 in got, f"nested lookup of {k2!r} disagrees"
        return items, len(d), "absent" in d
    finally:
        d.close()


def damage_at(data: bytes, rng: random.Random, limit: int, bits_only: bool = False) -> tuple[int, int]:
    """(position, new byte): a single-bit flip (two cases in three, or always with bits_only) or a random
    byte, below `limit`."""
    pos = rng.randrange(limit)
    if bits_only or rng.random() < 2 / 3:
        return pos, data[pos] ^ (1 << rng.randrange(8))
    return pos, rng.randrange(256)


def run_store_bitflips(kind: str, tmp_path, cases: int, seed: int = 20261204, bits_only: bool = False) -> dict:
    outcomes = {"error": 0, "equal": 0, "wrong": 0}
    wrong = []
    if kind == "SharedDict":
        name = f"bitflip_{os.getpid()}_{seed}"
        top = make_shared(name)
        seg = mmstore._core.shared_segment_path(name)
        with open(seg, "rb") as f:
            data = f.read()
        want = read_shared(name)
        bad, limit = seg, min(top, len(data))
        read = read_shared
    else:
        make, read = {"Dict": (make_dict, read_dict), "List": (make_list, read_list)}[kind]
        orig = tmp_path / f"{kind}.orig"
        make(orig)
        data = orig.read_bytes()
        want = read(orig)
        bad, limit = tmp_path / f"{kind}.bad", len(data)
        with open(bad, "wb") as f:
            f.write(data)
    rng = random.Random(seed)
    try:
        for case in range(cases):
            pos, byte = damage_at(data, rng, limit, bits_only)
            writable = kind == "SharedDict" or case % WRITABLE_EVERY == 0
            write_at(bad, pos, bytes([byte]))
            try:
                got = read(bad if kind != "SharedDict" else name, writable=writable)
            except mmstore.Error:
                outcomes["error"] += 1
                got = None
            except Exception as exc:  # noqa: BLE001 - any other outcome is a finding
                outcomes["wrong"] += 1
                wrong.append(f"case {case} (byte {pos} -> {byte:#04x}): {type(exc).__name__}: {exc}")
                got = None
            else:
                if got == want:
                    outcomes["equal"] += 1
                else:
                    outcomes["wrong"] += 1
                    wrong.append(f"case {case} (byte {pos} -> {byte:#04x}): read back different data")
            # Undo the damage, and whatever an open for writing changed (a damaged flag may even have made
            # the last close remove a segment).
            if writable:
                write_at(bad, 0, data, create=True)
            else:
                write_at(bad, pos, data[pos:pos + 1], create=True)
    finally:
        if kind == "SharedDict" and os.path.exists(bad):
            os.unlink(bad)
    outcomes["examples"] = wrong[:5]
    return outcomes


@pytest.mark.parametrize("kind", ["Dict", "List", "SharedDict"])
def test_damaged_store_reads_back_equal_or_raises(tmp_path, kind):
    with watchdog():
        out = run_store_bitflips(kind, tmp_path, CASES)
    assert out["wrong"] == 0, out
    assert out["error"] > 0 and out["equal"] + out["error"] == CASES, out  # the damage did reach the readers


def test_verify_false_skips_the_word_check(tmp_path):
    # The opt-out is real: a value word whose check byte is damaged reads back (as whatever its bytes say)
    # with verify=False, and raises CorruptFileError with the default.
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d["k"] = 12345
        assert d.verify_reads
    data = bytearray(path.read_bytes())
    word = (12345).to_bytes(2, "little")
    at = data.find(bytes([0x05 + 2]) + word)  # never stored: the inline word drops the tag
    assert at == -1
    # Find the inline value word: payload 39 30, top byte 0x80 | 3 << 4 | 2 = 0xB2.
    at = next(i for i in range(0, len(data) - 8, 8) if data[i:i + 2] == word and data[i + 7] == 0xB2)
    data[at + 6] ^= 0x01  # the check byte
    path.write_bytes(bytes(data))
    with mmstore.Dict(path, readonly=True) as d:
        with pytest.raises(mmstore.CorruptFileError, match=r"offset \d+"):
            d["k"]
    with mmstore.Dict(path, readonly=True, verify=False) as d:
        assert not d.verify_reads
        assert d["k"] == 12345


@pytest.mark.parametrize("cls", [mmstore.Dict, mmstore.List])
def test_verify_must_be_a_bool(tmp_path, cls):
    with pytest.raises(TypeError, match="verify must be a bool"):
        cls(tmp_path / "x", verify=1)


# ---- files of mmstore 0.2 (store format 2) ------------------------------------------------------------
# data/v2_dict.mms.gz and data/v2_list.mms.gz were written by mmstore 0.2.0 (commit 1413652):
#   Dict: d[i if i % 2 else f"key{i}"] = (i, [f"v{i}", {"n": i}]) if i % 3 else i * 1000 for i < 200, then
#         d["long key " * 8] = "x" * 5000; d[2**50] = -(2**54); d["sevench"] = "7 bytes"; d[b"b"] = b"\0" * 7;
#         del d["key4"]; compact(); del d["key8"] (a tombstone)
#   List: [1, "sevench", 2**54, -(2**50), "z" * 5000, (1, 2), None, b"1234567", 3.5]
DATA = os.path.join(os.path.dirname(__file__), "data")


def v2_dict_content():
    d = {}
    for i in range(200):
        d[i if i % 2 else f"key{i}"] = (i, [f"v{i}", {"n": i}]) if i % 3 else i * 1000
    d["long key " * 8] = "x" * 5000
    d[2**50] = -(2**54)
    d["sevench"] = "7 bytes"
    d[b"b"] = b"\0" * 7
    del d["key4"], d["key8"]
    return list(d.items())


V2_LIST = [1, "sevench", 2**54, -(2**50), "z" * 5000, (1, 2), None, b"1234567", 3.5]


def unpack_v2(tmp_path, name):
    import gzip

    path = tmp_path / name
    with gzip.open(os.path.join(DATA, name + ".gz"), "rb") as f:
        path.write_bytes(f.read())
    os.chmod(path, 0o640)
    return path


@pytest.mark.parametrize("cls", [mmstore.Dict, mmstore.List])
def test_format_2_file_is_refused_with_the_way_to_convert_it(tmp_path, cls):
    path = unpack_v2(tmp_path, "v2_dict.mms" if cls is mmstore.Dict else "v2_list.mms")
    before = path.read_bytes()
    with pytest.raises(mmstore.UnsupportedVersionError, match=r"format version 2 .*`mmstore upgrade .*v2_"):
        cls(path)
    assert path.read_bytes() == before  # refused without touching it


def test_upgrade_converts_format_2_files_in_place(tmp_path):
    d = unpack_v2(tmp_path, "v2_dict.mms")
    lst = unpack_v2(tmp_path, "v2_list.mms")
    assert mmstore.upgrade(str(d)) == {"from_version": 2, "to_version": mmstore.FORMAT_VERSION, "entries": 202}
    assert mmstore.upgrade(str(lst))["entries"] == len(V2_LIST)
    with mmstore.Dict(d, create=False) as got:
        assert list(got.items()) == v2_dict_content()  # insertion order kept
        got.verify()
    with mmstore.List(lst, create=False) as got:
        assert list(got) == V2_LIST
        got.verify()
    assert os.stat(d).st_mode & 0o777 == 0o640  # the file keeps its permissions
    assert mmstore.upgrade(str(d))["from_version"] == mmstore.FORMAT_VERSION  # a second run changes nothing


def test_upgrade_refuses_a_damaged_format_2_file_and_leaves_it(tmp_path):
    path = unpack_v2(tmp_path, "v2_dict.mms")
    data = bytearray(path.read_bytes())
    at = data.find(b"x" * 5000)  # inside the 5000-byte record: its checksum no longer matches
    data[at + 100] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(mmstore.CorruptFileError, match="fails its checksum; nothing was changed"):
        mmstore.upgrade(str(path))
    assert path.read_bytes() == bytes(data)


def test_cli_upgrade(tmp_path):
    import subprocess
    import sys

    path = unpack_v2(tmp_path, "v2_list.mms")
    out = subprocess.run([sys.executable, "-m", "mmstore", "upgrade", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "format 2 -> 3 (9 entries)" in out.stdout
    with mmstore.List(path, create=False) as got:
        assert list(got) == V2_LIST
