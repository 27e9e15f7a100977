"""Bulk paths of List and Dict against list/dict models: read-ahead iteration (also while the list changes),
extend() in chunks, Dict.get_many(); and the calls that run without the GIL (verify, get_many, large
iterator refills): other threads run meanwhile, and close() or compact() from one of them is refused, never
a crash.

"Another thread ran while the call was in progress" is shown without timing: the switch interval is set far
beyond the test's duration, so the only way a second thread can take the GIL while the main thread works is
a call of the main thread that releases it. The helper thread waits on an Event, records that it ran, and
blocks again; the main thread checks the record after the call returned.
"""

from __future__ import annotations

import itertools
import random
import sys
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

import mmstore
from conftest import canon, keys, list_values, model_key, values

_counter = itertools.count()


# -- iteration while the list changes ------------------------------------------------------------------------
class IterWhileModified(RuleBasedStateMachine):
    """Open iterators over the store and over a model list advance interleaved with writes, made through the
    iterating handle or through a second handle of the same file: each next() must agree (list semantics:
    the element at the iterator's position when next() is called, StopIteration once past the end)."""

    def __init__(self, directory):
        super().__init__()
        self.path = directory / f"it{next(_counter)}.mms"
        self.l = mmstore.List(self.path, create=True)
        self.other = mmstore.List(self.path)
        self.model: list = []
        self.its: list = []  # (store iterator, model iterator)

    def writer(self, via_other):
        return self.other if via_other else self.l

    @rule(vs=st.lists(list_values, max_size=40), via_other=st.booleans())
    def extend(self, vs, via_other):
        self.writer(via_other).extend(vs)
        self.model.extend(vs)

    @rule(v=list_values, via_other=st.booleans())
    def append(self, v, via_other):
        self.writer(via_other).append(v)
        self.model.append(v)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), v=list_values, via_other=st.booleans())
    def setitem(self, data, v, via_other):
        i = data.draw(st.integers(0, len(self.model) - 1))
        self.writer(via_other)[i] = v
        self.model[i] = v

    @precondition(lambda self: self.model)
    @rule(data=st.data(), via_other=st.booleans())
    def pop(self, data, via_other):
        i = data.draw(st.integers(0, len(self.model) - 1))
        assert canon(self.writer(via_other).pop(i)) == canon(self.model.pop(i))

    @rule(data=st.data(), v=list_values)
    def insert(self, data, v):
        i = data.draw(st.integers(0, len(self.model)))
        self.l.insert(i, v)
        self.model.insert(i, v)

    @rule()
    def clear(self):
        self.other.clear()
        self.model.clear()

    @rule()
    def close_and_reopen(self):
        # An open iterator over the closed handle raises ClosedError (read-ahead elements included); the
        # handle reopened, new iterators start over.
        self.l.close()
        for it, _ in self.its:
            with pytest.raises(mmstore.ClosedError):
                next(it)
        self.its.clear()
        self.l = mmstore.List(self.path)

    @rule()
    def new_iterator(self):
        if len(self.its) < 4:
            self.its.append((iter(self.l), iter(self.model)))

    @precondition(lambda self: self.its)
    @rule(data=st.data(), steps=st.integers(1, 30))
    def advance(self, data, steps):
        k = data.draw(st.integers(0, len(self.its) - 1))
        it, mit = self.its[k]
        for _ in range(steps):
            want = next(mit, StopIteration)
            got = next(it, StopIteration)
            assert canon(got) == canon(want)
            if want is StopIteration:
                del self.its[k]
                return

    @invariant()
    def contents(self):
        assert [canon(x) for x in self.l] == [canon(x) for x in self.model]

    def teardown(self):
        self.other.close()
        self.l.close()


def test_iteration_while_the_list_changes_matches_list_iterators(tmp_path):
    run_state_machine_as_test(
        lambda: IterWhileModified(tmp_path),
        settings=settings(max_examples=30, stateful_step_count=30, deadline=None,
                          suppress_health_check=list(HealthCheck)),
    )


def test_long_iteration_sees_writes_made_between_steps(tmp_path):
    # Read-ahead batches grow to 256 elements: writes behind, at and ahead of the position, after many steps.
    l = mmstore.List(tmp_path / "l.mms")
    model = list(range(3000))
    l.extend(model)
    it, mit = iter(l), iter(model)
    rng = random.Random(7)
    for step in range(5000):
        if step % 7 == 3:
            i = rng.randrange(len(model))
            l[i] = model[i] = -step
        if step % 11 == 5:
            l.append(step)
            model.append(step)
        if step % 13 == 8:
            del l[0]
            del model[0]
        want, got = next(mit, None), next(it, None)
        assert got == want
        if want is None:
            break
    l.close()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(vs=st.lists(st.one_of(st.integers(), st.text(max_size=9), st.binary(max_size=8)), max_size=600),
       verify=st.booleans(), cut=st.integers(0, 600))
