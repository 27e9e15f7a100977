"""Transactions (``with d.transaction() as t:``) and ``get_many``: the "Must hold" list of issue 11.

* rollback: a hypothesis test against a dict model -- inserts, deletes, overwrites, nested dicts, large
  values, enough inserts to rebuild the table, savepoints -- where an exception restores every key and a
  clean end applies every change; ``t`` reads its own writes throughout;
* conservation with real processes: 4 writer processes do random transfers between 100 accounts in
  transactions, one of them SIGKILLed at random instants and restarted; 2 reader processes check with
  ``get_many`` (lock-free, one instant) that the total never changes. The same with plain ``with d.lock:``
  blocks lets the readers catch a violation (the test can fail);
* crash: SIGKILL inside a transaction leaves none of it; at random instants of a loop of transactions, each
  one is whole or absent after reopening, and ``verify()`` passes;
* the lock: other writers wait for the transaction; lock-free readers are never blocked by it.

Timeouts guard against hangs only; nothing here measures speed.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmstore
from conftest import CHILD_ENV

HANG = 120



def _plain(v):
    return v.copy() if isinstance(v, mmstore.NestedDict) else v


def _snapshot(d) -> dict:
    return {k: _plain(v) for k, v in d.items()}


# -- rollback and read-your-writes against a model -------------------------------------------------------------

_key = st.one_of(st.integers(0, 40), st.text(max_size=3))
_scalar = st.one_of(st.integers(), st.text(max_size=20), st.binary(min_size=5_000, max_size=9_000), st.none())
_nested = st.dictionaries(st.text(max_size=3), st.one_of(st.integers(), st.dictionaries(st.text(max_size=2), st.integers(), max_size=3)), max_size=4)
_op = st.one_of(
    st.tuples(st.just("set"), _key, _scalar),
    st.tuples(st.just("set"), _key, _nested),
    st.tuples(st.just("del"), _key, st.none()),
    st.tuples(st.just("grow"), st.integers(100, 400), st.none()),  # enough inserts to rebuild the table
    st.tuples(st.just("savepoint"), st.booleans(), st.none()),     # True: the inner block raises
    st.tuples(st.just("clear"), st.none(), st.none()),
)


class Boom(Exception):
    pass


def _apply(t, model, op):
    kind, a, b = op
    if kind == "set":
        t[a] = b
        model[a] = b
    elif kind == "del":
        if a in model:
            del t[a]
            del model[a]
        else:
            with pytest.raises(KeyError):
                del t[a]
    elif kind == "clear":
        t.clear()
        model.clear()
    elif kind == "grow":
        for i in range(a):
            t[f"g{i}"] = i
            model[f"g{i}"] = i


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.dictionaries(_key, _scalar, max_size=20), ops=st.lists(_op, max_size=12), fail=st.booleans())
def test_transaction_rolls_back_or_applies_everything(start, ops, fail):
    d = mmstore.SharedDict(recurse=True)
    try:
        d.update(start)
        before = _snapshot(d)
        model = dict(before)
        try:
            with d.transaction() as t:
                for op in ops:
                    if op[0] == "savepoint":
                        saved = dict(model)
                        try:
                            with t.transaction() as inner:
                                _apply(inner, model, ("set", "sp", [1, 2]))
                                _apply(inner, model, ("del", next(iter(model), "absent"), None))
                                if op[1]:
                                    raise Boom
                        except Boom:
                            model = saved
                    else:
                        _apply(t, model, op)
                    assert len(t) == len(model)
                    assert {k: _plain(v) for k, v in t.items()} == model  # reads its own writes
                    assert _snapshot(d) == before  # nobody else sees anything yet
                if fail:
                    raise Boom
        except Boom:
            assert _snapshot(d) == before
        else:
            assert _snapshot(d) == model
        d.verify()
    finally:
        d.close()
        d.unlink()


def test_file_dict_transaction_and_rollback(tmp_path):
    with mmstore.Dict(tmp_path / "d.mms") as d:
        d.update({"a": 1, "b": 2})
        with pytest.raises(Boom):
            with d.transaction() as t:
                t["a"] = "x" * 10_000
                del t["b"]
                t["c"] = 3
                raise Boom
        assert dict(d.items()) == {"a": 1, "b": 2}
        with d.transaction() as t:
            t["a"] = "x" * 10_000
            del t["b"]
            t["c"] = 3
        assert dict(d.items()) == {"a": "x" * 10_000, "c": 3}
        d.verify()
    with mmstore.Dict(tmp_path / "d.mms") as d:
        assert dict(d.items()) == {"a": "x" * 10_000, "c": 3}


def test_iteration_survives_transactions_that_only_overwrite_values_as_with_a_dict(tmp_path):
    """Like a dict (and like plain overwrites), changing values while iterating is allowed; changing the
    key set is not, whether by a plain write or a transaction."""
    model = {k: 0 for k in range(20)}
    with mmstore.Dict(tmp_path / "d.mms") as d:
        d.update(model)
        for k in d:
            with d.transaction() as t:
                t[k] += 1
                t[(k + 1) % 20] += 10
            model[k] += 1
            model[(k + 1) % 20] += 10
        assert dict(d.items()) == model
        for kind in ("insert", "erase"):
            with pytest.raises(RuntimeError, match="changed size during iteration"):
                for k in d:
                    with d.transaction() as t:
                        if kind == "insert":
                            t[f"new{k}"] = 1
                        else:
                            del t[k]


def test_transaction_pop_setdefault_popitem_behave_like_dict(tmp_path):
    with mmstore.Dict(tmp_path / "d.mms") as d:
        d.update({"a": 1, "b": 2})
        model = {"a": 1, "b": 2}
        with d.transaction() as t:
            assert t.pop("a") == model.pop("a")
            assert t.pop("missing", "dflt") == model.pop("missing", "dflt")
            assert t.pop("missing", None) is None
            with pytest.raises(KeyError):
                t.pop("missing")
            with pytest.raises(TypeError):
                t.pop("b", 1, 2)
            assert t.setdefault("c", 3) == model.setdefault("c", 3)
            assert t.setdefault("c", 4) == model.setdefault("c", 4)
            assert dict(t.items()) == model
        assert dict(d.items()) == model


def test_transaction_holds_the_lock_and_readers_are_not_blocked():
    d = mmstore.SharedDict()
    try:
        d["n"] = 1
        reader = subprocess.Popen(
            [sys.executable, "-c", "import mmstore, sys; d = mmstore.SharedDict(sys.argv[1], create=False); "
             "print(d['n'], d.get_many(['n'])[0]); d.lock.acquire(block=False)", d.name],
            env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with d.transaction() as t:
            t["n"] = 2
            out, err = reader.communicate(timeout=HANG)
        assert out.split() == ["1", "1"]
        assert "CannotAcquireLock" in err
        assert d["n"] == 2
    finally:
        d.close()
        d.unlink()


def test_transaction_is_over_after_its_block():
    d = mmstore.SharedDict()
    try:
        with d.transaction() as t:
            t["a"] = 1
        with pytest.raises(ValueError, match="transaction is over"):
            t["b"] = 2
        assert dict(d.items()) == {"a": 1}
    finally:
        d.close()
        d.unlink()


def test_more_writes_than_the_inline_write_set_commit_and_savepoints_roll_back_across_the_spill():
    # The C++ write set keeps 8 keys inline, then moves to a map (TableTxn::kInline): a savepoint taken
    # before the move and rolled back after it, and a commit of more than 8 keys.
    d = mmstore.SharedDict()
    try:
        d.update({i: i for i in range(20)})
        with d.transaction() as t:
            for i in range(5):
                t[i] = -i
            with pytest.raises(Boom):
                with t.transaction() as s:
                    for i in range(5, 30):
                        s[i] = "x"
                    del s[0]
                    assert len(s) == 29 and 0 not in s and s[29] == "x"
                    raise Boom
            assert len(t) == 20 and t[0] == 0 and t[4] == -4 and t[5] == 5 and 25 not in t
            for i in range(10, 22):
                t[i] = i * 10
            del t[1]
        assert dict(d.items()) == {**{i: -i for i in range(5) if i != 1}, **{i: i for i in range(5, 10)},
                                   **{i: i * 10 for i in range(10, 22)}}
        with pytest.raises(Boom):
            with d.transaction() as t:
                for i in range(40):
                    t[i] = None
                raise Boom
        assert d[2] == -2 and 30 not in d
    finally:
        d.close()
        d.unlink()


def test_item_access_through_t_keeps_the_mapping_protocol():
    d = mmstore.SharedDict()
    try:
        d[(1, 2)] = "t"
        t = d.transaction()
        with pytest.raises(RuntimeError, match="inside its `with` block"):
            t["a"]
        with t as same:
            assert same is t and isinstance(t, mmstore.Transaction)
            assert t[(1, 2)] == "t" and (1, 2) in t and t.get((1, 2)) == "t" and t.get("nope", 7) == 7
            with pytest.raises(KeyError) as e:
                t[(3, 4)]
            assert e.value.args == ((3, 4),)  # the tuple key is not unpacked into KeyError's args
            with pytest.raises(KeyError) as e:
                del t[(5, 6)]
            assert e.value.args == ((5, 6),)
            with pytest.raises(TypeError):
                t.get()
            with pytest.raises(TypeError):
                t[[1]] = 1  # an unhashable key, as for the dict itself
            t["n"] = None
            assert t["n"] is None and len(t) == 2
        assert d["n"] is None
        with pytest.raises(TypeError):
            mmstore._core._new_transaction(dict, d, 0, 0)  # d.transaction()'s constructor checks its class
    finally:
        d.close()
        d.unlink()


# -- conservation with real processes --------------------------------------------------------------------------

ACCOUNTS = 100
START = 1_000

_WRITER = r"""
import random, sys, mmstore
name, mode, count, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
d = mmstore.SharedDict(name, create=False)
rng = random.Random(seed)
for i in range(count):
    a, b = rng.randrange(100), rng.randrange(100)
    x = rng.randrange(1, 50)
    if mode == "txn":
        with d.transaction() as t:
            t[a] -= x
            t[b] += x
    else:
        with d.lock:
            d[a] -= x
            d[b] += x
    if i % 500 == 0 and d.get("stop"):
        break
