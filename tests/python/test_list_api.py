"""mmstore.List API: the sequence protocol's edges (messages, index types, operators), repr, lifecycle,
locking, options, maintenance and pickling of handles."""

from __future__ import annotations

import collections.abc
import multiprocessing
import os
import pathlib
import pickle
import random

import numpy as np
import pytest

import mmstore


@pytest.fixture
def l(tmp_path):
    with mmstore.List(tmp_path / "l.mms") as h:
        yield h


def test_list_is_a_mutable_sequence(l):
    assert isinstance(l, collections.abc.MutableSequence)
    assert isinstance(l, collections.abc.Sequence)
    assert not isinstance(l, collections.abc.Mapping)
    with pytest.raises(TypeError):
        hash(l)


def test_index_errors_have_list_messages(l):
    with pytest.raises(IndexError, match="^pop from empty list$"):
        l.pop()
    l.extend([1, 2, 3])
    cases = [
        (lambda: l[3], "list index out of range"),
        (lambda: l[-4], "list index out of range"),
        (lambda: l.pop(3), "pop index out of range"),
        (lambda: l.pop(-4), "pop index out of range"),
        (lambda: l.__setitem__(3, 0), "list assignment index out of range"),
        (lambda: l.__delitem__(-4), "list assignment index out of range"),
    ]
    for fn, msg in cases:
        with pytest.raises(IndexError) as info:
            fn()
        assert str(info.value) == msg
    assert l.copy() == [1, 2, 3]


def test_huge_indices_raise_the_same_exceptions_as_list(l):
    # Regression: pop(2**70) raised IndexError (list: OverflowError); l[2**70] = x and del l[2**70] raised
    # OverflowError (list: IndexError).
    l.extend([1, 2, 3])
    model = [1, 2, 3]
    ops = [
        lambda x: x[2**70],
        lambda x: x.pop(2**70),
        lambda x: x.insert(2**70, 0),
        lambda x: x.__setitem__(2**70, 0),
        lambda x: x.__delitem__(2**70),
    ]
    for op in ops:
        with pytest.raises(Exception) as expected:
            op(model)
        with pytest.raises(type(expected.value)):
            op(l)


def test_indices_accept_index_protocol_objects(l):
    l.extend("abc")
    assert l[True] == "b"
    assert l[np.int64(-1)] == "c"
    l[np.int32(0)] = "A"
    assert l.pop(np.int8(0)) == "A"
    with pytest.raises(TypeError, match="list indices must be integers or slices, not str"):
        l["0"]
    with pytest.raises(TypeError):
        l[1.0] = 0
    with pytest.raises(TypeError):
        del l[None]


def test_value_errors_for_missing_values_and_bad_slices(l):
    l.extend([1, 2, 1])
    with pytest.raises(ValueError, match="is not in list"):
        l.index(5)
    with pytest.raises(ValueError):
        l.index(2, 2)
    assert l.index(1, 1) == 2
    assert l.index(1, -1) == 2
    with pytest.raises(ValueError):
        l.remove("nope")
    with pytest.raises(ValueError, match="^attempt to assign sequence of size 1 to extended slice of size 2$"):
        l[::2] = [0]
    with pytest.raises(ValueError, match="slice step cannot be zero"):
        l[::0]
    assert l.copy() == [1, 2, 1]


def test_insert_clamps_out_of_range_indices_like_list(l):
    l.extend([1, 2])
    l.insert(100, "end")
    l.insert(-100, "start")
    l.insert(-1, "before last")
    assert l.copy() == ["start", 1, 2, "before last", "end"]


def test_slices_get_set_and_delete_like_list(l):
    model = list(range(12))
    l.extend(model)
    for s in (slice(None, None, -1), slice(1, None, 3), slice(-2, 2, -2), slice(100, -100, -5), slice(5, 2)):
        assert l[s] == model[s]
    l[2:5] = ["a"]
    model[2:5] = ["a"]
    l[-1:] = ["x", "y", "z"]
    model[-1:] = ["x", "y", "z"]
    l[7:3] = ["inserted"]
    model[7:3] = ["inserted"]
    l[::-3] = list(range(len(model[::-3])))
    model[::-3] = list(range(len(model[::-3])))
    del l[1::4]
    del model[1::4]
    del l[-2:-100:-2]
    del model[-2:-100:-2]
    l[:] = l  # assigning from itself snapshots first
    assert l.copy() == model
    l[1:3] = (c for c in "gen")  # any iterable
    model[1:3] = "gen"
    assert l.copy() == model


def test_extend_with_itself_doubles_it(l):
    l.extend([1, 2])
    l.extend(l)
    assert l.copy() == [1, 2, 1, 2]
    l += l
    assert len(l) == 8


