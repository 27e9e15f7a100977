"""Snapshots of a SharedDict's nested dicts (issue 11): a nested dict read through a snapshot is a snapshot of
that dict at the same instant, at every depth, whatever writers do to it meanwhile -- change it, rebuild it,
replace it, delete it.

* a hypothesis test against a model of nested dicts: random writes at three depths (set, delete, new nested
  dicts, nested dicts replaced by values, enough keys to rebuild a nested table, transactions and clear on
  nested dicts, update_many on the root) with snapshots opened and closed among them; each open snapshot
  equals the model as deep-copied when it opened, by every read of the mapping API at every depth;
* ``nd.snapshot()`` on a NestedDict;
* a real process: a snapshot opened before another process's 10,000 changes to nested dicts (including
  deleting and replacing them) sees none of them;
* reclaim: deleted nested dicts kept for a snapshot are freed by the first write after it closes (verify()'s
  arena check counts every block).

Timeouts guard against hangs only; nothing here measures speed.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmstore
from conftest import CHILD_ENV
from mmstore import _core

HANG = 120


def _plain(m):
    """A Snapshot, NestedDict or dict as a plain dict of plain dicts."""
    return {k: (_plain(v) if isinstance(v, (mmstore.Snapshot, mmstore.NestedDict, dict)) else v) for k, v in m.items()}


def _check(s, model):
    """Every read of the mapping API of snapshot `s` (at every depth) against the plain dict `model`."""
    assert isinstance(s, mmstore.Snapshot) and s.active
    assert len(s) == len(model)
    assert sorted(s, key=repr) == sorted(model, key=repr)
    assert _plain(s) == model
    assert s == model
    for k, v in model.items():
        assert k in s
        got = s[k]
        assert _plain({0: s.get(k, "absent")})[0] == v
        if isinstance(v, dict):
            assert isinstance(got, mmstore.Snapshot), "a nested dict must read back as a snapshot of it"
            _check(got, v)
        else:
            assert got == v
    assert "never-a-key" not in s


def _walk(model, d, path):
    """The model dict and the live NestedDict (or root) at `path`, or None when the path is not all dicts."""
    m, live = model, d
    for p in path:
        if not isinstance(m.get(p), dict):
            return None
        m, live = m[p], live[p]
    return m, live


def _assert_reclaimed(d):
    """The first write after the last snapshot closed frees the records and the kept nested dicts."""
    d["after"] = 1
    assert _core._snapshot_version_keys(d) == 0
    d.verify()


@pytest.fixture
def shared():
    d = mmstore.SharedDict(recurse=True)
    yield d
    d.close()
    d.unlink()


def _deep_copy(m):
    return {k: (_deep_copy(v) if isinstance(v, dict) else v) for k, v in m.items()}


_name = st.sampled_from(["a", "b", "c"])
_path = st.lists(_name, max_size=2)
_key = st.one_of(st.sampled_from(["a", "b", "c", "x", "y"]), st.integers(0, 5))
_value = st.one_of(st.integers(), st.text(max_size=10), st.binary(min_size=3_000, max_size=3_500), st.none())
_nested = st.recursive(st.dictionaries(_key, _value, max_size=3),
                       lambda inner: st.dictionaries(_key, inner, max_size=3), max_leaves=6)
_op = st.one_of(
    st.tuples(st.just("set"), _path, _key, _value),
    st.tuples(st.just("set_dict"), _path, _key, _nested),
    st.tuples(st.just("del"), _path, _key, st.none()),
    st.tuples(st.just("grow"), _path, st.integers(30, 200), st.none()),
    st.tuples(st.just("txn"), _path, _key, _value),
    st.tuples(st.just("clear"), _path, st.none(), st.none()),
    st.tuples(st.just("update_many"), st.just([]), _key, _nested),
    st.tuples(st.just("open"), st.just([]), st.none(), st.none()),
    st.tuples(st.just("close"), st.just([]), st.integers(0, 3), st.none()),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.dictionaries(_name, _nested, max_size=3), ops=st.lists(_op, max_size=16))
def test_nested_snapshots_equal_the_model_deep_copied_at_open(start, ops):
    d = mmstore.SharedDict(recurse=True)
    try:
        d.update(start)
        model = _deep_copy(start)
        snaps = []  # (snapshot, model at open)
        try:
            for kind, path, a, b in ops:
                at = _walk(model, d, path)
                if kind == "open":
                    s = d.snapshot()
                    s.__enter__()
                    snaps.append((s, _deep_copy(model)))
                elif kind == "close":
                    if snaps:
                        s, seen = snaps.pop(a % len(snaps))
                        _check(s, seen)
                        s.__exit__(None, None, None)
                elif at is None:
                    continue
                elif kind == "set":
                    at[1][a] = b
                    at[0][a] = b
                elif kind == "set_dict":
                    at[1][a] = b
                    at[0][a] = _deep_copy(b)
                elif kind == "del":
                    if a in at[0]:
                        del at[1][a]
                        del at[0][a]
                elif kind == "grow":
                    for i in range(a):
                        at[1][f"g{i}"] = i
                        at[0][f"g{i}"] = i
                elif kind == "txn":
                    with at[1].transaction() as t:
                        t[a] = b
                        t["t"] = [a]
                    at[0][a] = b
                    at[0]["t"] = [a]
                elif kind == "clear":
                    at[1].clear()
                    at[0].clear()
                elif kind == "update_many":
                    d.update_many({a: b})
                    model[a] = _deep_copy(b)
                for s, seen in snaps:
                    _check(s, seen)
        finally:
            for s, _ in snaps:
                s.__exit__(None, None, None)
        assert _plain(d) == model
        _assert_reclaimed(d)
    finally:
        d.close()
        d.unlink()


def test_a_nested_dict_deleted_after_the_instant_stays_readable(shared):
    d = shared
    d["a"] = {"big": "x" * 5_000, "deep": {"n": 1}}
    with d.snapshot() as s:
        a = s["a"]
        deep = a["deep"]
        del d["a"]
        d["a"] = {"big": "new"}
        for i in range(3_000):  # reuse the freed space
            d[f"fill{i}"] = "y" * (i % 100)
        assert a == {"big": "x" * 5_000, "deep": {"n": 1}}
        assert deep["n"] == 1 and s["a"]["deep"]["n"] == 1
        assert a.copy() == {"big": "x" * 5_000, "deep": {"n": 1}}
        assert _core._snapshot_version_keys(d) > 0
        d.verify()  # the kept nested dicts are counted reachable
    assert not a.active and not deep.active  # nested snapshots close with theirs
    with pytest.raises(mmstore.ClosedError):
        a["big"]
    _assert_reclaimed(d)
    assert d["a"] == {"big": "new"}


def test_nested_dict_snapshot_method(shared):
    d = shared
    d["cfg"] = {"x": 1, "sub": {"y": 2}}
    nd = d["cfg"]
    with nd.snapshot() as s:
        nd["x"] = 10
        nd["sub"]["y"] = 20
        nd["z"] = 3
        _check(s, {"x": 1, "sub": {"y": 2}})
    assert not s.active
    assert _plain(nd) == {"x": 10, "sub": {"y": 20}, "z": 3}
    stale = d["cfg"]
    del d["cfg"]
    with pytest.raises(KeyError):
        with stale.snapshot():
            pass
    d["after"] = 1
    d.verify()


_NESTED_WRITER = r"""
import sys, mmstore
d = mmstore.SharedDict(sys.argv[1], create=False, recurse=True)
print("ready", flush=True)
for i in range(int(sys.argv[2])):
    r = i % 5
    top = f"n{i % 20}"
    if r == 0:
        d[top]["k" + str(i)] = i                    # inserts: nested tables grow and are rebuilt
    elif r == 1:
        d[top]["sub"]["v"] = "w" * (i % 60)         # a nested dict of a nested dict, some values as records
    elif r == 2:
        d[top].pop("k" + str(i - 2), None)
    elif r == 3 and i % 15 == 3:
        d[top] = {"sub": {"v": -i}}                 # replaced whole
    elif r == 3:
        with d[top].transaction() as t:
            t["t"] = i
    else:
        if i % 40 == 4:
            del d[top]                              # deleted, then created again
            d[top] = {"sub": {"v": i}}
