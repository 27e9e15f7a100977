"""List and Dict iterators hand out an int or str object again once only the iterator still holds it
(python/bindings/recycle.hpp). These tests pin what that must never change: every object a caller holds
keeps its value, type and hash, whatever it does with it (keeps it for a while, interns it, hashes it, uses
it as a dict key), for every kind of element and at every digit-count and length boundary."""

from __future__ import annotations

import collections
import gc
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mmstore

BOUNDARY_INTS = [-6, -5, 0, 256, 257, 2**30 - 1, 2**30, -(2**30) + 1, -(2**30), 2**47 - 1, -(2**47),
                 2**47, -(2**47) - 1, 2**62, -(2**70)]

elements = st.one_of(
    st.integers(-300, 300),
    st.integers(-(2**47), 2**47 - 1),
    st.sampled_from(BOUNDARY_INTS),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=9),
    st.text(max_size=4),
    st.binary(max_size=8),
    st.none(),
    st.floats(allow_nan=False),
)


def same(a, b) -> bool:
    return type(a) is type(b) and a == b


@settings(max_examples=150, deadline=None)
@given(values=st.lists(elements, max_size=80), holds=st.lists(st.integers(0, 4), min_size=1, max_size=30),
       seed=st.integers(0, 3))
def test_held_objects_keep_their_values(tmp_path_factory, values, holds, seed):
    """Each yielded object is kept for a varying number of steps (0: dropped at once); at the end every
    object still held, and a sample of all of them, equals the element it was yielded for."""
    path = tmp_path_factory.mktemp("recycle") / "l.mms"
    with mmstore.List(path) as l:
        l.extend(values)
        window: collections.deque = collections.deque()
        kept = []
        for i, x in enumerate(l):
            assert same(x, values[i]), (i, x, values[i])
            assert hash(x) == hash(values[i])  # caches the hash of a str: a reuse must reset it
            window.append((i, x))
            while len(window) > holds[i % len(holds)]:
                window.popleft()
            if (i + seed) % 7 == 0:
                kept.append((i, x))
            for j, y in window:
                assert same(y, values[j]), (j, y, values[j])
        x = None
        for j, y in list(window) + kept:
            assert same(y, values[j]) and hash(y) == hash(values[j])


@pytest.mark.parametrize("make", [lambda i: 1000 + i, lambda i: -(2**31) - i, lambda i: f"s{i:05d}",
                                  lambda i: f"t{i:04d}"])
def test_a_loop_that_drops_each_element_sees_every_value(tmp_path, make):
    """The pattern recycling serves (`for x in l`, each object dropped when the next arrives): every
    element comes back right, with the right hash, as a dict key and in arithmetic."""
    values = [make(i) for i in range(3000)]
    with mmstore.List(tmp_path / "l.mms") as l:
        l.extend(values)
        counts: dict = {}
        for i, x in enumerate(l):
            assert x == values[i] and hash(x) == hash(values[i])
            counts[x] = counts.get(x, 0) + 1  # the dict keeps x: it must never be rewritten afterwards
        assert counts == dict.fromkeys(values, 1)
        assert sum(x for x in l if isinstance(x, int)) == sum(v for v in values if isinstance(v, int))


def test_interned_str_is_never_rewritten(tmp_path):
    """sys.intern may keep a str whose reference count does not show the interned table's reference
    (CPython 3.9-3.11, 3.13): such a str must not be reused for the next element. A rewritten one leaves the
    interned table holding a key under the wrong hash, which CPython reports when the str is freed."""
    values = [f"zq{i:05d}" for i in range(100)]
    reported: list = []
    hook, sys.unraisablehook = sys.unraisablehook, reported.append
    try:
        with mmstore.List(tmp_path / "l.mms") as l:
            l.extend(values)
            for i, x in enumerate(l):
                if i % 10 == 3:
                    sys.intern(x)
            del x
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert reported == []
    for i in range(3, 100, 10):
        assert sys.intern(f"zq{i:05d}") == f"zq{i:05d}"


def test_objects_of_an_abandoned_iterator_stay_valid(tmp_path):
    """The two objects an iterator keeps for reuse belong to the caller once handed out: they survive the
    iterator, and a new iterator starts with none."""
    with mmstore.List(tmp_path / "l.mms") as l:
        l.extend([10**9 + i for i in range(10)])
        it = iter(l)
        a, b = next(it), next(it)
        del it
        c = [x for x in l]
        assert (a, b) == (10**9, 10**9 + 1) and c == [10**9 + i for i in range(10)]