def test_iteration_decodes_inline_words_like_list(tmp_path_factory, vs, verify, cut):
    # ints, short strs (ASCII, 7-character ASCII, non-ASCII) and bytes: the refill's native decoding, with
    # and without read checks, across batches (8, 16, ... 256 elements), with appends after `cut` steps.
    path = tmp_path_factory.mktemp("i") / "l.mms"
    l = mmstore.List(path, verify=verify)
    l.extend(vs)
    model = list(vs)
    it, mit = iter(l), iter(model)
    got, want = [], []
    for step, x in enumerate(mit):
        if step == cut:
            l.append(-step)
            model.append(-step)
        want.append(x)
        got.append(next(it))
    assert next(it, StopIteration) is StopIteration
    assert [canon(x) for x in got] == [canon(x) for x in want]
    l.close()


def test_iterator_of_a_closed_list_raises_closed_error(tmp_path):
    l = mmstore.List(tmp_path / "l.mms")
    l.extend(range(100))
    it = iter(l)
    assert next(it) == 0  # the first refill read ahead
    l.close()
    with pytest.raises(mmstore.ClosedError):
        next(it)


def test_iterating_records_decodes_the_private_copies(tmp_path):
    # Long strs are records: from the second refill on (>= 64 records in a batch) the payloads are copied
    # without the GIL and decoded afterwards.
    l = mmstore.List(tmp_path / "l.mms")
    model = [f"a record value {i:08d}" * (1 + i % 3) for i in range(2000)] + [None, 1, b"x" * 100]
    l.extend(model)
    assert list(l) == model
    assert list(reversed(l)) == model[::-1]
    l.close()


# -- extend --------------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(first=st.lists(list_values, max_size=20), vs=st.lists(list_values, max_size=60),
       kind=st.sampled_from(["list", "tuple", "generator", "range"]))
def test_extend_matches_list_extend(tmp_path_factory, first, vs, kind):
    l = mmstore.List(tmp_path_factory.mktemp("e") / "l.mms")
    model = list(first)
    l.extend(first)
    src = {"list": lambda: list(vs), "tuple": lambda: tuple(vs), "generator": lambda: (v for v in vs),
           "range": lambda: range(len(vs))}[kind]
    l.extend(src())
    model.extend(src())
    assert [canon(x) for x in l] == [canon(x) for x in model]
    l.close()


def test_extend_across_chunks_and_repeated_extends(tmp_path):
    # Chunks of 4096 encodings; a sized source reserves once; repeated extends keep doubling.
    l = mmstore.List(tmp_path / "l.mms")
    model: list = []
    rng = random.Random(3)
    for n in (10_000, 4096, 4097, 1, 0, 9000):
        part = [rng.choice([i, str(i), f"long value {i}" * 2, None, (i, i)]) for i in range(n)]
        l.extend(part if n % 2 else iter(part))
        model.extend(part)
    assert l == model
    l.verify()
    l.close()
    with mmstore.List(tmp_path / "l.mms") as again:
        assert again == model


class Boom(Exception):
    pass


def test_extend_keeps_the_elements_before_a_failing_iterator_or_value(tmp_path):
    l = mmstore.List(tmp_path / "l.mms", allow_pickle=False)

    def gen():
        yield from range(5000)
        raise Boom

    model: list = []
    with pytest.raises(Boom):
        l.extend(gen())
    with pytest.raises(Boom):
        model.extend(gen())
    assert l == model
    unpicklable = [1, 2, object(), 4]
    with pytest.raises(mmstore.Error):
        l.extend(unpicklable)
    assert l == model + [1, 2]  # as list.extend would have left it had it raised at the third element
    l.verify()
    l.close()


def test_extend_of_itself_doubles(tmp_path):
    l = mmstore.List(tmp_path / "l.mms")
    l.extend(range(5000))
    l.extend(l)
    assert l == list(range(5000)) * 2
    l.close()


# -- get_many ------------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(items=st.lists(st.tuples(keys, values), max_size=30), probes=st.lists(keys, max_size=90))
def test_get_many_matches_dict_get(tmp_path_factory, items, probes):
    d = mmstore.Dict(tmp_path_factory.mktemp("g") / "d.mms")
    model = {}
    for k, v in items:
        d[k] = v
        model[model_key(k)] = v
    want = [canon(model.get(model_key(k), "absent")) for k in probes]
    assert [canon(x) for x in d.get_many(probes, "absent")] == want
    assert [canon(x) for x in d.get_many(iter(probes))] == [canon(model.get(model_key(k))) for k in probes]
    d.close()