print("done", flush=True)
"""


def test_snapshot_sees_none_of_another_processes_10000_nested_changes(shared):
    d = shared
    model = {f"n{j}": {"sub": {"v": j}, "k": "x" * j} for j in range(20)}
    d.update(model)
    with d.snapshot() as s:
        w = subprocess.Popen([sys.executable, "-c", _NESTED_WRITER, d.name, "10000"], env=CHILD_ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert w.stdout.readline().strip() == "ready"
            rounds = 0
            while w.poll() is None or rounds == 0:
                j = rounds % 20
                assert s[f"n{j}"]["sub"]["v"] == j and s[f"n{j}"]["k"] == "x" * j
                assert "t" not in s[f"n{j}"]
                rounds += 1
            w.wait(timeout=HANG)
            assert w.returncode == 0, w.stderr.read()
            _check(s, model)
        finally:
            if w.poll() is None:
                w.kill()
            w.wait()
    assert _plain(d) != model
    _assert_reclaimed(d)


def test_nested_writer_killed_at_random_instants_while_a_snapshot_is_open():
    import random
    import signal
    import time

    d = mmstore.SharedDict(recurse=True)
    try:
        model = {f"n{j}": {"sub": {"v": j}, "k": "x" * j} for j in range(20)}
        d.update(model)
        rng = random.Random(11)
        with d.snapshot() as s:
            for _ in range(6):
                w = subprocess.Popen([sys.executable, "-c", _NESTED_WRITER, d.name, "1000000"], env=CHILD_ENV,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                try:
                    assert w.stdout.readline().strip() == "ready"
                    time.sleep(rng.uniform(0.01, 0.3))
                    w.send_signal(signal.SIGKILL)
                finally:
                    w.wait(timeout=HANG)
                d["probe"] = 1  # the next locker recovers a lock whose holder died (the version table too)
                _check(s, model)
        _assert_reclaimed(d)
    finally:
        d.close()
        d.unlink()