print("done", flush=True)
"""

_READER = r"""
import sys, mmstore
name, total = sys.argv[1], int(sys.argv[2])
d = mmstore.SharedDict(name, create=False)
keys = list(range(100))
checks = bad = 0
while not d.get("stop"):
    s = sum(d.get_many(keys))
    checks += 1
    if s != total:
        bad += 1
        if d.get("catch"):
            d["stop"] = 1
print(checks, bad, flush=True)
"""


def _start(script, *args):
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=CHILD_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_transfers(mode: str, transfers: int, kill: bool):
    """4 writers, 2 readers; returns [(checks, bad)] of the readers."""
    d = mmstore.SharedDict()
    readers, writers = [], []
    try:
        d.update({i: START for i in range(ACCOUNTS)})
        d["catch"] = mode == "lock"
        readers = [_start(_READER, d.name, ACCOUNTS * START) for _ in range(2)]
        writers = [_start(_WRITER, d.name, mode, transfers, s) for s in range(4)]
        rng = random.Random(11)
        kills = 0
        deadline = time.monotonic() + HANG
        if kill:
            # Kill writer 0 at random instants and restart it, until the other writers are done.
            while any(w.poll() is None for w in writers[1:]) and time.monotonic() < deadline:
                time.sleep(rng.uniform(0.01, 0.1))
                if writers[0].poll() is None:
                    writers[0].send_signal(signal.SIGKILL)
                    writers[0].wait()
                    kills += 1
                writers[0] = _start(_WRITER, d.name, mode, transfers, 100 + kills)
        for w in writers:
            w.wait(timeout=HANG)
        d["stop"] = 1
        results = []
        for r in readers:
            out, err = r.communicate(timeout=HANG)
            assert r.returncode == 0, err
            results.append(tuple(map(int, out.split())))
        if kill:
            assert kills > 0
        if mode == "txn":
            assert sum(d.get_many(range(ACCOUNTS))) == ACCOUNTS * START
            d.verify()
        return results
    finally:
        for p in readers + writers:
            if p.poll() is None:
                p.kill()
                p.wait()
        d.close()
        d.unlink()


def test_transfers_in_transactions_conserve_the_total_despite_kills():
    results = _run_transfers("txn", 4_000, kill=True)
    assert all(checks > 0 for checks, _ in results)
    assert [bad for _, bad in results] == [0, 0]


def test_transfers_under_the_lock_alone_are_seen_half_done():
    # Plain `with d.lock:` blocks: readers take no lock, so they can see a transfer half done. The writers
    # run until a reader has caught one (so the test that passes above is one that can fail).
    results = _run_transfers("lock", 10**9, kill=False)
    assert sum(bad for _, bad in results) > 0


# -- crash -----------------------------------------------------------------------------------------------------

_KILLED_INSIDE = r"""
import sys, time, mmstore
d = mmstore.Dict(sys.argv[1])
with d.transaction() as t:
    t["a"] = 2
    t["new"] = "x" * 10_000
    del t["b"]
    print("inside", flush=True)
    time.sleep(60)
