"""Snapshots of a List (``with l.snapshot() as s:``): issue 11's "Snapshots are isolated" for List.

* a hypothesis test against a list model: random writes of every kind (append, extend, set, insert, delete
  and slice delete, pop, slice assignment, sort, reverse, clear, transactions, large values, enough to cross
  the 64-element pages) with snapshots opened and closed among them; each open snapshot equals the model
  as copied when it opened, by every read of the sequence API;
* real processes: a snapshot opened before another process's 10,000 changes sees none of them; a writer
  SIGKILLed at random instants while a snapshot is open leaves the snapshot unchanged and verify() passing;
* reclaim: the version records go with the first write after the last close, and after the process holding
  a snapshot was SIGKILLed;
* the protocol: errors outside the block and after close, indices, slices, comparisons.

Timeouts guard against hangs only; nothing here measures speed.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmstore
from conftest import CHILD_ENV
from mmstore import _core

HANG = 120


def _start(script, *args):
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=CHILD_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check(s, model, rng=random):
    assert len(s) == len(model)
    assert list(s) == model
    assert s == model
    assert list(reversed(s)) == model[::-1]
    for _ in range(5):
        if model:
            i = rng.randrange(-len(model), len(model))
            assert s[i] == model[i]
        a, b = rng.randrange(-3, len(model) + 3), rng.randrange(-3, len(model) + 3)
        step = rng.choice([1, 1, 2, 3, -1, -2])
        assert s[a:b:step] == model[a:b:step]
    with pytest.raises(IndexError):
        s[len(model)]


# -- against a model -------------------------------------------------------------------------------------------

_value = st.one_of(st.integers(), st.text(max_size=12), st.binary(min_size=3_000, max_size=4_000), st.none(),
                   st.lists(st.integers(), max_size=3))
_pos = st.integers(-50, 1200)
_op = st.one_of(
    st.tuples(st.just("append"), _value, st.none()),
    st.tuples(st.just("extend"), st.integers(1, 1200), _value),
    st.tuples(st.just("set"), _pos, _value),
    st.tuples(st.just("insert"), _pos, _value),
    st.tuples(st.just("del"), _pos, st.none()),
    st.tuples(st.just("delslice"), _pos, _pos),
    st.tuples(st.just("setslice"), _pos, st.lists(_value, max_size=4)),
    st.tuples(st.just("pop"), st.none(), st.none()),
    st.tuples(st.just("reverse"), st.none(), st.none()),
    st.tuples(st.just("sort"), st.none(), st.none()),
    st.tuples(st.just("txn"), st.lists(_value, max_size=4), _pos),
    st.tuples(st.just("clear"), st.none(), st.none()),
    st.tuples(st.just("open"), st.none(), st.none()),
    st.tuples(st.just("close"), st.integers(0, 3), st.none()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(start=st.lists(_value, max_size=30), ops=st.lists(_op, max_size=14))
def test_list_snapshot_equals_the_model_copied_at_open(tmp_path, start, ops):
    path = tmp_path / f"l{uuid.uuid4().hex}.mms"
    rng = random.Random(len(ops))
    with mmstore.List(path) as lst:
        lst.extend(start)
        model = list(start)
        snaps = []  # (snapshot, model at open)
        try:
            for kind, a, b in ops:
                n = len(model)
                if kind == "append":
                    lst.append(a)
                    model.append(a)
                elif kind == "extend":
                    vals = [b if i % 97 == 0 else i for i in range(a)]
                    lst.extend(vals)
                    model.extend(vals)
                elif kind == "set" and n:
                    lst[a % n] = b
                    model[a % n] = b
                elif kind == "insert":
                    lst.insert(a, b)
                    model.insert(a, b)
                elif kind == "del" and n:
                    del lst[a % n]
                    del model[a % n]
                elif kind == "delslice":
                    del lst[a:b]
                    del model[a:b]
                elif kind == "setslice":
                    lst[a:a + 2] = b
                    model[a:a + 2] = b
                elif kind == "pop" and n:
                    assert lst.pop() == model.pop()
                elif kind == "reverse":
                    lst.reverse()
                    model.reverse()
                elif kind == "sort":
                    key = repr
                    lst.sort(key=key)
                    model.sort(key=key)
                elif kind == "txn":
                    with lst.transaction() as t:
                        for v in a:
                            t.append(v)
                        if len(t):
                            t[b % len(t)] = "in-txn"
                            t.pop(0)
                    model.extend(a)
                    if model:
                        model[b % len(model)] = "in-txn"
                        model.pop(0)
                elif kind == "clear":
                    lst.clear()
                    model.clear()
                elif kind == "open":
                    s = lst.snapshot()
                    s.__enter__()
                    snaps.append((s, list(model)))
                elif kind == "close" and snaps:
                    s, seen = snaps.pop(a % len(snaps))
                    _check(s, seen, rng)
                    s.__exit__(None, None, None)
                for s, seen in snaps:
                    _check(s, seen, rng)
            assert list(lst) == model
            lst.verify()  # the chains and retired records are reachable while snapshots are open
        finally:
            for s, _ in snaps:
                s.__exit__(None, None, None)
        lst.append("after")  # the first write after the last close frees the records
        assert _core._list_snapshot_version_keys(lst) == 0
        lst.verify()


def test_list_snapshot_api(tmp_path):
    with mmstore.List(tmp_path / "a.mms") as lst:
        lst.extend(["a", 1, None, b"xy", [1, 2], "a"])
        s = lst.snapshot()
        with pytest.raises(RuntimeError, match="with"):
            len(s)
        with s:
            assert s.active and isinstance(s, mmstore.ListSnapshot)
            assert isinstance(s.version, int)
            lst.append("later")
            assert len(s) == 6 and s[-1] == "a" and s[3] == b"xy"
            assert s.index("a") == 0 and s.index("a", 1) == 5 and s.count("a") == 2
            assert [1, 2] in s and "later" not in s
            with pytest.raises(ValueError):
                s.index("later")
            with pytest.raises(TypeError, match="integers or slices"):
                s["x"]
            with pytest.raises(IndexError):
                s[-7]
            assert s.copy() == ["a", 1, None, b"xy", [1, 2], "a"]
            assert s != lst and s == tuple(s.copy())
            assert "open" in repr(s)
            with pytest.raises(RuntimeError, match="already entered"):
                s.__enter__()
        assert not s.active
        with pytest.raises(mmstore.ClosedError):
            s[0]
        with pytest.raises(mmstore.ClosedError):
            list(s)


def test_closing_the_list_closes_its_snapshots_and_compact_refuses(tmp_path):
    lst = mmstore.List(tmp_path / "c.mms")
    lst.extend(range(10))
    with lst.snapshot() as s:
        with pytest.raises(mmstore.StoreLockedError, match="snapshot"):
            lst.compact()
        lst.close()
        with pytest.raises(mmstore.ClosedError):
            len(s)


_WRITER = r"""
import sys, mmstore
l = mmstore.List(sys.argv[1])
print("ready", flush=True)
n = int(sys.argv[2])
for i in range(n):
    op = i % 6
    if op == 0:
        l.append(f"new{i}")
    elif op == 1:
        l[i % len(l)] = "set" * 10 + str(i)
    elif op == 2:
        del l[(i * 7) % len(l)]
    elif op == 3:
        l.insert((i * 13) % len(l), i)
    elif op == 4:
        l.pop()
    else:
        with l.transaction() as t:
            t[0] = i
            t.append(i)
