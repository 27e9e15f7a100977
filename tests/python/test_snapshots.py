"""Snapshots (``with d.snapshot() as s:``): issue 11's "Snapshots are isolated" and the reclaim rules.

* a hypothesis test against a dict model: random writes (inserts, overwrites, deletes, large values,
  enough inserts to rebuild the table, update_many, clear, transactions) with snapshots opened and closed
  among them; each open snapshot equals the model as copied when it opened, by every read of the mapping API;
* real processes: a snapshot opened before another process's 10,000 changes (the table grows and is
  rebuilt) sees none of them while it stays open, and iterating it gives exactly that instant's items;
* a snapshot open before a writer is stopped with SIGSTOP keeps reading;
* reclaim: the version records go with the first write after the last close, and after the process holding
  a snapshot was SIGKILLed;
* crash: a writer SIGKILLed at random instants while a snapshot is open leaves the store openable, verify()
  passing, and the snapshot unchanged.

Timeouts guard against hangs only; nothing here measures speed.
"""

from __future__ import annotations

import os
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


def _check(s, model):
    assert len(s) == len(model)
    assert dict(s.items()) == model
    assert sorted(s, key=repr) == sorted(model, key=repr)
    assert sorted(s.keys(), key=repr) == sorted(model, key=repr)
    assert sorted(s.values(), key=repr) == sorted(model.values(), key=repr)
    for k, v in model.items():
        assert k in s
        assert s[k] == v
        assert s.get(k) == v


# -- against a model -------------------------------------------------------------------------------------------

