"""Differential corruption test: a damaged file reads back correctly or raises, never returns wrong data.

For each file kind, a seeded run flips single bits and overwrites single bytes all over a sample file, then
opens it, reads everything a user can read (every field of every record, every key and value, every lookup)
and compares with what the undamaged file gives. The only allowed outcomes are "equal" and an
``mmstore.Error``; anything else (a wrong value, a key that iteration yields but lookup misses, a Python
exception of another type) fails the test.

Covered here: the build-once files (RecordArray, Mapping), whose sections are checksummed and checked when
they are opened, and the Pool's saved spill files, whose buffers are hashed. Dict, List and SharedDict
(checked words, format 3): test_bitflips_stores.py. ``tools/bitflip_table.py`` runs the same measurement
over every kind and prints the table of outcomes.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import random

import pytest

import mmstore

CASES = int(os.environ.get("MMSTORE_BITFLIP_CASES", "2000"))
WATCHDOG = 600  # seconds per run of cases; a run takes a few (a guard against a hang, not a speed measurement)


@contextlib.contextmanager
def watchdog(seconds: int = WATCHDOG):
    """Ends the process with a traceback if the block runs longer than `seconds`. A read that loops on damage
    (one did: a damaged size word made every failing read retry) spins in C++, where no Python signal handler
    runs; faulthandler's watchdog thread still fires, so the suite fails instead of hanging CI."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@mmstore.struct
class Item:
    a: int
    b: float
    s: str
    tags: frozenset


def damage(data: bytes, rng: random.Random) -> bytes:
    """One single-bit flip (two cases in three) or one random byte, anywhere in the file."""
    b = bytearray(data)
    pos = rng.randrange(len(b))
    if rng.random() < 2 / 3:
        b[pos] ^= 1 << rng.randrange(8)
    else:
        b[pos] = rng.randrange(256)
    return bytes(b)


def read_records(path):
    arr = mmstore.RecordArray(path)
    return [(r.a, r.b, r.s, r.tags) for r in arr]


def read_mapping(path):
    m = mmstore.Mapping(path)
    items = [(k, v) for k, v in m.items()]
    for k, v in items:  # every key iteration yields is found by lookup, with the same value
        assert m[k] == v, f"lookup of {k!r} disagrees with iteration"
    return sorted(items)


def read_spill(path):
    obj = mmstore.load(path)
    return (obj["ints"].tolist() if hasattr(obj["ints"], "tolist") else obj["ints"], obj["text"])


def make_records(path):
    mmstore.RecordArray.build(
        (Item(a=i * 7 - 50, b=i / 3, s=f"s{i:04d}", tags=frozenset({i, i % 3})) for i in range(60)), path,
        schema=Item.__schema__)


def make_mapping(path):
    mmstore.Mapping.build(((f"k{i:04d}", i * 11) for i in range(120)), path, key=str, value=mmstore.int64)


def make_spill(path, tmp):
    np = pytest.importorskip("numpy")
    pool = mmstore.Pool(max_memory=1 << 24, spill_dir=str(tmp))
    pool.save(pool.put({"ints": np.arange(3000, dtype=np.int64), "text": "hello " * 100}), path)
    pool.close()


KINDS = {
    "RecordArray": (make_records, read_records),
    "Mapping": (make_mapping, read_mapping),
    "spill": (make_spill, read_spill),
}


def run_bitflips(kind: str, tmp_path, cases: int, seed: int = 20261204) -> dict:
    make, read = KINDS[kind]
    original = tmp_path / "orig"
    if kind == "spill":
        make(original, tmp_path)
    else:
        make(original)
    data = original.read_bytes()
    want = read(original)
    rng = random.Random(seed)
    outcomes = {"error": 0, "equal": 0, "wrong": 0}
    wrong = []
    for case in range(cases):
        bad = tmp_path / f"case-{kind}"
        bad.write_bytes(damage(data, rng))
        try:
            got = read(bad)
        except mmstore.Error:
            outcomes["error"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - any other outcome is a finding
            outcomes["wrong"] += 1
            wrong.append(f"case {case}: {type(exc).__name__}: {exc}")
            continue
        if got == want:
            outcomes["equal"] += 1
        else:
            outcomes["wrong"] += 1
            wrong.append(f"case {case}: read back different data")
    outcomes["examples"] = wrong[:5]
    return outcomes


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_damaged_file_reads_back_equal_or_raises(tmp_path, kind):
    with watchdog():
        out = run_bitflips(kind, tmp_path, CASES)
    assert out["wrong"] == 0, out
    assert out["error"] > 0 and out["equal"] + out["error"] == CASES, out  # the damage did reach the readers
