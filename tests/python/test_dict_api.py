"""mmstore.Dict API: everything around the mapping protocol -- views, operators, repr, lifecycle, locking,
options, maintenance (stats/compact/verify/sync) and pickling of handles."""

from __future__ import annotations

import collections
import collections.abc
import multiprocessing
import os
import pathlib
import pickle
import random
import subprocess
import sys

import pytest

import mmstore


@pytest.fixture
def d(tmp_path):
    with mmstore.Dict(tmp_path / "d.mms") as h:
        yield h


# -- protocol and views ------------------------------------------------------------------------------------


def test_dict_is_a_mutable_mapping(d):
    assert isinstance(d, collections.abc.MutableMapping)
    assert isinstance(d, collections.abc.Mapping)
    assert not isinstance(d, collections.abc.Sequence)
    assert isinstance(d.keys(), collections.abc.KeysView)
    assert isinstance(d.values(), collections.abc.ValuesView)
    assert isinstance(d.items(), collections.abc.ItemsView)


def test_dict_is_unhashable(d):
    with pytest.raises(TypeError):
        hash(d)


def test_views_are_live(d):
    keys, values, items = d.keys(), d.values(), d.items()
    assert len(keys) == 0 and list(values) == [] and list(items) == []
    d["a"] = 1
    d["b"] = 2
    assert list(keys) == ["a", "b"]
    assert list(values) == [1, 2]
    assert list(items) == [("a", 1), ("b", 2)]
    assert "a" in keys and ("b", 2) in items and ("b", 3) not in items and 2 in values
    del d["a"]
    assert list(keys) == ["b"] and len(items) == 1


def test_key_and_item_views_are_set_like(d):
    d.update({"a": 1, "b": 2, "c": 3})
    assert d.keys() & {"a", "z"} == {"a"}
    assert d.keys() | {"z"} == {"a", "b", "c", "z"}
    assert d.keys() - {"a"} == {"b", "c"}
    assert d.keys() ^ {"a", "z"} == {"b", "c", "z"}
    assert d.keys() == {"a", "b", "c"}
    assert d.keys() <= {"a", "b", "c", "d"}
    assert d.keys().isdisjoint({"x", "y"})
    assert d.items() & {("a", 1), ("b", 99)} == {("a", 1)}
    assert d.items() == {("a", 1), ("b", 2), ("c", 3)}


def test_views_repr_lists_their_contents(d):
    d["k"] = "v"
    assert "'k'" in repr(d.keys()) and "'v'" in repr(d.values()) and "('k', 'v')" in repr(d.items())


def test_reversed_yields_keys_newest_first(d):
    for k in "abc":
        d[k] = k
    assert list(reversed(d)) == ["c", "b", "a"]


def test_overwriting_a_key_keeps_its_position(d):
    d.update([("a", 1), ("b", 2), ("c", 3)])
    d["a"] = 10
    assert list(d.items()) == [("a", 10), ("b", 2), ("c", 3)]
    del d["b"]
    d["b"] = 20
    assert list(d) == ["a", "c", "b"]


def test_popitem_is_last_in_first_out(d):
    d.update((i, str(i)) for i in range(5))
    assert d.popitem() == (4, "4")
    assert d.popitem() == (3, "3")
    d["new"] = 0
    assert d.popitem() == ("new", 0)
    with pytest.raises(KeyError):
        mmstore.Dict(d.path + ".other").popitem()


def test_missing_key_raises_key_error_naming_the_key(d):
    with pytest.raises(KeyError) as info:
        d[("tuple", "key")]
    assert info.value.args == (("tuple", "key"),)
    with pytest.raises(KeyError):
        del d["nope"]
    with pytest.raises(KeyError):
        d.pop("nope")
    assert d.pop("nope", 5) == 5
    assert d.get("nope") is None and d.get("nope", 7) == 7


@pytest.mark.parametrize("key", [[1], {"a": 1}, {1}, (1, [2]), bytearray(b"x")], ids=repr)
def test_unhashable_key_raises_type_error_like_dict(d, key):
    with pytest.raises(TypeError):
        d[key] = 1
    with pytest.raises(TypeError):
        d[key]
    with pytest.raises(TypeError):
        key in d  # noqa: B015
    with pytest.raises(TypeError):
        d.get(key)
    with pytest.raises(TypeError):
        {}[key] = 1  # the same as dict
    assert len(d) == 0