print("done", flush=True)
"""


def test_list_snapshot_sees_none_of_another_processes_10000_changes(tmp_path):
    path = tmp_path / "iso.mms"
    with mmstore.List(path) as lst:
        model = [f"v{i}" if i % 3 else f"a longer value {i}" for i in range(2000)]
        lst.extend(model)
        with lst.snapshot() as s:
            w = _start(_WRITER, path, 10_000)
            try:
                assert w.stdout.readline().strip() == "ready"
                rounds = 0
                while w.poll() is None or rounds == 0:  # read all through the writer's run, at least once
                    for i in random.sample(range(len(model)), 50):
                        assert s[i] == model[i]
                    assert len(s) == len(model)
                    rounds += 1
                w.wait(timeout=HANG)
                assert w.returncode == 0, w.stderr.read()
                _check(s, model)
            finally:
                if w.poll() is None:
                    w.kill()
                w.wait()
        assert list(lst) != model
        lst.verify()


_HOLDER = r"""
import sys, time, mmstore
l = mmstore.List(sys.argv[1])
s = l.snapshot()
s.__enter__()
print("ready", flush=True)
time.sleep(600)
"""


def test_list_records_are_freed_after_close_and_after_a_killed_holder(tmp_path):
    path = tmp_path / "rec.mms"
    with mmstore.List(path) as lst:
        lst.extend(range(2000))
        with lst.snapshot() as s:
            for i in range(0, 2000, 100):
                lst[i] = -i
            for i in range(0, 2000, 100):
                lst[i] = i  # again: each page is recorded once
            assert _core._list_snapshot_version_keys(lst) == 20  # a page each (64 elements a page)
            assert s[700] == 700
        lst.append(0)
        assert _core._list_snapshot_version_keys(lst) == 0

        h = _start(_HOLDER, path)
        try:
            assert h.stdout.readline().strip() == "ready"
            lst[0] = "kept for the holder"
            assert _core._list_snapshot_version_keys(lst) == 1
        finally:
            h.send_signal(signal.SIGKILL)
            h.wait()
        with lst.snapshot():  # opening frees the dead holder's slot
            pass
        lst[1] = 1
        assert _core._list_snapshot_version_keys(lst) == 0
        lst.verify()


def test_list_writer_killed_while_a_snapshot_is_open(tmp_path):
    path = tmp_path / "crash.mms"
    rng = random.Random(12)
    with mmstore.List(path) as lst:
        model = [f"element {i}" for i in range(1500)]
        lst.extend(model)
        with lst.snapshot() as s:
            for kill in range(3):
                w = _start(_WRITER, path, 10**9)
                assert w.stdout.readline().strip() == "ready"
                before = _core._list_snapshot_version_keys(lst)
                # Kill at a random moment after the writer changed something.
                while _core._list_snapshot_version_keys(lst) <= before + rng.randrange(1, 100):
                    if w.poll() is not None:
                        break
                w.send_signal(signal.SIGKILL)
                w.wait()
                lst.append(kill)  # the next writer recovers the dead writer's lock
                lst.verify()
                _check(s, model, rng)
    with mmstore.List(path) as lst:
        lst.verify()
        assert lst[-1] == 2


_ON_LOAD = []


class _CallsOnLoad:
    """Unpickling it runs _ON_LOAD[0]: Python code in the middle of a snapshot's batch decode."""

    def __init__(self):
        self.state = 1  # pickle calls __setstate__ only with a state

    def __setstate__(self, state):
        _ON_LOAD[0]()


@pytest.mark.parametrize("closing", ["snapshot", "list"])
def test_closing_from_inside_a_decode_raises_instead_of_reading_freed_memory(tmp_path, closing):
    lst = mmstore.List(tmp_path / f"{closing}.mms")
    lst.extend([_CallsOnLoad(), "a value long enough for a record", 2])
    try:
        with lst.snapshot() as s:
            _ON_LOAD[:] = [s.close if closing == "snapshot" else lst.close]
            with pytest.raises(mmstore.ClosedError):
                list(s)
    finally:
        _ON_LOAD.clear()
        lst.close()
