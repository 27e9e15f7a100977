"""Writes that run Python code between a lookup and the write, and keys stored in a non-canonical form.

Both were found by an adversarial probe (issue 15): Python code run under the write lock (__eq__, __add__,
unpickling) could change the store through the same handle, so the position found before it belonged to
another key, or to a freed table; and a key word in a non-canonical encoding survived repair and verify()
while no lookup could reach it.
"""

import pickle
import struct
import subprocess
import sys

import pytest

import mmstore

# Set by the tests below: the handle an unpickled value or an __add__ writes through.
TARGET = {}


class ClearsOnEq:
    def __init__(self, d):
        self.d = d

    def __eq__(self, other):
        self.d.clear()  # frees the table the position pointed into
        return True

    __hash__ = None


class WritesOnAdd:
    """A stored value whose addition writes another key of the store that holds it."""

    def __init__(self, n):
        self.n = n

    def __add__(self, other):
        TARGET["d"]["side"] = "effect"
        return WritesOnAdd(self.n + other)


class WritesOnUnpickle:
    def __init__(self, n):
        self.n = n

    def __reduce__(self):
        return (_rebuild_and_write, (self.n,))


def _rebuild_and_write(n):
    d = TARGET.get("d")
    if d is not None:
        d["side"] = "effect"
    return WritesOnUnpickle.__new__(WritesOnUnpickle)


@pytest.fixture(params=["Dict", "SharedDict"])
def store(request, tmp_path):
    if request.param == "Dict":
        d = mmstore.Dict(tmp_path / "d.mms")
    else:
        d = mmstore.SharedDict()
    yield d
    TARGET.clear()
    d.close()


def test_compare_and_set_whose_eq_clears_the_store_writes_nothing(store):
    store.update({f"k{i}": i for i in range(100)})
    with pytest.raises(RuntimeError, match="changed the store"):
        store.compare_and_set("k5", ClearsOnEq(store), "new value" * 10)
    assert len(store) == 0
    store.verify()
    store["again"] = 1  # the store is still writable
    assert dict(store.items()) == {"again": 1}


def test_increment_whose_add_writes_the_store_writes_nothing(store):
    TARGET["d"] = store
    store["k"] = WritesOnAdd(1)
    store["other"] = 2
    with pytest.raises(RuntimeError, match="increment"):
        store.increment("k", 5)
    assert store["k"].n == 1  # not incremented
    assert store["other"] == 2  # the key after it in the table is intact
    assert store["side"] == "effect"
    store.verify()


def test_pop_whose_unpickling_writes_the_store_removes_nothing(store):
    store["k"] = WritesOnUnpickle(3)
    store["z"] = "last"
    TARGET["d"] = store
    with pytest.raises(RuntimeError, match="pop"):
        store.pop("k")
    TARGET.clear()
    assert "k" in store and store["z"] == "last"
    store.verify()


def test_callbacks_that_only_read_still_work(store):
    store["k"] = 10
    assert store.compare_and_set("k", 10, 11)
    assert store.increment("k", 4) == 15
    assert store.pop("k") == 15


def _first_entry_key_offset(path) -> int:
    """File offset of entry 0's key word in the root table (docs/format.md §1.3 and §4)."""
    data = open(path, "rb").read()
    root = struct.unpack_from("<Q", data, 272)[0]
    capacity = struct.unpack_from("<Q", data, root)[0]
    return root + 64 + capacity // 16 * 64


def _set_key_word(path, word: int, dirty: bool):
    off = _first_entry_key_offset(path)
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(struct.pack("<Q", word))
        if dirty:  # as after a crash: the next opener repairs
            f.seek(256)
            f.write(struct.pack("<Q", 1))


def _sealed(word: int) -> int:
    """`word` with its check byte (byte 6) set: the XOR of its 8 bytes is 0xA7 (docs/format.md §3)."""
    word &= ~(0xFF << 48)
    x = 0
    for i in range(8):
        x ^= (word >> (8 * i)) & 0xFF
    return word | ((x ^ 0xA7) << 48)


NON_CANONICAL_ZERO = _sealed((0x80 | 0x30 | 1) << 56)  # inline int of 1 byte 0x00: the encoding 06 00, not 05


def test_verify_rejects_a_non_canonical_inline_int_key(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d[0] = "zero"
        d["b"] = 2
    _set_key_word(path, NON_CANONICAL_ZERO, dirty=False)
    with mmstore.Dict(path) as d:
        with pytest.raises(mmstore.CorruptFileError, match="non-canonical"):
            d.verify()


def test_repair_drops_a_non_canonical_inline_int_key(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d[0] = "zero"
        d["b"] = 2
    _set_key_word(path, NON_CANONICAL_ZERO, dirty=True)
    with mmstore.Dict(path) as d:
        d.verify()
        assert dict(d.items()) == {"b": 2}
        d[0] = "again"  # the canonical key is free again
    # a fresh process's read-only verify agrees
    out = subprocess.run([sys.executable, "-m", "mmstore", "verify", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_read_only_verify_reports_a_bogus_block_on_a_free_list(tmp_path):
    # The state the probe left behind: a block on a free list that overlaps live data. Every later write
    # fails; verify() through a read-only handle (the CLI's) must say so too.
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d.update({f"k{i}": "x" * 100 for i in range(50)})
        for i in range(0, 50, 2):
            del d[f"k{i}"]
    data = bytearray(open(path, "rb").read())
    heads = 256 + 128 + 32  # LiveHeader.arena.heads (docs/format.md §2)
    cls = next(c for c in range(73) if struct.unpack_from("<Q", data, heads + 8 * c)[0] != 0)
    root = struct.unpack_from("<Q", data, 272)[0]
    struct.pack_into("<Q", data, heads + 8 * cls, root)  # the root table "is free"
    # (a writable first opener would find the live state differing from the clean commit slot and repair;
    # a read-only one repairs nothing and must report it)
    open(path, "wb").write(data)
    with mmstore.Dict(path, readonly=True) as d:
        with pytest.raises(mmstore.CorruptFileError):
            d.verify()
    out = subprocess.run([sys.executable, "-m", "mmstore", "verify", str(path)], capture_output=True, text=True)
    assert out.returncode != 0