def test_copy_returns_a_plain_dict_in_order(d):
    d.update([("b", [1]), ("a", {"x": 2})])
    c = d.copy()
    assert type(c) is dict
    assert list(c.items()) == [("b", [1]), ("a", {"x": 2})]
    c["b"].append(2)
    assert d["b"] == [1]  # decoded values are fresh objects


def test_update_accepts_dicts_pairs_keywords_and_stores(d, tmp_path):
    d.update({"a": 1})
    d.update([("b", 2), ["c", 3]])
    d.update(iter([("d", 4)]))
    d.update(x=5, y=6)
    d.update({"z": 0}, w=7)
    with mmstore.Dict(tmp_path / "other.mms") as other:
        other["from_other"] = 8
        d.update(other)
    assert d.copy() == {"a": 1, "b": 2, "c": 3, "d": 4, "x": 5, "y": 6, "z": 0, "w": 7, "from_other": 8}
    with pytest.raises(ValueError, match="length other than 2"):
        d.update([("only one",)])
    with pytest.raises(TypeError):
        d.update(5)


class _KeysOnly:
    """Not a Mapping, but has keys() and __getitem__: dict.update treats it as a mapping."""

    def keys(self):
        return ["k"]

    def __getitem__(self, k):
        return k * 2


# Regression: update() rebound `other` to the generator that reads other[k], so every mapping that was not
# a plain dict or an mmstore.Dict failed with "'generator' object is not subscriptable".
@pytest.mark.parametrize(
    "source",
    [
        lambda: collections.OrderedDict([("k", "kk")]),
        lambda: collections.Counter("kk"),
        lambda: __import__("types").MappingProxyType({"k": "kk"}),
        lambda: _KeysOnly(),
    ],
    ids=["OrderedDict", "Counter", "MappingProxyType", "keys-only object"],
)
def test_update_accepts_any_mapping_like_dict_does(d, source):
    src = source()
    expected = dict(src)
    d.update(src)
    assert d.copy() == expected
    d.clear()
    d |= source()
    assert d.copy() == expected


def test_or_and_ior_merge_like_dict(d):
    d.update({"a": 1, "b": 2})
    merged = d | {"b": 3, "c": 4}
    assert type(merged) is dict and merged == {"a": 1, "b": 3, "c": 4}
    rmerged = {"b": 3, "z": 0} | d
    assert type(rmerged) is dict and list(rmerged.items()) == [("b", 2), ("z", 0), ("a", 1)]
    assert d.copy() == {"a": 1, "b": 2}
    same = d
    d |= {"c": 5}
    d |= [("e", 6)]
    assert d is same
    assert d.copy() == {"a": 1, "b": 2, "c": 5, "e": 6}
    with pytest.raises(TypeError):
        d | [("x", 1)]


def test_adding_a_key_during_iteration_raises_runtime_error(d):
    d.update((i, i) for i in range(10))
    with pytest.raises(RuntimeError, match="changed size during iteration"):
        for k in d:
            d[k + 100] = 0
    with pytest.raises(RuntimeError):
        for k in d.items():
            del d[k[0]]
    with pytest.raises(RuntimeError):
        for v in d.values():
            d.popitem()


def test_clear_or_compact_during_iteration_raises_runtime_error(d):
    d.update((i, i) for i in range(100))
    for i in range(0, 100, 2):
        del d[i]
    it = iter(d)
    next(it)
    d.compact()  # positions move: the iterator must not silently skip or repeat keys
    with pytest.raises(RuntimeError):
        next(it)
    it = iter(d.items())
    next(it)
    d.clear()
    with pytest.raises(RuntimeError):
        next(it)


def test_overwriting_values_during_iteration_is_allowed(d):
    d.update((i, i) for i in range(10))
    for k in d:
        d[k] = k * 10
    assert list(d.values()) == [i * 10 for i in range(10)]


def test_equality_with_dict_ordered_dict_and_another_store(d, tmp_path):
    d.update({"a": 1, "b": [2]})
    assert d == {"a": 1, "b": [2]}
    assert d == {"b": [2], "a": 1}  # order does not matter for ==, as for dict
    assert d == collections.OrderedDict([("b", [2]), ("a", 1)])
    assert d != {"a": 1}
    assert d != {"a": 1, "b": [3]}
    assert d != {"a": 1, "c": [2]}
    assert d != [("a", 1), ("b", [2])]
    assert not (d == 5)
    with mmstore.Dict(tmp_path / "e.mms") as e:
        e["b"] = [2]
        assert d != e
        e["a"] = 1
        assert d == e and e == d


