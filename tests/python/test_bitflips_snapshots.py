"""Differential corruption test of reads through snapshots, and of damage made after a store was opened.

tests/python/test_bitflips_stores.py damages files at rest and reads them through the live read paths. A
snapshot reads through other code: the version table's chains (a Dict key changed since the snapshot's
instant), the recorded 64-element pages of a List, the retired records those pages still reference, the
nested dicts a SharedDict snapshot keeps after the store replaced or deleted them, and the fast path that
reads live data while no write has been recorded. Those structures exist only while a snapshot is open, so this test damages the store *while* snapshots are open: it opens several snapshots,
changes most of the store through the writable handle (so the snapshots' answers come from the version
table), then, case by case, damages one byte of the file (a single-bit flip two cases in three, else a
random byte; through ``pwrite``, which the mapping shares) and reads the snapshot's whole content through
every read API. The only allowed outcomes are "equal to the snapshot's undamaged content" and an
``mmstore.Error``; the byte is restored after each case.

The same damage is also read through the live API of a handle opened before it
(``test_damage_after_open_…``): the checks made when a store is opened never see such damage, so every
read path has to check for itself. (Against the build before 5a30b8c, both kinds of test found wrong data
-- a damaged ``used``, a table pointer naming another table -- and hung on a damaged size word.)

A Dict snapshot collects its items once (``len``, iteration); lookups read the file every time. So each
case reads every key through ``[]``, ``get`` and ``in`` of one long-lived snapshot, and the first cases also
iterate a fresh snapshot each (all opened at the same instant, before the writes).
"""

from __future__ import annotations

import os
import pathlib
import random

import pytest

import mmstore
from test_bitflips import CASES, watchdog
from test_bitflips_stores import damage_at, make_dict, make_list, make_shared, plain_value, write_at

FRESH = 40  # Dict snapshots opened at the instant, for iteration cases (64 reader slots per store)


def change_dict(d: mmstore.Dict) -> None:
    keys = list(d)
    for i, k in enumerate(keys):
        if i % 3 == 0:
            del d[k]
        elif i % 3 == 1:
            d[k] = ("changed", i, "w" * (i % 40))  # record values
        else:
            d[k] = -i  # inline values
    for i in range(400):  # enough new keys to rebuild the live table
        d[f"new{i}"] = f"n{i}" * (i % 5)


def change_list(lst: mmstore.List) -> None:
    n = len(lst)
    for i in range(0, n, 3):
        lst[i] = ("changed", i, "w" * (i % 40))
    lst.insert(7, "inserted")
    del lst[100:140]
    lst.reverse()
    lst.extend(range(500))
    for _ in range(30):
        lst.pop(3)


def _damage(path, pos: int, byte: int) -> None:
    write_at(path, pos, bytes([byte]))


def _run(path, read_case, cases: int, seed: int) -> dict:
    with watchdog():
        return _cases(path, read_case, cases, seed)


def _cases(path, read_case, cases: int, seed: int) -> dict:
    data = path.read_bytes()
    # Most of the file is zero (room the store grew into): three cases in four damage a byte that holds
    # something (tables, chains, pages, records, headers), the rest any byte.
    held = [i for i, b in enumerate(data) if b]
    rng = random.Random(seed)
    outcomes = {"error": 0, "equal": 0, "wrong": 0}
    wrong = []
    for case in range(cases):
        pos, byte = damage_at(data, rng, len(data))
        if rng.random() < 3 / 4:
            pos = rng.choice(held)
            byte = data[pos] ^ (1 << rng.randrange(8)) if rng.random() < 2 / 3 else rng.randrange(256)
        _damage(path, pos, byte)
        try:
            ok = read_case(case)
        except mmstore.Error:
            outcomes["error"] += 1
        except Exception as exc:  # noqa: BLE001 - any other outcome is a finding
            outcomes["wrong"] += 1
            wrong.append(f"case {case} (byte {pos} -> {byte:#04x}): {type(exc).__name__}: {exc}")
        else:
            if ok:
                outcomes["equal"] += 1
            else:
                outcomes["wrong"] += 1
                wrong.append(f"case {case} (byte {pos} -> {byte:#04x}): read back different data")
        _damage(path, pos, data[pos])
    assert path.read_bytes() == data, "the readers wrote to the file"
    outcomes["examples"] = wrong[:5]
    return outcomes


def run_dict(tmp_path, cases: int, seed: int = 20261205) -> dict:
    path = tmp_path / "d.mms"
    make_dict(path)
    with mmstore.Dict(path) as d:
        snaps = [d.snapshot() for _ in range(FRESH + 1)]
        for snap in snaps:
            snap.__enter__()
        try:
            want = dict(snaps[0].items())
            change_dict(d)
            s = snaps[0]
            assert dict(s.items()) == want and {k: s[k] for k in want} == want, "the snapshot moved"
            assert dict(d.items()) != want, "the changes reached no key"
            absent = ["absent", 10**9, f"new{5}"]  # new5 was inserted after the instant

            def read_case(case: int) -> bool:
                ok = all(s[k] == v and s.get(k) == v and k in s for k, v in want.items())
                ok = ok and not any(k in s for k in absent) and s.get("absent", "dflt") == "dflt"
                if case < FRESH:  # a fresh snapshot's first items() reads the file
                    fresh = snaps[case + 1]
                    ok = ok and dict(fresh.items()) == want and len(fresh) == len(want)
                return ok

            return _run(path, read_case, cases, seed)
        finally:
            for snap in snaps:
                snap.__exit__(None, None, None)