keys_st = st.one_of(st.integers(-300, 300), st.integers(-(2**47), 2**47 - 1), st.sampled_from(BOUNDARY_INTS),
                    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=9),
                    st.text(max_size=4))


@settings(max_examples=100, deadline=None)
@given(model=st.dictionaries(keys_st, elements, max_size=60), holds=st.lists(st.integers(0, 4), min_size=1,
       max_size=20), view=st.sampled_from(["keys", "values", "items"]))
def test_dict_views_keep_held_objects(tmp_path_factory, model, holds, view):
    """The same for a Dict's keys(), values() and items() (in insertion order, as the model's): each yielded
    object (an items() pair's key and value) kept for a varying number of steps still equals its element."""
    path = tmp_path_factory.mktemp("recycle") / "d.mmd"
    expected = list(getattr(model, view)())
    with mmstore.Dict(path) as d:
        d.update(model)
        window: collections.deque = collections.deque()
        i = -1
        for i, x in enumerate(getattr(d, view)()):
            assert same_deep(x, expected[i]) and hash(x) == hash(expected[i]), (i, x, expected[i])
            window.append((i, x))
            while len(window) > holds[i % len(holds)]:
                window.popleft()
            for j, y in window:
                assert same_deep(y, expected[j]), (j, y, expected[j])
        assert i + 1 == len(expected)
        for j, y in window:
            assert same_deep(y, expected[j]) and hash(y) == hash(expected[j])


def same_deep(a, b) -> bool:
    if type(a) is tuple and type(b) is tuple:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return same(a, b)


@pytest.mark.parametrize("make", [lambda i: i * 7919, lambda i: f"key-{i:020d}"], ids=["inline-int", "record-str"])
def test_dict_iteration_resumes_after_another_handle_rebuilds_the_table(tmp_path, make):
    """An iterator whose table another handle rebuilt meanwhile resumes after the last key it returned (for
    an inline key, found again from the key's word): keys present throughout come exactly once."""
    path = tmp_path / "d.mmd"
    with mmstore.Dict(path) as d, mmstore.Dict(path) as other:
        base = [make(i) for i in range(100)]
        d.update((k, i) for i, k in enumerate(base))
        it = iter(d)
        seen = [next(it) for _ in range(50)]
        other.update((make(i), i) for i in range(100, 5000))  # several rebuilds: the root moves
        seen += list(it)
        counts = collections.Counter(seen)
        assert [k for k in base if counts[k] != 1] == []
        assert max(counts.values()) == 1


@settings(max_examples=60, deadline=None)
@given(values=st.lists(elements, min_size=1, max_size=80), holds=st.lists(st.integers(0, 4), min_size=1,
       max_size=20), changes=st.lists(st.tuples(st.integers(0, 79), elements), max_size=20))
def test_list_snapshot_iteration_keeps_held_objects(tmp_path_factory, values, holds, changes):
    """A List snapshot's iterator recycles too: with the live list overwritten and grown after the snapshot
    opened (so its words come from the recorded pages), every object held equals the instant's element."""
    path = tmp_path_factory.mktemp("recycle") / "l.mms"
    with mmstore.List(path) as l:
        l.extend(values)
        with l.snapshot() as s:
            for i, v in changes:
                l[i % len(values)] = v
            l.extend(values[:3])
            window: collections.deque = collections.deque()
            i = -1
            for i, x in enumerate(s):
                assert same(x, values[i]) and hash(x) == hash(values[i]), (i, x, values[i])
                window.append((i, x))
                while len(window) > holds[i % len(holds)]:
                    window.popleft()
                for j, y in window:
                    assert same(y, values[j]), (j, y, values[j])
            assert i + 1 == len(values)


def test_closing_a_list_snapshot_stops_its_iterator(tmp_path):
    """Inline elements already read in the current batch may still be handed out after close(); the next batch,
    and any element that needs the mapping (a record), raise ClosedError, and nothing is handed out wrong."""
    with mmstore.List(tmp_path / "l.mms") as l:
        l.extend(range(1000, 1600))
        with l.snapshot() as s:
            it = iter(s)
            got = [next(it)]
            s.close()
            with pytest.raises(mmstore.ClosedError):
                for x in it:
                    got.append(x)
        assert 1 <= len(got) <= 256 and got == list(range(1000, 1000 + len(got)))
        l.clear()
        l.extend([b"r" * 100, b"s" * 100])
        with l.snapshot() as s:
            it = iter(s)
            assert next(it) == b"r" * 100
            s.close()
            with pytest.raises(mmstore.ClosedError):
                next(it)