def test_repr_names_the_path_and_truncates_after_fifty_items(d):
    d["k"] = "v"
    r = repr(d)
    assert r.startswith("mmstore.Dict(") and d.path in r and "'k': 'v'" in r
    d.update((i, i) for i in range(100))
    r = repr(d)
    assert "48: 48" in r and "49: 49" not in r  # 'k' plus 49 ints are the first 50
    assert "... (51 more)" in r
    d.close()
    assert "closed" in repr(d) and d.path in repr(d)


def test_len_and_bool(d):
    assert len(d) == 0 and not d
    d[None] = None
    assert len(d) == 1 and d


# -- lifecycle ---------------------------------------------------------------------------------------------


def test_context_manager_closes_the_handle(tmp_path):
    with mmstore.Dict(tmp_path / "d.mms") as d:
        d[1] = 2
        assert not d.closed
    assert d.closed
    d.close()  # closing twice is harmless
    with mmstore.Dict(tmp_path / "d.mms") as again:
        assert again[1] == 2


def test_exception_inside_with_still_closes(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with mmstore.Dict(tmp_path / "d.mms") as d:
            d["x"] = 1
            1 / 0
    assert d.closed
    with mmstore.Dict(tmp_path / "d.mms") as d2:  # not left locked
        assert d2["x"] == 1


CLOSED_DICT_OPS = {
    "len": lambda d: len(d),
    "bool": lambda d: bool(d),
    "getitem": lambda d: d["a"],
    "setitem": lambda d: d.__setitem__("a", 1),
    "delitem": lambda d: d.__delitem__("a"),
    "contains": lambda d: "a" in d,
    "iter": lambda d: iter(d),
    "keys": lambda d: list(d.keys()),
    "values": lambda d: list(d.values()),
    "items": lambda d: list(d.items()),
    "reversed": lambda d: reversed(d),
    "get": lambda d: d.get("a"),
    "setdefault": lambda d: d.setdefault("a", 1),
    "pop": lambda d: d.pop("a", None),
    "popitem": lambda d: d.popitem(),
    "update": lambda d: d.update({"a": 1}),
    "update_pairs": lambda d: d.update([("a", 1)]),
    "clear": lambda d: d.clear(),
    "copy": lambda d: d.copy(),
    "eq": lambda d: d == {},
    "or": lambda d: d | {},
    "ior": lambda d: d.__ior__({}),
    "sync": lambda d: d.sync(),
    "verify": lambda d: d.verify(),
    "compact": lambda d: d.compact(),
    "stats": lambda d: d.stats(),
}


@pytest.mark.parametrize("op", sorted(CLOSED_DICT_OPS))
def test_every_operation_on_a_closed_dict_raises_closed_error(tmp_path, op):
    d = mmstore.Dict(tmp_path / "d.mms")
    d["a"] = 1
    d.close()
    with pytest.raises(mmstore.ClosedError) as info:
        CLOSED_DICT_OPS[op](d)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, mmstore.Error)
    assert str(tmp_path / "d.mms") in str(info.value)
    assert d.closed and d.path == str(tmp_path / "d.mms")


def test_iterator_of_a_closed_dict_raises_closed_error(tmp_path):
    d = mmstore.Dict(tmp_path / "d.mms")
    d.update({1: 1, 2: 2})
    it = iter(d.items())
    assert next(it) == (1, 1)
    d.close()
    with pytest.raises(mmstore.ClosedError):
        next(it)


def test_str_and_pathlib_paths_are_accepted(tmp_path):
    with mmstore.Dict(str(tmp_path / "s.mms")) as d:
        d["x"] = 1
        assert d.path == str(tmp_path / "s.mms")
    with mmstore.Dict(pathlib.Path(tmp_path / "s.mms")) as d:
        assert d["x"] == 1
        assert isinstance(d.path, str)


def test_create_true_refuses_an_existing_store(tmp_path):
    path = tmp_path / "d.mms"
    mmstore.Dict(path).close()
    with pytest.raises(mmstore.StoreExistsError) as info:
        mmstore.Dict(path, create=True)
    assert isinstance(info.value, FileExistsError)
    assert str(path) in str(info.value)
    with mmstore.Dict(path, create=False):  # and the store was left intact and unlocked
        pass


def test_create_false_refuses_a_missing_store(tmp_path):
    path = tmp_path / "missing.mms"
    with pytest.raises(mmstore.StoreNotFoundError) as info:
        mmstore.Dict(path, create=False)
    assert isinstance(info.value, FileNotFoundError)
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert not path.exists()