def test_sort_is_stable_with_key_and_reverse(l):
    pairs = [(k, i) for i, k in enumerate([3, 1, 2, 3, 1, 2, 1])]
    l.extend(pairs)
    l.sort(key=lambda p: p[0])
    assert l.copy() == sorted(pairs, key=lambda p: p[0])
    assert [p[1] for p in l if p[0] == 1] == [1, 4, 6]  # ties keep their order
    l.sort(key=lambda p: p[0], reverse=True)
    assert l.copy() == sorted(pairs, key=lambda p: p[0], reverse=True)
    assert [p[1] for p in l if p[0] == 1] == [1, 4, 6]  # reverse=True is stable too
    l.sort()
    assert l.copy() == sorted(pairs)
    with pytest.raises(TypeError):
        l.sort("positional key")


def test_reverse_count_contains_and_reversed(l):
    l.extend(["a", "b", "a", None, 1, True, 1.0])
    assert l.count("a") == 2
    assert l.count(1) == 3  # 1 == True == 1.0, as in list
    assert None in l and "z" not in l
    assert list(reversed(l)) == list(reversed(l.copy()))
    l.reverse()
    assert l.copy() == [1.0, True, 1, None, "a", "b", "a"]


def test_arithmetic_operators(l, tmp_path):
    l.extend([1, 2])
    assert l + [3] == [1, 2, 3] and type(l + [3]) is list
    assert [0] + l == [0, 1, 2] and type([0] + l) is list
    assert l * 2 == [1, 2, 1, 2] and 2 * l == [1, 2, 1, 2] and type(l * 2) is list
    assert l.copy() == [1, 2]
    same = l
    l *= 3
    assert l is same and l.copy() == [1, 2] * 3
    l *= 0
    assert l.copy() == []
    l += (x for x in "ab")
    assert l is same and l.copy() == ["a", "b"]
    with pytest.raises(TypeError):
        l + (1,)
    with pytest.raises(TypeError):
        l *= "x"
    with mmstore.List(tmp_path / "m.mms") as m:
        m.append("c")
        assert l + m == ["a", "b", "c"]


def test_equality_and_ordering(l, tmp_path):
    l.extend([1, [2, 3]])
    assert l == [1, [2, 3]] and not (l != [1, [2, 3]])
    assert l != [1, [2, 4]] and l != [1]
    assert l != "ab" and not (l == 5)
    with mmstore.List(tmp_path / "m.mms") as m:
        m.extend([1, [2, 3]])
        assert l == m and not (l < m) and l <= m
        m.append(0)
        assert l < m and m > l and l != m
    assert l < [1, [2, 4]] and l < [2] and l > [1] and l >= [1, [2, 3]] and l <= [1, [2, 3]]
    with pytest.raises(TypeError):
        l < ["a"]  # noqa: B015  (int vs str, like list)
    with pytest.raises(TypeError):
        l < 5  # noqa: B015


def test_copy_returns_a_plain_list_of_fresh_objects(l):
    l.append([1])
    c = l.copy()
    assert type(c) is list and c == [[1]]
    c[0].append(2)
    l[0].append(3)
    assert l[0] == [1]  # mutating a returned value does not change the store: assign it back


def test_repr_names_the_path_and_truncates_after_fifty_items(l):
    l.extend(range(120))
    r = repr(l)
    assert r.startswith("mmstore.List(") and l.path in r
    assert "49" in r and ", 50," not in r and "... (70 more)" in r
    l.close()
    assert "closed" in repr(l) and l.path in repr(l)


CLOSED_LIST_OPS = {
    "len": lambda l: len(l),
    "getitem": lambda l: l[0],
    "getslice": lambda l: l[:],
    "setitem": lambda l: l.__setitem__(0, 1),
    "setslice": lambda l: l.__setitem__(slice(0, 1), [1]),
    "delitem": lambda l: l.__delitem__(0),
    "delslice": lambda l: l.__delitem__(slice(0, 1)),
    "contains": lambda l: 1 in l,
    "iter": lambda l: iter(l),
    "reversed": lambda l: reversed(l),
    "append": lambda l: l.append(1),
    "extend": lambda l: l.extend([1]),
    "insert": lambda l: l.insert(0, 1),
    "pop": lambda l: l.pop(),
    "remove": lambda l: l.remove(1),
    "index": lambda l: l.index(1),
    "count": lambda l: l.count(1),
    "reverse": lambda l: l.reverse(),
    "sort": lambda l: l.sort(),
    "clear": lambda l: l.clear(),
    "copy": lambda l: l.copy(),
    "iadd": lambda l: l.__iadd__([1]),
    "imul": lambda l: l.__imul__(2),
    "add": lambda l: l + [1],
    "eq": lambda l: l == [],
    "lt": lambda l: l < [],
    "sync": lambda l: l.sync(),
    "verify": lambda l: l.verify(),
    "compact": lambda l: l.compact(),
    "stats": lambda l: l.stats(),
}


@pytest.mark.parametrize("op", sorted(CLOSED_LIST_OPS))
def test_every_operation_on_a_closed_list_raises_closed_error(tmp_path, op):
    l = mmstore.List(tmp_path / "l.mms")
    l.extend([1, 2])
    l.close()
    with pytest.raises(mmstore.ClosedError) as info:
        CLOSED_LIST_OPS[op](l)
    assert isinstance(info.value, ValueError)
    assert str(tmp_path / "l.mms") in str(info.value)