"""

_TXN_LOOP = r"""
import random, sys, mmstore
d = mmstore.Dict(sys.argv[1])
rng = random.Random(int(sys.argv[2]))
n = d.get("n", 0)
while True:
    with d.transaction() as t:
        a, b, x = rng.randrange(10), rng.randrange(10), rng.randrange(1, 9)
        t[a] -= x
        t[b] += x
        t[("k", n)] = "v" * (5_000 if n % 5 == 0 else 10)  # inserts, records and table rebuilds
        if n >= 30:
            del t[("k", n - 30)]
        n += 1
        t["n"] = n
    if n == d.get("n0", 0) + 50:
        print("going", flush=True)
"""


def test_kill_inside_a_transaction_leaves_none_of_it(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d.update({"a": 1, "b": 1})
    p = _start(_KILLED_INSIDE, path)
    assert p.stdout.readline() == "inside\n"
    p.send_signal(signal.SIGKILL)
    p.wait()
    with mmstore.Dict(path) as d:
        d.verify()
        assert dict(d.items()) == {"a": 1, "b": 1}


def test_kill_at_random_instants_leaves_each_transaction_whole_or_absent(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d.update({i: 100 for i in range(10)})
    rng = random.Random(12)
    for round_ in range(12):
        with mmstore.Dict(path) as d:
            d["n0"] = d.get("n", 0)
        p = _start(_TXN_LOOP, path, round_)
        assert p.stdout.readline() == "going\n", p.stderr.read()
        time.sleep(rng.uniform(0, 0.05))
        p.send_signal(signal.SIGKILL)
        p.wait()
        with mmstore.Dict(path) as d:
            d.verify()
            assert sum(d[i] for i in range(10)) == 1_000, round_
            n = d["n"]
            churn = sorted(k[1] for k in d.keys() if isinstance(k, tuple))
            assert churn == list(range(max(0, n - 30), n)), round_  # the last transaction whole or absent


def test_an_abandoned_transaction_rolls_back_and_releases_the_lock():
    d = mmstore.SharedDict()
    try:
        t = d.transaction()
        t.__enter__()  # never exited: dropping it rolls back and releases the lock
        t["a"] = 1
        del t
        import gc

        gc.collect()
        assert "a" not in d
        with d.transaction() as t2:  # a new outermost transaction, not a savepoint of the dropped one
            t2["b"] = 2
        assert dict(d.items()) == {"b": 2}
        out = subprocess.run([sys.executable, "-c", "import mmstore, sys; d = mmstore.SharedDict(sys.argv[1], create=False); "
                              "print(d.lock.acquire(block=False))", d.name],
                             env=CHILD_ENV, capture_output=True, text=True, timeout=HANG)
        assert out.stdout.split() == ["True"], out.stderr
    finally:
        d.close()
        d.unlink()


_STOPPED_INSIDE = r"""
import os, signal, sys, mmstore
d = mmstore.SharedDict(sys.argv[1], create=False)
with d.transaction() as t:
    t["a"] = 2
    t["b"] = 2
    os.kill(os.getpid(), signal.SIGSTOP)  # stopped holding the lock, inside the block
"""


def test_a_writer_stopped_inside_a_transaction_blocks_no_reader():
    d = mmstore.SharedDict()
    p = None
    try:
        d.update({"a": 1, "b": 1})
        p = _start(_STOPPED_INSIDE, d.name)
        deadline = time.monotonic() + HANG
        while d.lock.locked() is False and time.monotonic() < deadline:  # until the child holds the lock
            time.sleep(0.01)
        while os.waitpid(p.pid, os.WUNTRACED | os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.01)  # until it is stopped
        assert d["a"] == 1 and d.get_many(["a", "b"]) == [1, 1] and len(d) == 2
        with pytest.raises(mmstore.CannotAcquireLock):
            d.lock.acquire(block=False)
        p.send_signal(signal.SIGCONT)
        assert p.wait(timeout=HANG) == 0
        assert d.get_many(["a", "b"]) == [2, 2]
    finally:
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
        d.close()
        d.unlink()