def test_new_store_is_private_by_default(tmp_path):
    mmstore.Dict(tmp_path / "d.mms").close()
    assert os.stat(tmp_path / "d.mms").st_mode & 0o777 == 0o600


def test_custom_mode_is_honoured(tmp_path):
    old = os.umask(0)
    try:
        mmstore.Dict(tmp_path / "d.mms", mode=0o640).close()
        mmstore.Dict(tmp_path / "e.mms", mode=0o444).close()
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "d.mms").st_mode & 0o777 == 0o640
    assert os.stat(tmp_path / "e.mms").st_mode & 0o777 == 0o444


def test_invalid_mode_is_rejected(tmp_path):
    with pytest.raises(ValueError):
        mmstore.Dict(tmp_path / "d.mms", mode=0o10000)
    assert not (tmp_path / "d.mms").exists()


# -- locking and read-only ------------------------------------------------------------------------------------


def test_two_writable_handles_share_a_store_and_see_each_others_writes(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d, mmstore.Dict(path) as e:
        d["x"] = 1
        e.update({f"k{i}": "v" * 50 for i in range(20_000)})  # grows the file under d
        assert d["k19999"] == "v" * 50 and len(d) == 20_001
        del d["x"]
        assert "x" not in e
        with pytest.raises(mmstore.StoreLockedError) as info:
            d.compact()  # replacing the file needs it to itself
        assert info.value.path == str(path)
        e.verify()
    with mmstore.Dict(path) as d:
        assert len(d) == 20_000
        d.compact()


def test_writer_in_another_process_sees_and_extends_the_store(tmp_path):
    path = tmp_path / "d.mms"
    code = (
        "import sys, mmstore\n"
        "with mmstore.Dict(sys.argv[1]) as d:\n"
        "    print(d['from_parent'])\n"
        "    d['from_child'] = 2\n"
    )
    with mmstore.Dict(path) as d:
        d["from_parent"] = 1
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["1"]
        assert d["from_child"] == 2


def test_readonly_handles_coexist_and_refuse_writes(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d.update({"a": 1, "b": 2})
    r1 = mmstore.Dict(path, readonly=True)
    r2 = mmstore.Dict(path, readonly=True)
    try:
        assert r1.copy() == r2.copy() == {"a": 1, "b": 2}
        writes = [
            lambda r: r.__setitem__("c", 3),
            lambda r: r.__delitem__("a"),
            lambda r: r.pop("a"),
            lambda r: r.popitem(),
            lambda r: r.setdefault("z", 0),
            lambda r: r.update({"c": 3}),
            lambda r: r.clear(),
            lambda r: r.compact(),
        ]
        for w in writes:
            with pytest.raises(mmstore.ReadOnlyError) as info:
                w(r1)
            assert str(path) in str(info.value)
        assert r1.copy() == {"a": 1, "b": 2}
        r1.verify()
        r1.sync()  # nothing to write: harmless
        with mmstore.Dict(path) as w:  # a writer may join the readers; they see its writes
            w["c"] = 3
        assert r1["c"] == 3 and r2.copy() == {"a": 1, "b": 2, "c": 3}
    finally:
        r1.close()
        r2.close()
    with mmstore.Dict(path) as d:
        assert d.copy() == {"a": 1, "b": 2, "c": 3}


def test_readonly_open_of_a_missing_store_raises_not_found(tmp_path):
    with pytest.raises(mmstore.StoreNotFoundError):
        mmstore.Dict(tmp_path / "none.mms", readonly=True)
    assert not (tmp_path / "none.mms").exists()


# -- maintenance ---------------------------------------------------------------------------------------------


def test_stats_reports_entries_and_sizes(d):
    s = d.stats()
    assert set(s) == {"entries", "file_bytes", "allocated_bytes", "arena_top", "free_bytes", "capacity"}
    assert s["entries"] == 0
    d.update((i, "x" * 50) for i in range(1000))
    s = d.stats()
    assert s["entries"] == 1000
    assert s["capacity"] >= 1000
    assert s["arena_top"] <= s["file_bytes"]
    assert s["file_bytes"] == os.path.getsize(d.path)
    assert all(isinstance(v, int) and v >= 0 for v in s.values())
    del d[0]
    assert d.stats()["entries"] == 999


def test_compact_shrinks_the_file_and_keeps_content(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d.update((i, f"value {i} " + "x" * 200) for i in range(20_000))
        for i in range(20_000):
            if i % 10:
                del d[i]
        d["tail"] = "last"
        expected = d.copy()
        before = d.stats()["file_bytes"]
        d.compact()
        after = d.stats()
        assert after["file_bytes"] < before / 3
        assert os.path.getsize(path) == after["file_bytes"]
        assert d.copy() == expected and list(d) == list(expected)
        d.verify()
        d["after compact"] = 1  # still writable
    with mmstore.Dict(path) as d:
        assert len(d) == len(expected) + 1
        assert list(d)[:-1] == list(expected)
        d.verify()


def test_sync_and_durable_mode_keep_data(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d["a"] = 1
        d.sync()
        d["b"] = 2
        d.sync()
    with mmstore.Dict(path, durable=True) as d:
        for i in range(20):
            d[i] = i
        del d["a"]
        d.update({"u": 1})
    with mmstore.Dict(path) as d:
        assert d.copy() == {"b": 2, **{i: i for i in range(20)}, "u": 1}


def test_data_survives_an_abandoned_handle(tmp_path):
    # _abandon drops the mapping without a clean close, like a killed process; the next open repairs.
    path = tmp_path / "d.mms"
    d = mmstore.Dict(path)
    d.update((i, str(i)) for i in range(500))
    d._abandon()
    with mmstore.Dict(path) as d2:
        d2.verify()
        assert len(d2) == 500 and d2[499] == "499"


def test_verify_passes_after_random_operations(tmp_path):
    rng = random.Random(3)
    with mmstore.Dict(tmp_path / "d.mms") as d:
        for _ in range(5000):
            k = rng.randrange(800)
            r = rng.random()
            if r < 0.6:
                d[k] = "v" * rng.randrange(30)
            elif r < 0.9:
                d.pop(k, None)
            else:
                d.setdefault(str(k), [k])
        d.verify()
        d.compact()
        d.verify()


def test_verify_reports_a_corrupt_record(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d["key"] = "a distinctive value that is long enough to live in a record"
    data = bytearray(path.read_bytes())
    pos = data.find(b"distinctive")
    assert pos > 0
    data[pos] ^= 0xFF
    path.write_bytes(data)
    with mmstore.Dict(path) as d:
        with pytest.raises(mmstore.CorruptFileError) as info:
            d["key"]
        assert str(path) in str(info.value) and info.value.path == str(path)
        with pytest.raises(mmstore.CorruptFileError) as info:
            d.verify()
        assert str(path) in str(info.value)


# -- pickling of handles ----------------------------------------------------------------------------------------


def test_pickled_handle_reopens_the_same_store(tmp_path):
    path = tmp_path / "d.mms"
    d = mmstore.Dict(path, allow_pickle=False)
    d.update({"a": 1, "b": (2, 3)})
    blob = pickle.dumps(d)
    d2 = pickle.loads(blob)  # while the sender still has it open: both share the store
    try:
        d2["c"] = 4
        assert d["c"] == 4
        d.close()
        assert type(d2) is mmstore.Dict
        assert d2.path == str(path)
        assert d2.allow_pickle is False
        assert d2.copy() == {"a": 1, "b": (2, 3), "c": 4}
    finally:
        d2.close()


def test_pickled_handle_of_a_deleted_store_does_not_recreate_it(tmp_path):
    path = tmp_path / "d.mms"
    d = mmstore.Dict(path)
    d.close()
    blob = pickle.dumps(d)
    path.unlink()
    with pytest.raises(mmstore.StoreNotFoundError):
        pickle.loads(blob)
    assert not path.exists()


def _child_read_dict(handle):
    try:
        return sorted(handle.items()), handle.path
    finally:
        handle.close()


def test_pickled_handle_reopens_in_a_spawned_process(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d.update({f"k{i}": [i, str(i)] for i in range(100)})
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        items, child_path = pool.apply(_child_read_dict, (d,))
    assert child_path == str(path)
    assert items == sorted((f"k{i}", [i, str(i)]) for i in range(100))
    with mmstore.Dict(path) as d:  # the child closed it
        assert len(d) == 100


def test_os_level_errors_keep_their_message_path_and_errno(tmp_path):
    import errno as errno_mod

    missing_dir = tmp_path / "no" / "such" / "dir" / "d.mms"
    with pytest.raises(mmstore.StoreNotFoundError) as info:
        mmstore.Dict(missing_dir)
    assert info.value.errno == errno_mod.ENOENT
    assert str(missing_dir) in str(info.value) and "directory does not exist" in str(info.value)
    with pytest.raises(mmstore.StoreNotFoundError) as info:
        mmstore.Dict(tmp_path / "absent.mms", create=False)
    assert "no such store" in str(info.value) and isinstance(info.value, FileNotFoundError)