_key = st.one_of(st.integers(0, 30), st.text(max_size=2))
_value = st.one_of(st.integers(), st.text(max_size=12), st.binary(min_size=5_000, max_size=6_000), st.none())
_op = st.one_of(
    st.tuples(st.just("set"), _key, _value),
    st.tuples(st.just("del"), _key, st.none()),
    st.tuples(st.just("grow"), st.integers(50, 300), st.none()),
    st.tuples(st.just("update_many"), st.dictionaries(_key, _value, max_size=5), st.none()),
    st.tuples(st.just("txn"), st.dictionaries(_key, _value, max_size=5), _key),
    st.tuples(st.just("clear"), st.none(), st.none()),
    st.tuples(st.just("open"), st.none(), st.none()),
    st.tuples(st.just("close"), st.integers(0, 3), st.none()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(start=st.dictionaries(_key, _value, max_size=20), ops=st.lists(_op, max_size=14))
def test_snapshot_equals_the_model_copied_at_open(tmp_path, start, ops):
    path = tmp_path / f"m{uuid.uuid4().hex}.mms"
    with mmstore.Dict(path) as d:
        d.update(start)
        model = dict(start)
        snaps = []  # (snapshot, model at open)
        try:
            for kind, a, b in ops:
                if kind == "set":
                    d[a] = b
                    model[a] = b
                elif kind == "del":
                    if a in model:
                        del d[a]
                        del model[a]
                elif kind == "grow":
                    for i in range(a):
                        d[f"g{i}"] = i
                        model[f"g{i}"] = i
                elif kind == "update_many":
                    d.update_many(a)
                    model.update(a)
                elif kind == "txn":
                    with d.transaction() as t:
                        for k, v in a.items():
                            t[k] = v
                        if b in t:
                            del t[b]
                    model.update(a)
                    model.pop(b, None)
                elif kind == "clear":
                    d.clear()
                    model.clear()
                elif kind == "open":
                    s = d.snapshot()
                    s.__enter__()
                    snaps.append((s, dict(model)))
                elif kind == "close" and snaps:
                    s, seen = snaps.pop(a % len(snaps))
                    _check(s, seen)
                    s.__exit__(None, None, None)
                for s, seen in snaps:
                    _check(s, seen)
        finally:
            for s, _ in snaps:
                s.__exit__(None, None, None)
        d["after"] = 1  # the first write after the last close frees the records
        assert _core._snapshot_version_keys(d) == 0
        d.verify()


def test_snapshot_api(tmp_path):
    with mmstore.Dict(tmp_path / "a.mms") as d:
        d.update({"a": 1, "b": "x" * 100})
        s = d.snapshot()
        with pytest.raises(RuntimeError):
            s["a"]
        with s:
            d["a"] = 2
            del d["b"]
            d["c"] = 3
            assert s["a"] == 1 and s["b"] == "x" * 100
            with pytest.raises(KeyError):
                s["c"]
            assert s.get("c", "dflt") == "dflt"
            assert "c" not in s and "b" in s
            assert s == {"a": 1, "b": "x" * 100}
            assert isinstance(s, mmstore.Snapshot)
            assert s.version >= 0
        with pytest.raises(mmstore.ClosedError):
            s["a"]
        assert dict(d.items()) == {"a": 2, "c": 3}
        with d.snapshot() as s2:
            with pytest.raises(mmstore.StoreLockedError):
                d.compact()  # it would replace the store the snapshot reads
            assert s2["a"] == 2
            d.close()
            with pytest.raises(mmstore.ClosedError):
                s2["a"]


def test_snapshot_item_protocol_errors_match_dict(tmp_path):
    # s[k], `k in s` and s.get are native slots (as on Dict): the errors must be Dict's, not a binding's.
    with mmstore.Dict(tmp_path / "e.mms") as d:
        d.update({(1, 2): "t", "a": 1})
        with d.snapshot() as s:
            with pytest.raises(KeyError) as e:
                s[(3, 4)]
            assert e.value.args == ((3, 4),)  # a tuple key is not unpacked into KeyError's args
            with pytest.raises(KeyError) as e:
                s["missing"]
            assert e.value.args == ("missing",)
            assert s[(1, 2)] == "t" and (1, 2) in s and (3, 4) not in s
            for bad in ([1], {"x": 1}, {1}):
                with pytest.raises(TypeError):
                    d[bad]
                with pytest.raises(TypeError):
                    s[bad]
                with pytest.raises(TypeError):
                    bad in s
                with pytest.raises(TypeError):
                    s.get(bad)
            assert s.get("missing") is None and s.get("missing", 7) == 7 and s.get("a", 7) == 1
            with pytest.raises(TypeError):
                s.get()
            with pytest.raises(TypeError):
                s.get("a", 1, 2)
            assert len(s) == 2
        for op in (lambda: s["a"], lambda: "a" in s, lambda: s.get("a"), lambda: len(s)):
            with pytest.raises(mmstore.ClosedError, match="snapshot is closed"):
                op()
        fresh = d.snapshot()
        for op in (lambda: fresh["a"], lambda: "a" in fresh, lambda: fresh.get("a"), lambda: len(fresh)):
            with pytest.raises(RuntimeError, match="inside its `with` block"):
                op()
    raw = _core._Snapshot.__new__(_core._Snapshot)  # never initialized: an error, not a crash
    for op in (lambda: raw["a"], lambda: "a" in raw, lambda: raw.get("a"), lambda: len(raw)):
        with pytest.raises(RuntimeError, match="not initialized"):
            op()


def test_snapshot_reads_switch_from_live_to_chains_at_the_first_write(tmp_path):
    # With nothing written since the snapshot opened, reads answer from the live table; the first write
    # creates the version records, and from then on every key (written or not) still reads the instant.
    with mmstore.Dict(tmp_path / "f.mms") as d:
        d.update({i: "v" * (i % 20) for i in range(200)})
        with d.snapshot() as s:
            assert _core._snapshot_version_keys(d) == 0
            assert [s[i] for i in range(200)] == ["v" * (i % 20) for i in range(200)]
            d[5] = "new"
            del d[6]
            d[1000] = 1
            assert _core._snapshot_version_keys(d) == 3
            assert [s[i] for i in range(200)] == ["v" * (i % 20) for i in range(200)]
            assert s.get(1000, "absent") == "absent" and 1000 not in s and 6 in s
            with pytest.raises(KeyError):
                s[1000]


def test_shared_dict_snapshot():
    d = mmstore.SharedDict()
    try:
        d.update({i: i for i in range(100)})
        with d.snapshot() as s:
            for i in range(100):
                d[i] = -i
            d.update_many({i: 0 for i in range(100, 2000)})
            _check(s, {i: i for i in range(100)})
    finally:
        d.close()
        d.unlink()


# -- real processes --------------------------------------------------------------------------------------------

_WRITER = r"""
import sys, mmstore
d = mmstore.Dict(sys.argv[1])
print("ready", flush=True)
n = int(sys.argv[2])
for i in range(n):
    r = i % 4
    if r == 0:
        d[f"new{i}"] = i                     # inserts: the table grows and is rebuilt
    elif r == 1:
        d[f"k{i % 1000}"] = "w" * (i % 50)   # overwrites, some as records
    elif r == 2:
        d.pop(f"k{(i * 7) % 1000}", None)     # deletes
    else:
        with d.transaction() as t:
            t[f"k{(i * 3) % 1000}"] = -i
            t[f"t{i}"] = i
print("done", flush=True)
if len(sys.argv) > 3:
    import time
    time.sleep(600)
"""


def test_snapshot_sees_none_of_another_processes_10000_changes(tmp_path):
    path = tmp_path / "iso.mms"
    with mmstore.Dict(path) as d:
        model = {f"k{i}": i for i in range(1000)}
        d.update(model)
        cap0 = d.stats()["capacity"] if isinstance(d.stats(), dict) else None
        with d.snapshot() as s:
            w = _start(_WRITER, path, 10_000)
            try:
                assert w.stdout.readline().strip() == "ready"
                rounds = 0
                while w.poll() is None or rounds == 0:  # read all through the writer's run, at least once
                    for k in random.sample(sorted(model), 50):
                        assert s[k] == model[k]
                    assert "new0" not in s
                    rounds += 1
                w.wait(timeout=HANG)
                assert w.returncode == 0, w.stderr.read()
                _check(s, model)  # iteration: exactly the instant's items
            finally:
                if w.poll() is None:
                    w.kill()
                w.wait()
        assert d["new9996"] == 9996 and len(d) != len(model)
        if cap0 is not None:
            assert d.stats()["capacity"] > cap0
        d.verify()


def test_a_stopped_writer_does_not_stop_an_open_snapshot(tmp_path):
    path = tmp_path / "stop.mms"
    with mmstore.Dict(path) as d:
        d.update({i: i for i in range(200)})
        with d.snapshot() as s:
            w = _start(_WRITER.replace('print("done", flush=True)', ""), path, 10**9)
            try:
                assert w.stdout.readline().strip() == "ready"
                while _core._snapshot_version_keys(d) == 0:  # until the writer changed something
                    pass
                os.kill(w.pid, signal.SIGSTOP)
                _check(s, {i: i for i in range(200)})
            finally:
                w.kill()
                w.wait()


_HOLDER = r"""
import sys, time, mmstore
d = mmstore.Dict(sys.argv[1])
s = d.snapshot()
s.__enter__()
print("ready", flush=True)
time.sleep(600)
"""


def test_records_are_freed_after_close_and_after_a_killed_holder(tmp_path):
    path = tmp_path / "rec.mms"
    with mmstore.Dict(path) as d:
        d.update({i: i for i in range(100)})
        with d.snapshot() as s:
            for i in range(50):
                d[i] = -i
            assert _core._snapshot_version_keys(d) == 50
            assert s[7] == 7
        d[0] = 0
        assert _core._snapshot_version_keys(d) == 0

        h = _start(_HOLDER, path)
        try:
            assert h.stdout.readline().strip() == "ready"
            for i in range(20):
                d[i] = i * 10
            assert _core._snapshot_version_keys(d) == 20  # kept for the holder
        finally:
            h.send_signal(signal.SIGKILL)
            h.wait()
        with d.snapshot():  # opening frees the dead holder's slot
            pass
        d[1] = 1
        assert _core._snapshot_version_keys(d) == 0
        d.verify()


def test_writer_killed_while_a_snapshot_is_open(tmp_path):
    path = tmp_path / "crash.mms"
    rng = random.Random(11)
    with mmstore.Dict(path) as d:
        model = {f"k{i}": i for i in range(1000)}
        d.update(model)
        with d.snapshot() as s:
            kills = 0
            while kills < 3:
                w = _start(_WRITER, path, 10**9)
                assert w.stdout.readline().strip() == "ready"
                before = _core._snapshot_version_keys(d)
                # Kill at a random moment after the writer changed something.
                while _core._snapshot_version_keys(d) <= before + rng.randrange(1, 200):
                    if w.poll() is not None:
                        break
                w.send_signal(signal.SIGKILL)
                w.wait()
                kills += 1
                d["probe"] = kills  # the next writer recovers the dead writer's lock
                d.verify()
                for k in rng.sample(sorted(model), 100):
                    assert s[k] == model[k]
            _check(s, model)
    with mmstore.Dict(path) as d:
        d.verify()
        assert d["probe"] == 3


# -- iteration that meets a write ----------------------------------------------------------------------------
#
# iter(s) walks the live table while nothing was written since the snapshot opened, noting the keys it hands
# out; the first entry read after a write makes it finish from the instant's items, minus those keys
# (python/bindings/snapshot.cpp). Writes between two steps of the walk must leave it exactly the instant's.

_ikey = st.one_of(st.integers(-(2**40), 2**40), st.text(max_size=3), st.text(min_size=9, max_size=14))
_iop = st.one_of(
    st.tuples(st.just("set"), _ikey, st.integers()),
    st.tuples(st.just("del"), st.integers(0, 1_000)),   # the i-th key of the instant, if any
    st.tuples(st.just("grow"), st.integers(1, 400)),     # enough new keys to rebuild the table
    st.tuples(st.just("clear"), st.none()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.dictionaries(_ikey, st.integers(), max_size=120), step=st.integers(0, 130),
       ops=st.lists(_iop, max_size=6), view=st.sampled_from(["iter", "keys", "values", "items"]))
def test_iterating_a_snapshot_across_writes_gives_the_instant(tmp_path, model, step, ops, view):
    path = tmp_path / f"it-{uuid.uuid4().hex}.mmd"
    with mmstore.Dict(path) as d:
        d.update(model)
        keys = list(model)
        with d.snapshot() as s:
            it = iter(s) if view == "iter" else s._iter({"keys": 0, "values": 1, "items": 2}[view])
            got = [x for _, x in zip(range(step), it)]
            for op, a, *rest in ops:
                if op == "set":
                    d[a] = rest[0]
                elif op == "del" and keys:
                    d.pop(keys[a % len(keys)], None)
                elif op == "grow":
                    d.update((f"new-{i}-{uuid.uuid4().hex[:6]}", i) for i in range(a))
                elif op == "clear":
                    d.clear()
            got += list(it)
            want = {"iter": list(model), "keys": list(model), "values": list(model.values()),
                    "items": list(model.items())}[view]
            assert sorted(got, key=repr) == sorted(want, key=repr)


def test_snapshot_iteration_with_no_write_is_in_insertion_order(tmp_path):
    with mmstore.Dict(tmp_path / "o.mmd") as d:
        d.update((k, i) for i, k in enumerate([5, "b", 2**40, "a-long-key-here", -3]))
        del d["b"]
        d["b"] = 9
        with d.snapshot() as s:
            assert list(s) == [5, 2**40, "a-long-key-here", -3, "b"] == list(d)
            assert list(s._iter(2)) == list(d.items())


def test_snapshot_iterators_refuse_a_closed_snapshot_and_bad_kinds(tmp_path):
    with mmstore.Dict(tmp_path / "c.mmd") as d:
        d.update({1: 1, "a": "b"})
        with d.snapshot() as s:
            it = iter(s)
            assert next(it) == 1
            with pytest.raises(TypeError):
                s._iter("keys")
            with pytest.raises(ValueError, match="kind must be"):
                s._iter(3)
        with pytest.raises(mmstore.ClosedError):
            next(it)
        with pytest.raises(mmstore.ClosedError):
            iter(s)