def test_get_many_over_several_chunks(tmp_path):
    d = mmstore.Dict(tmp_path / "d.mms")
    d.update((i, f"value number {i}" if i % 3 else i) for i in range(0, 20_000, 2))
    probes = list(range(20_000))
    random.Random(5).shuffle(probes)
    assert d.get_many(probes, -1) == [(f"value number {k}" if k % 3 else k) if k % 2 == 0 else -1 for k in probes]
    with pytest.raises(TypeError):
        d.get_many(5)
    d.close()


def test_get_many_of_shared_dict_nested_values(tmp_path):
    with mmstore.SharedDict(recurse=True) as s:  # anonymous: unlinked when closed
        s["a"] = {"x": 1}
        s["b"] = 2
        got = s.get_many(["a", "b", "c"])
        assert got[0]["x"] == 1 and got[1:] == [2, None]


# -- without the GIL -------------------------------------------------------------------------------------------
@pytest.fixture
def long_switch_interval():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _ran_during(call, tries=1000):
    """Whether a helper thread got the GIL while `call()` ran (see the module docstring). Retries while the
    helper had not yet reached the GIL when the call let go of it; returns False if it never did."""
    for _ in range(tries):
        go, done, ran = threading.Event(), threading.Event(), []

        def helper():
            go.wait()
            ran.append(1)  # needs the GIL: only a call of the main thread that released it lets us here
            done.wait()

        t = threading.Thread(target=helper)
        t.start()
        go.set()
        call()
        seen = bool(ran)
        done.set()
        t.join()
        if seen:
            return True
    return False


def _big_list(path, n=200_000):
    l = mmstore.List(path)
    l.extend(f"element {i:010d}" for i in range(n))  # records, so that refills copy payloads
    return l


def test_verify_and_get_many_let_other_threads_run(tmp_path, long_switch_interval):
    l = _big_list(tmp_path / "l.mms")
    assert _ran_during(l.verify)
    d = mmstore.Dict(tmp_path / "d.mms")
    d.update((i, i) for i in range(100_000))
    assert _ran_during(d.verify)
    assert _ran_during(lambda: d.get_many(range(100_000)))
    with mmstore.SharedDict() as s:
        s.update((i, str(i)) for i in range(100_000))
        assert _ran_during(s.verify)
    assert d.get_many([1, -1]) == [1, None] and len(l) == 200_000
    l.close()
    d.close()


def test_iterating_records_lets_other_threads_run(tmp_path, long_switch_interval):
    l = _big_list(tmp_path / "l.mms", 20_000)
    assert _ran_during(lambda: sum(1 for _ in l))
    l.close()


@mmstore.struct
class P:
    a: int
    name: str


def test_record_array_and_mapping_verify_let_other_threads_run(tmp_path, long_switch_interval):
    arr = mmstore.RecordArray.build(((i, f"name {i}") for i in range(100_000)), tmp_path / "a.mms", schema=P)
    assert _ran_during(arr.verify)
    arr.close()
    m = mmstore.Mapping.build(((f"k{i}", i) for i in range(100_000)), tmp_path / "m.mms", key=str)
    assert _ran_during(m.verify)
    m.close()


def _close_during(open_store, call, tries=200, action="close"):
    """Runs call(store) in a thread while this thread calls close() (or compact() then close()), for fresh
    handles, until one was refused because the call was inside its part without the GIL. Every outcome
    must be clean: the call returns or raises ClosedError; close()/compact() succeeds or raises the busy
    error (and succeeds later)."""
    for _ in range(tries):
        store = open_store()
        outcomes, refused = [], 0
        started = threading.Event()

        def worker():
            started.set()
            try:
                call(store)
                outcomes.append("done")
            except mmstore.ClosedError:
                outcomes.append("closed")

        t = threading.Thread(target=worker)
        t.start()
        started.wait()
        while True:
            try:
                if action == "compact":
                    store.compact()
                store.close()
                break
            except ValueError as e:  # as for close() while another thread waits for the store's lock
                assert "while another thread of this process is inside a call" in str(e), e
                refused += 1
        t.join()
        assert outcomes in (["done"], ["closed"])
        if refused:
            return True
    return False


def test_close_from_another_thread_during_a_released_call_is_refused_not_a_crash(tmp_path):
    lpath, dpath = tmp_path / "l.mms", tmp_path / "d.mms"
    _big_list(lpath).close()
    with mmstore.Dict(dpath) as d:
        d.update((i, str(i) * 3) for i in range(100_000))
    assert _close_during(lambda: mmstore.List(lpath), lambda l: l.verify())
    assert _close_during(lambda: mmstore.Dict(dpath), lambda d: d.verify())
    assert _close_during(lambda: mmstore.Dict(dpath), lambda d: d.get_many(range(100_000)))
    assert _close_during(lambda: mmstore.List(lpath), lambda l: l.verify(), action="compact")