def test_iterator_of_a_closed_list_raises_closed_error(tmp_path):
    l = mmstore.List(tmp_path / "l.mms")
    l.extend([1, 2])
    it = iter(l)
    next(it)
    l.close()
    with pytest.raises(mmstore.ClosedError):
        next(it)


def test_context_manager_closes_and_str_or_path_accepted(tmp_path):
    with mmstore.List(str(tmp_path / "l.mms")) as l:
        l.append("x")
    assert l.closed
    with mmstore.List(pathlib.Path(tmp_path) / "l.mms") as l:
        assert l.copy() == ["x"]
        assert l.path == str(tmp_path / "l.mms")


def test_open_options_create_and_mode(tmp_path):
    path = tmp_path / "l.mms"
    with pytest.raises(mmstore.StoreNotFoundError):
        mmstore.List(path, create=False)
    mmstore.List(path, create=True).close()
    assert os.stat(path).st_mode & 0o777 == 0o600
    with pytest.raises(mmstore.StoreExistsError):
        mmstore.List(path, create=True)
    old = os.umask(0)
    try:
        mmstore.List(tmp_path / "m.mms", mode=0o664).close()
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "m.mms").st_mode & 0o777 == 0o664


def test_two_writable_handles_share_a_list(tmp_path):
    path = tmp_path / "l.mms"
    with mmstore.List(path) as a, mmstore.List(path) as b:
        a.extend(range(10_000))
        b.append("b")
        assert a[-1] == "b" and len(a) == 10_001
        assert b.pop(0) == 0 and a[0] == 1
        with pytest.raises(mmstore.StoreLockedError):
            a.compact()


def test_readonly_lists_coexist_and_refuse_writes(tmp_path):
    path = tmp_path / "l.mms"
    with mmstore.List(path) as l:
        l.extend([3, 1, 2])
    with mmstore.List(path, readonly=True) as r1, mmstore.List(path, readonly=True) as r2:
        assert r1.copy() == r2.copy() == [3, 1, 2]
        for w in (lambda r: r.append(1), lambda r: r.__setitem__(0, 9), lambda r: r.pop(), lambda r: r.sort(),
                  lambda r: r.insert(0, 1), lambda r: r.__delitem__(slice(None)), lambda r: r.clear(),
                  lambda r: r.extend([1]), lambda r: r.reverse()):
            with pytest.raises(ValueError):
                w(r1)
        assert r1.copy() == [3, 1, 2]


def test_stats_compact_verify_and_sync(tmp_path):
    path = tmp_path / "l.mms"
    with mmstore.List(path) as l:
        assert l.stats()["entries"] == 0
        l.extend("x" * 100 + str(i) for i in range(20_000))
        assert l.stats()["entries"] == 20_000
        del l[: 18_000]
        l.sync()
        expected = l.copy()
        before = l.stats()["file_bytes"]
        l.compact()
        after = l.stats()
        assert after["file_bytes"] < before / 3
        assert after["entries"] == 2000 and set(after) == {"entries", "file_bytes", "allocated_bytes",
                                                            "arena_top", "free_bytes", "capacity"}
        assert l.copy() == expected
        l.verify()
    with mmstore.List(path, durable=True) as l:
        l.append("durable")
    with mmstore.List(path) as l:
        assert l.copy() == expected + ["durable"]


def test_verify_passes_after_random_operations(tmp_path):
    rng = random.Random(11)
    with mmstore.List(tmp_path / "l.mms") as l:
        for _ in range(3000):
            r = rng.random()
            n = len(l)
            if r < 0.5 or not n:
                l.append("v" * rng.randrange(20))
            elif r < 0.7:
                l.insert(rng.randrange(n + 1), rng.randrange(2**70))
            elif r < 0.85:
                del l[rng.randrange(n)]
            else:
                l[rng.randrange(n)] = (rng.random(),)
        l.verify()
        l.sort(key=repr)
        l.verify()


def test_pickled_handle_reopens_the_same_list(tmp_path):
    path = tmp_path / "l.mms"
    l = mmstore.List(path)
    l.extend([1, "two"])
    blob = pickle.dumps(l)
    with pickle.loads(blob) as l2:  # shares the store with the sender
        assert type(l2) is mmstore.List and l2.copy() == [1, "two"]
        l2.append(3)
        assert l[-1] == 3
    l.close()


def _child_sum_list(handle):
    try:
        return sum(handle), len(handle)
    finally:
        handle.close()


def test_pickled_list_reopens_in_a_spawned_process(tmp_path):
    path = tmp_path / "l.mms"
    with mmstore.List(path) as l:
        l.extend(range(1000))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        assert pool.apply(_child_sum_list, (l,)) == (sum(range(1000)), 1000)