def change_shared(d: mmstore.SharedDict) -> None:
    keys = list(d)
    for i, k in enumerate(keys):
        if i % 4 == 0:
            del d[k]  # nested dicts among them: retired, not freed
        elif i % 4 == 1:
            d[k] = {"replaced": i, "sub": {"z": i}}  # a nested dict replaced by another
        elif i % 4 == 2 and isinstance(d[k], mmstore.NestedDict):
            d[k]["sub"]["x"] = "changed"  # a change inside a kept nested dict
            d[k]["n"] = -i
        else:
            d[k] = ("changed", i)
    for i in range(200):
        d[f"new{i}"] = i


def _plain(v):
    return v.copy() if isinstance(v, mmstore.Snapshot) else v


def run_shared(cases: int, seed: int = 20261205) -> dict:
    name = f"bitflip_snap_{os.getpid()}_{seed}"
    make_shared(name)
    path = pathlib.Path(mmstore._core.shared_segment_path(name))
    d = mmstore.SharedDict(name, create=False, recurse=True, auto_unlink=False)
    try:
        with d.snapshot() as s:
            want = {k: _plain(v) for k, v in s.items()}
            change_shared(d)
            assert {k: _plain(s[k]) for k in want} == want, "the snapshot moved"

            def read_case(case: int) -> bool:
                return all(_plain(s[k]) == v and _plain(s.get(k)) == v and k in s for k, v in want.items())

            return _run(path, read_case, cases, seed)
    finally:
        d.close()
        d.unlink()


def run_list(tmp_path, cases: int, seed: int = 20261205) -> dict:
    path = tmp_path / "l.mms"
    make_list(path)
    with mmstore.List(path) as lst:
        with lst.snapshot() as s:
            want = list(s)
            change_list(lst)
            assert list(s) == want, "the snapshot moved"
            assert list(lst) != want, "the changes reached no element"
            n = len(want)

            def read_case(case: int) -> bool:
                return (len(s) == n and list(s) == want and [s[i] for i in range(n)] == want
                        and [s[i - n] for i in range(n)] == want and s[::3] == want[::3]
                        and s[5:50] == want[5:50] and list(reversed(s)) == want[::-1])

            return _run(path, read_case, cases, seed)


def _live_dict(d) -> tuple:
    items = [(k, plain_value(v)) for k, v in d.items()]
    for k, v in items:  # every key iteration yields is found by every lookup, with the same value
        if plain_value(d[k]) != v or plain_value(d.get(k)) != v or k not in d:
            return None
    return items, len(d), "absent" in d, list(d) == [k for k, _ in items]


def run_live(kind: str, tmp_path, cases: int, seed: int = 20261205) -> dict:
    """The same damage, read through the live API of a handle opened *before* it: the checks made when a
    store is opened (headers, counters) do not see it, so every read path must check for itself."""
    if kind == "SharedDict":
        name = f"bitflip_live_{os.getpid()}_{seed}"
        make_shared(name)
        path = pathlib.Path(mmstore._core.shared_segment_path(name))
        h = mmstore.SharedDict(name, create=False, recurse=True, auto_unlink=False)
    elif kind == "Dict":
        path = tmp_path / "d.mms"
        make_dict(path)
        h = mmstore.Dict(path)
    else:
        path = tmp_path / "l.mms"
        make_list(path)
        h = mmstore.List(path)
    try:
        if kind == "List":
            want = list(h)
            n = len(want)

            def read_case(case: int) -> bool:
                return (len(h) == n and list(h) == want and [h[i] for i in range(n)] == want
                        and h[::3] == want[::3] and list(reversed(h)) == want[::-1])
        else:
            want = _live_dict(h)

            def read_case(case: int) -> bool:
                return _live_dict(h) == want

        return _run(path, read_case, cases, seed)
    finally:
        h.close()
        if kind == "SharedDict":
            h.unlink()


@pytest.mark.parametrize("kind", ["Dict", "List", "SharedDict"])
def test_damage_after_open_reads_back_equal_or_raises_through_the_live_api(tmp_path, kind):
    out = run_live(kind, tmp_path, CASES)
    assert out["wrong"] == 0, out
    assert out["error"] > 0 and out["equal"] + out["error"] == CASES, out


def test_damaged_store_reads_back_equal_or_raises_through_a_dict_snapshot(tmp_path):
    out = run_dict(tmp_path, CASES)
    assert out["wrong"] == 0, out
    assert out["error"] > 0 and out["equal"] + out["error"] == CASES, out  # the damage did reach the readers


def test_damaged_store_reads_back_equal_or_raises_through_a_list_snapshot(tmp_path):
    out = run_list(tmp_path, CASES)
    assert out["wrong"] == 0, out
    assert out["error"] > 0 and out["equal"] + out["error"] == CASES, out


def test_damaged_store_reads_back_equal_or_raises_through_a_shared_dict_snapshot():
    out = run_shared(CASES)
    assert out["wrong"] == 0, out
    assert out["error"] > 0 and out["equal"] + out["error"] == CASES, out
