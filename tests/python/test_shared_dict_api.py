"""mmstore.SharedDict in one process (and a few children): the dict protocol against a model, the lock's
rules, atomic updates, nested tables, lifetime, pickling and fork. The cross-process guarantees (exact
counts, readers never seeing half states, dead and stopped holders) are in test_shared_dict_processes.py."""

import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmstore
from mmstore import SharedDict

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def _name(tag: str) -> str:
    return f"t{os.getpid()}_{tag}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def name():
    n = _name("api")
    yield n
    try:
        SharedDict.unlink_by_name(n)
    except mmstore.NotFound:
        pass


def _exists(n: str) -> bool:
    return os.path.exists(f"/dev/shm/mmstore.{n}")


# -- the dict protocol against a model -----------------------------------------------------------------------

keys = st.one_of(st.integers(-5, 40), st.text(max_size=12))
values = st.one_of(st.integers(), st.text(max_size=40), st.none(), st.tuples(st.integers(), st.text(max_size=5)))
ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys, values),
        st.tuples(st.just("del"), keys, st.none()),
        st.tuples(st.just("pop"), keys, values),
        st.tuples(st.just("setdefault"), keys, values),
        st.tuples(st.just("increment"), keys, st.integers(-1000, 1000)),
        st.tuples(st.just("cas"), keys, values),
        st.tuples(st.just("update_many"), st.dictionaries(keys, values, max_size=5), st.none()),
        st.tuples(st.just("popitem"), st.none(), st.none()),
        st.tuples(st.just("clear"), st.none(), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_behaves_like_a_dict_and_a_second_handle_sees_the_same(name, program):
    d = SharedDict(name, create=None)
    other = SharedDict(name, create=False)
    d.clear()
    model = {}
    try:
        for op, a, b in program:
            if op == "set":
                d[a] = b
                model[a] = b
            elif op == "del":
                if a in model:
                    del d[a]
                    del model[a]
                else:
                    with pytest.raises(KeyError):
                        del d[a]
            elif op == "pop":
                assert d.pop(a, b) == model.pop(a, b)
            elif op == "setdefault":
                assert d.setdefault(a, b) == model.setdefault(a, b)
            elif op == "increment":
                if isinstance(model.get(a, 0), int) and not isinstance(model.get(a, 0), bool):
                    model[a] = model.get(a, 0) + b
                    assert d.increment(a, b) == model[a]
                else:
                    with pytest.raises(TypeError):
                        d.increment(a, b)
            elif op == "cas":
                expected = model.get(a)
                if a in model:
                    assert d.compare_and_set(a, expected, b) is True
                    model[a] = b
                    assert d.compare_and_set(a, object(), "never") is False
                else:
                    assert d.compare_and_set(a, None, b) is False
            elif op == "update_many":
                d.update_many(a)
                model.update(a)
            elif op == "popitem":
                if model:
                    assert d.popitem() == model.popitem()
                else:
                    with pytest.raises(KeyError):
                        d.popitem()
            elif op == "clear":
                d.clear()
                model.clear()
            assert len(d) == len(model)
        assert dict(other.items()) == model
        assert list(other.keys()) == list(model.keys())
        other.verify()
    finally:
        other.close()
        d.close()


def test_increment_defaults_and_number_types(name):
    with SharedDict(name) as d:
        assert d.increment("a") == 1
        assert d.increment("a", 10) == 11
        assert d.increment("f", 0.5, 1.0) == 1.5
        assert d.increment("big", 2**70) == 2**70
        assert d.increment("neg", -(2**40), 5) == 5 - 2**40
        d["s"] = "x"
        with pytest.raises(TypeError):
            d.increment("s")
        assert d["s"] == "x"  # a failed increment changes nothing


# -- the lock ------------------------------------------------------------------------------------------------


def test_lock_is_recursive_and_release_checks_the_owner(name):
    with SharedDict(name) as d:
        assert not d.lock.locked()
        with d.lock:
            with d.lock:  # recursive
                d["x"] = 1  # a single operation re-enters too
                assert d.lock.owned() and d.lock.holder_pid() == os.getpid()
            assert d.lock.owned()
        assert not d.lock.locked() and not d.lock.owned()
        with pytest.raises(RuntimeError):
            d.lock.release()
        assert d.lock.acquire() is True
        d.lock.release()
        with pytest.raises(ValueError):
            d.lock.acquire(block=False, timeout=1)


def test_lock_held_by_another_thread_refuses_and_times_out(name):
    with SharedDict(name) as d:
        held, done = threading.Event(), threading.Event()

        def holder():
            with d.lock:
                held.set()
                done.wait(30)

        t = threading.Thread(target=holder)
        t.start()
        try:
            assert held.wait(30)
            with pytest.raises(mmstore.CannotAcquireLock) as info:
                d.lock.acquire(block=False)
            assert info.value.blocking_pid == os.getpid()
            with pytest.raises(mmstore.CannotAcquireLockTimeout) as info:
                d.lock.acquire(timeout=0.05)
            assert isinstance(info.value, mmstore.CannotAcquireLock)
            assert d.get("nothing") is None  # reads never wait
        finally:
            done.set()
            t.join()
        with d.lock:
            pass


def test_threads_contending_for_the_lock_lose_no_update(name):
    # A thread waiting for the lock lets go of the GIL, so the holder (which needs it) always finishes.
    with SharedDict(name) as d:
        d["n"] = 0

        def work():
            for _ in range(2000):
                with d.lock:
                    v = d["n"]
                    time.sleep(0) if v % 97 == 0 else None
                    d["n"] = v + 1

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert d["n"] == 8000


def test_close_while_holding_the_lock_is_refused(name):
    d = SharedDict(name)
    d.lock.acquire()
    with pytest.raises(ValueError, match="holds the store's lock"):
        d.close()
    d.lock.release()
    d.close()
    assert d.closed


def test_file_stores_have_the_same_lock_and_atomic_updates(tmp_path):
    with mmstore.Dict(tmp_path / "d.mms") as d:
        with d.lock:
            d["n"] = d.get("n", 0) + 1
        assert d.increment("n") == 2
        assert d.compare_and_set("n", 2, 3) and d["n"] == 3
    with mmstore.List(tmp_path / "l.mms") as lst, lst.lock:
        lst.append(1)
    with mmstore.Dict(tmp_path / "d.mms", readonly=True) as r:
        with pytest.raises(mmstore.ReadOnlyError):
            r.lock.acquire()


# -- update_many: all or nothing, also for lock-free readers -------------------------------------------------

BATCH_READER = r"""
import sys, mmstore
d = mmstore.SharedDict(sys.argv[1], create=False)
print("ready", flush=True)
seen, last, reads = 0, -1, 0
while d.get("stop") is None:
    a = d["a"]
    b = d["b"]  # read after a: a batch {a: i, b: i} seen whole means b >= a, never b < a
    if b < a:
        print("torn", a, b)
        sys.exit(1)
    seen += a != last
    last = a
    reads += 1
    if reads % 64 == 0:
        d["seen"] = seen  # how many batches this reader checked while the writer wrote them
print("ok")
"""


def test_update_many_is_seen_whole_by_lock_free_readers(name):
    with SharedDict(name) as d:
        d.update_many({"a": 0, "b": 0})
        reader = subprocess.Popen([sys.executable, "-c", BATCH_READER, name], stdout=subprocess.PIPE, text=True, env=ENV)
        try:
            assert reader.stdout.readline().strip() == "ready"
            # Until the reader has checked 200 different batches, however slowly a loaded machine runs it
            # (a fixed duration could end before the reader was ever scheduled).
            i, deadline = 0, time.monotonic() + 120
            while d.get("seen", 0) < 200 and time.monotonic() < deadline:
                i += 1
                d.update_many({"a": i, "b": i, f"k{i % 500}": "x" * (i % 300)})
            d["stop"] = 1
            assert d.get("seen", 0) >= 200, f"the reader checked {d.get('seen', 0)} batches in 120 s"
            out, _ = reader.communicate(timeout=60)
        finally:
            if reader.poll() is None:
                reader.kill()
        assert reader.returncode == 0, out
        assert out.strip() == "ok"


# -- change notification -------------------------------------------------------------------------------------


def test_wait_for_change_times_out_quietly_and_wakes_on_a_write(name):
    with SharedDict(name) as d:
        assert d.wait_for_change(timeout=0.02) is False
        timer = threading.Timer(0.05, lambda: d.__setitem__("k", 1))
        timer.start()
        assert d.wait_for_change(timeout=30) is True
        timer.join()


# -- nested tables ---------------------------------------------------------------------------------------------


def test_nested_dicts_are_live_views_shared_by_every_handle(name):
    with SharedDict(name, recurse=True) as d, SharedDict(name) as other:
        d["a"] = {"b": 1, "c": {"d": [1, 2]}}
        view = other["a"]
        assert isinstance(view, mmstore.NestedDict)
        d["a"]["b"] += 1
        assert view["b"] == 2 and view["c"]["d"] == [1, 2]
        assert view.increment("b", 5) == 7
        view["new"] = "x"
        assert d["a"].copy() == {"b": 7, "c": {"d": [1, 2]}, "new": "x"}
        assert d.copy() == {"a": {"b": 7, "c": {"d": [1, 2]}, "new": "x"}}
        del d["a"]["new"]
        assert "new" not in view and len(view) == 2
        d.update_many([("u", {"v": {"w": 1}}), ("plain", 3)])  # update_many nests dict values too
        assert isinstance(other["u"]["v"], mmstore.NestedDict) and other["u"]["v"]["w"] == 1
        assert d.pop("a") == {"b": 7, "c": {"d": [1, 2]}}  # popped as a plain dict
        with pytest.raises(KeyError, match="no longer exists"):
            view["b"]
        d.verify()


def test_without_recurse_dicts_are_stored_by_value(name):
    with SharedDict(name) as d:
        d["a"] = {"b": 1}
        v = d["a"]
        assert type(v) is dict
        v["b"] = 2
        assert d["a"] == {"b": 1}


def test_replacing_a_nested_dict_frees_its_space(name):
    with SharedDict(name, recurse=True) as d:
        d["a"] = {"x": {"y": "v" * 1000}}
        d["a"] = {"x": {"y": "v" * 1000}}
        top = d.stats()["arena_top"]
        for i in range(2000):
            d["a"] = {"x": {"y": "v" * 1000, "i": i}, "z": list(range(20))}
        assert d.stats()["arena_top"] <= top + 64 * 1024  # reused, not leaked (UltraDict leaks 2 segments each)
        assert d["a"]["x"]["i"] == 1999
        d.verify()


NESTED_WRITER = r"""
import sys, mmstore
d = mmstore.SharedDict(sys.argv[1], create=False, recurse=True)
print("go", flush=True)
i = 0
while True:
    d[f"k{i % 50}"] = {"i": i, "inner": {"s": "x" * (i % 400), "l": list(range(i % 30))}}
    d[f"k{i % 50}"]["i"] = -i
    i += 1
"""


def test_a_writer_killed_amid_nested_replacements_leaves_a_consistent_store(name):
    d = SharedDict(name, recurse=True)
    try:
        for round_ in range(4):
            p = subprocess.Popen([sys.executable, "-c", NESTED_WRITER, name], stdout=subprocess.PIPE, text=True, env=ENV)
            assert p.stdout.readline().strip() == "go"
            time.sleep(0.15 + 0.05 * round_)
            p.send_signal(signal.SIGKILL)
            p.wait()
            with d.lock:  # recovers a holder that died mid-operation
                d.verify()
            for k, v in d.items():
                assert set(v.copy()) == {"i", "inner"}
    finally:
        d.close()


# -- names, creation, lifetime -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a/b", "../etc", ".hidden", "", "x" * 201, "sp ace", "é"])
def test_invalid_names_are_refused(bad):
    with pytest.raises(ValueError):
        SharedDict(bad)
    with pytest.raises(ValueError):
        SharedDict.unlink_by_name(bad)


def test_create_flags_and_random_names(name):
    with pytest.raises(mmstore.NotFound):
        SharedDict(name, create=False)
    with SharedDict(name, create=True) as d:
        assert d.auto_unlink and d.name == name
        with pytest.raises(mmstore.AlreadyExists):
            SharedDict(name, create=True)
        assert issubclass(mmstore.AlreadyExists, mmstore.Error)
    with SharedDict() as anon:
        assert anon.name.startswith("sd_") and _exists(anon.name)
        assert oct(os.stat(f"/dev/shm/mmstore.{anon.name}").st_mode & 0o777) == "0o600"
        n = anon.name
    assert not _exists(n)


def test_segment_survives_its_creator_while_another_handle_is_attached(name):
    creator = SharedDict(name, create=True)
    creator["k"] = "v"
    attached = SharedDict(name, create=False)
    assert not attached.auto_unlink  # only the creator unlinks by default
    creator.close()
    assert _exists(name)
    with SharedDict(name, create=False) as third:  # still attachable by name
        assert third["k"] == "v"
    attached.close()  # the last handle: the creator asked for auto_unlink
    assert not _exists(name)


def test_unlink_and_listing(name):
    d = SharedDict(name, auto_unlink=False)
    info = {s.name: s for s in mmstore.shared_dicts()}[name]
    assert info.creator_pid == os.getpid() and info.size > 0 and info.in_use
    d.close()
    assert _exists(name)
    info = {s.name: s for s in mmstore.shared_dicts()}[name]
    assert not info.in_use  # left behind: what a cleanup after crashes looks for
    with SharedDict(name) as d2:
        d2.unlink()
        d2["still"] = "works"  # attached handles keep the memory
        assert d2["still"] == "works"
        assert not _exists(name)
    with pytest.raises(mmstore.NotFound):
        SharedDict.unlink_by_name(name)


def _spawn_worker(handle):
    handle.increment("spawned")
    return handle.name


def test_handle_pickles_to_a_spawned_worker(name):
    with SharedDict(name) as d:
        assert pickle.loads(pickle.dumps(d)).name == name
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(2) as pool:
            assert pool.map(_spawn_worker, [d, d, d]) == [name] * 3
        assert d["spawned"] == 3


def test_a_handle_inherited_through_fork_reattaches_in_the_child(name):
    d = SharedDict(name)
    d["a"] = 1
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            d["b"] = d["a"] + 1
            d.increment("n")
            d.close()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert d["b"] == 2 and d["n"] == 1
    assert _exists(name)  # the child's close did not end the parent's segment
    d.close()
    assert not _exists(name)


# -- bad input -------------------------------------------------------------------------------------------------


def test_a_foreign_or_truncated_segment_is_refused_with_a_specific_error(name, tmp_path):
    path = f"/dev/shm/mmstore.{name}"
    with open(path, "wb") as f:  # not an mmstore store at all
        f.write(b"hello, not a store" * 1000)
    with pytest.raises(mmstore.ForeignFileError) as info:
        SharedDict(name, create=False)
    assert path in str(info.value)
    os.unlink(path)
    with mmstore.List(tmp_path / "l.mms") as lst:  # an mmstore store of another kind
        lst.append(1)
    with open(tmp_path / "l.mms", "rb") as src, open(path, "wb") as dst:
        dst.write(src.read())
    with pytest.raises(mmstore.WrongKindError):
        SharedDict(name, create=False)
    os.unlink(path)


def test_a_truncated_segment_is_refused(name):
    path = f"/dev/shm/mmstore.{name}"
    d = SharedDict(name, auto_unlink=False)
    d["k"] = "v" * 10_000
    d.close()
    os.truncate(path, 8192)
    with pytest.raises(mmstore.CorruptFileError):  # TruncatedFileError: shorter than its header says
        SharedDict(name, create=False)


def test_a_closed_handle_and_its_views_raise_closed_error(name):
    d = SharedDict(name, recurse=True)
    d["a"] = {"b": 1}
    view, lock = d["a"], d.lock
    d.close()
    for op in (lambda: d["a"], lambda: d.increment("n"), lambda: d.update_many({"x": 1}),
               lambda: d.wait_for_change(0.01), lambda: lock.acquire(), lambda: view["b"], lambda: len(d)):
        with pytest.raises(mmstore.ClosedError):
            op()
    d.close()  # closing twice is harmless


def test_wrong_argument_types_raise_type_errors(name):
    with pytest.raises(TypeError):
        SharedDict(42)
    with SharedDict(name) as d:
        with pytest.raises(TypeError):
            d[[1, 2]] = 1  # unhashable key, as for dict
        with pytest.raises(TypeError):
            d.increment("k", "not a number")
        with pytest.raises(ValueError):
            d.update_many([(1, 2, 3)])
        assert "k" not in d
