"""mmstore.Pool: the MemPool operations, accounting, policies, spill format and zero-copy restores,
refs shared across processes, save/load, and clear errors."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import mmstore
from mmstore._pool import parse_bytes, sizeof


@pytest.fixture
def pool(tmp_path):
    with mmstore.Pool(max_memory=1 << 20, spill_dir=tmp_path) as p:
        yield p


def deep_equal(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(deep_equal(x, y) for x, y in zip(a, b))
    return a == b


class Point:
    def __init__(self, x, arr):
        self.x = x
        self.arr = arr

    def __eq__(self, other):
        return type(other) is Point and self.x == other.x and np.array_equal(self.arr, other.arr)


def test_put_get_returns_the_same_object_while_in_ram(pool):
    obj = {"a": [1, 2, 3]}
    ref = pool.put(obj)
    assert pool.get(ref) is obj
    assert ref in pool and len(pool) == 1
    assert pool.stats()["hits"] == 1


@pytest.mark.parametrize(
    "value",
    [
        b"raw bytes" * 100,
        bytearray(b"abc" * 1000),
        "text é",
        12345678901234567890,
        None,
        [1, "two", 3.0, (4, b"5")],
        {"nested": {"arrays": [np.arange(10), np.ones((3, 4), dtype=np.float32)]}, "n": 1},
        Point(3, np.arange(7, dtype=np.int16)),
        np.zeros((0, 5)),
        np.array(3.5),
        np.arange(12, dtype=">i4").reshape(3, 4),
        np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        np.arange(20)[::3],
        np.array(["a", "bcd"]),
        np.array([1, "x", None], dtype=object),
        np.arange(4).astype("datetime64[s]"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_spilled_values_round_trip(pool, value):
    ref = pool.put(value)
    pool.move_to_disk(ref)
    assert pool.stats()["ram_count"] == 0
    assert deep_equal(pool.get(ref), value)


def test_numpy_arrays_anywhere_come_back_as_read_only_views_of_the_mapping(pool):
    value = {"a": np.arange(1000.0), "b": [np.ones(500, dtype=np.int8)], "c": Point(1, np.zeros(64))}
    ref = pool.put(value)
    pool.move_to_disk(ref)
    back = pool.get(ref)
    for arr in (back["a"], back["b"][0], back["c"].arr):
        assert mmstore.is_mapped(arr)
        assert not arr.flags.writeable
        assert arr.ctypes.data % 4096 == 0  # page-aligned buffers
    with pytest.raises(ValueError):
        back["a"][0] = 1.0
    assert not mmstore.is_mapped(value["a"])


def test_top_level_array_restore_is_zero_copy_and_outlives_delete_and_close(tmp_path):
    pool = mmstore.Pool(max_memory="1MiB", spill_dir=tmp_path)
    arr = np.random.default_rng(1).random(1 << 18)  # 2 MiB: larger than the limit, straight to disk
    ref = pool.put(arr)
    assert pool.stats()["disk_count"] == 1 and pool.stats()["ram_bytes"] == 0
    back = pool.get(ref)
    assert mmstore.is_mapped(back)
    pool.delete(ref)
    pool.close()
    np.testing.assert_array_equal(back, arr)


def test_memoryview_restores_as_a_view(pool):
    mv = memoryview(np.arange(6, dtype=np.int32)).cast("B").cast("i", (2, 3))
    ref = pool.put(mv)
    pool.move_to_disk(ref)
    back = pool.get(ref)
    assert type(back) is memoryview and back.readonly
    assert back.tolist() == mv.tolist()
    assert mmstore.is_mapped(back)


def test_copy_to_disk_keeps_the_ram_copy_and_later_eviction_writes_nothing(pool):
    arr = np.arange(1000)
    ref = pool.put(arr)
    pool.copy_to_disk(ref)
    s = pool.stats()
    assert s["ram_count"] == 1 and s["disk_count"] == 1 and s["spills"] == 1
    assert pool.get(ref) is arr
    pool.move_to_disk(ref)
    assert pool.stats()["spills"] == 1  # the file was already there


def test_delete_frees_ram_and_disk(pool):
    ref = pool.put(np.arange(100))
    pool.copy_to_disk(ref)
    files = os.listdir(pool.directory)
    assert f"{ref.id}.spill" in files
    pool.delete(ref)
    assert f"{ref.id}.spill" not in os.listdir(pool.directory)
    assert pool.stats()["ram_bytes"] == 0 and len(pool) == 0
    with pytest.raises(KeyError):
        pool.get(ref)
    with pytest.raises(KeyError):
        pool.delete(ref)


def test_lru_spills_the_least_recently_used(tmp_path):
    with mmstore.Pool(max_memory=300, spill_dir=tmp_path, policy="lru") as p:
        a, b, c = (p.put(bytes([i]) * 100) for i in range(3))
        p.get(a)
        p.put(b"d" * 100)
        assert p.stats()["spills"] == 1
        misses = p.stats()["misses"]
        p.get(a), p.get(c)
        assert p.stats()["misses"] == misses
        p.get(b)
        assert p.stats()["misses"] == misses + 1 and p.stats()["restores"] == 1


def test_mru_spills_the_most_recently_used(tmp_path):
    with mmstore.Pool(max_memory=300, spill_dir=tmp_path, policy="mru") as p:
        a, b, c = (p.put(bytes([i]) * 100) for i in range(3))
        p.get(a)
        p.put(b"d" * 100)
        misses = p.stats()["misses"]
        p.get(b), p.get(c)
        assert p.stats()["misses"] == misses
        p.get(a)
        assert p.stats()["misses"] == misses + 1


def test_sizes_exact_for_buffers_and_caller_size_wins(pool):
    assert sizeof(np.zeros((10, 10))) == 800
    assert sizeof(b"x" * 77) == 77
    assert sizeof(bytearray(5)) == 5
    assert sizeof(memoryview(b"x" * 9)) == 9
    assert sizeof([np.zeros(1000)] * 100) >= 800_000  # estimated through containers
    assert sizeof({"k": np.zeros(1000)}) >= 8000
    assert sizeof(Point(1, np.zeros(1000))) >= 8000
    ref = pool.put(b"x" * 10, size=12345)
    assert ref.size == 12345 and pool.stats()["ram_bytes"] == 12345


def test_mmstore_stores_count_their_file_size(tmp_path):
    with mmstore.Dict(tmp_path / "d.mms") as d:
        d.update((i, "x" * 100) for i in range(1000))
        assert sizeof(d) == d.stats()["file_bytes"]


def test_lowering_max_memory_spills_until_it_holds(pool):
    refs = [pool.put(b"x" * 1000) for _ in range(10)]
    pool.max_memory = "3000"
    assert pool.stats()["ram_bytes"] <= 3000
    assert all(pool.get(r) == b"x" * 1000 for r in refs)


def test_parse_bytes_units_and_errors():
    assert parse_bytes("2GiB") == 2 << 30
    assert parse_bytes("500 MB") == 500_000_000
    assert parse_bytes("1.5kib") == 1536
    assert parse_bytes(10) == 10
    for bad in ("lots", "-1", "2 parsecs"):
        with pytest.raises(ValueError):
            parse_bytes(bad)
    with pytest.raises(TypeError):
        parse_bytes(True)
    with pytest.raises(ValueError, match="policy"):
        mmstore.Pool(policy="fifo")


def test_save_and_load_a_standalone_file(pool, tmp_path):
    value = {"w": np.arange(50.0), "tag": "x"}
    ref = pool.put(value)
    path = tmp_path / "obj.mms"
    pool.save(ref, path)
    back = mmstore.load(path)
    np.testing.assert_array_equal(back["w"], value["w"])
    assert mmstore.is_mapped(back["w"])
    pool.move_to_disk(ref)
    pool.save(ref, tmp_path / "again.mms")  # from disk too
    assert mmstore.load(tmp_path / "again.mms")["tag"] == "x"


def test_damaged_files_are_refused(pool, tmp_path):
    ref = pool.put(np.arange(5000.0))
    path = tmp_path / "obj.mms"
    pool.save(ref, path)
    data = bytearray(path.read_bytes())
    data[5000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(mmstore.CorruptFileError):
        mmstore.load(path)
    path.write_bytes(bytes(data[:6000]))
    with pytest.raises(mmstore.TruncatedFileError):
        mmstore.load(path)
    path.write_bytes(b"not a spill file" * 10)
    with pytest.raises(mmstore.ForeignFileError):
        mmstore.load(path)
    with pytest.raises(mmstore.StoreNotFoundError):
        mmstore.load(tmp_path / "missing.mms")


def test_spill_file_cut_short_is_never_trusted(pool):
    ref = pool.put(np.arange(10000.0))
    pool.move_to_disk(ref)
    f = os.path.join(pool.directory, f"{ref.id}.spill")
    os.truncate(f, os.path.getsize(f) - 8)
    with pytest.raises(mmstore.TruncatedFileError):
        pool.get(ref)


def test_refs_pickle_and_compare(pool):
    ref = pool.put(1)
    again = pickle.loads(pickle.dumps(ref))
    assert again == ref and hash(again) == hash(ref)
    assert again.get() == 1
    assert pool.put(1) != ref


READ_REF = textwrap.dedent(
    """
    import pickle, sys, numpy as np, mmstore
    ref = pickle.loads(bytes.fromhex(sys.argv[1]))
    try:
        v = ref.get()
    except KeyError:
        print("missing"); sys.exit(0)
    print(type(v).__name__, float(np.asarray(v["a"]).sum()), mmstore.is_mapped(v["a"]))
    """
)


def _read_in_child(ref) -> str:
    out = subprocess.run([sys.executable, "-c", READ_REF, pickle.dumps(ref).hex()], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_another_process_reads_a_ref_once_on_disk_or_shared(pool):
    ref = pool.put({"a": np.arange(100.0)})
    assert _read_in_child(ref) == "missing"
    pool.copy_to_disk(ref)
    assert _read_in_child(ref) == "dict 4950.0 True"
    ref2 = pool.share(pool.put({"a": np.ones(10)}))
    assert pool.stats()["shared_bytes"] > 0
    assert _read_in_child(ref2) == "dict 10.0 True"
    pool.delete(ref2)
    assert _read_in_child(ref2) == "missing"


def test_get_of_a_ref_from_another_pool_reads_its_files(tmp_path):
    with mmstore.Pool(spill_dir=tmp_path) as a, mmstore.Pool(spill_dir=tmp_path) as b:
        ref = a.put(b"shared")
        a.copy_to_disk(ref)
        assert b.get(ref) == b"shared"
        assert ref not in b


def test_close_removes_files_and_later_use_raises(tmp_path):
    p = mmstore.Pool(max_memory=10, spill_dir=tmp_path)
    ref = p.put(b"x" * 100)
    d = p.directory
    assert os.path.isdir(d)
    p.close()
    p.close()
    assert not os.path.exists(d)
    with pytest.raises(mmstore.ClosedError):
        p.get(ref)
    with pytest.raises(mmstore.ClosedError):
        p.put(1)
    assert "closed" in repr(p)


def test_garbage_collected_pool_removes_its_directory(tmp_path):
    p = mmstore.Pool(spill_dir=tmp_path)
    d = p.directory
    del p
    import gc

    gc.collect()
    assert not os.path.exists(d)


def test_bad_arguments_raise_clear_errors(pool):
    with pytest.raises(TypeError, match="Ref"):
        pool.get(1)
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(pool)
    with pytest.raises(ValueError):
        pool.put(1, size=-5)


class Unpicklable:
    def __init__(self):
        self.lock = threading.Lock()


def test_unpicklable_objects_stay_in_ram_and_are_skipped_by_eviction(tmp_path):
    with mmstore.Pool(max_memory=1000, spill_dir=tmp_path) as p:
        u = p.put(Unpicklable(), size=400)
        with pytest.raises(mmstore.EncodeError):
            p.move_to_disk(u)
        others = [p.put(b"y" * 400) for _ in range(3)]
        assert isinstance(p.get(u), Unpicklable)
        assert p.stats()["ram_bytes"] <= 1000
        assert all(p.get(r) == b"y" * 400 for r in others)


def test_threads_share_a_pool(tmp_path):
    with mmstore.Pool(max_memory=20_000, spill_dir=tmp_path) as p:
        errors = []

        def work(k):
            try:
                for i in range(200):
                    v = np.full(100, k * 1000 + i)
                    r = p.put(v)
                    assert np.array_equal(p.get(r), v)
                    if i % 3 == 0:
                        p.delete(r)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors
        assert p.stats()["ram_bytes"] <= 20_000


def test_a_forked_child_closing_its_copy_keeps_the_parents_files(tmp_path):
    with mmstore.Pool(max_memory=10, spill_dir=tmp_path) as p:
        ref = p.put(b"x" * 100)  # on disk
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            p.close()
            os._exit(0)
        os.waitpid(pid, 0)
        assert p.get(ref) == b"x" * 100


def test_spill_dir_is_created_when_missing(tmp_path):
    with mmstore.Pool(spill_dir=tmp_path / "a" / "b") as p:
        assert p.directory.startswith(str(tmp_path / "a" / "b"))


def test_non_contiguous_and_typed_memoryviews_round_trip(pool):
    arr = np.arange(24, dtype=">i4").reshape(4, 6)
    for mv in (memoryview(arr)[::2], memoryview(np.arange(10.0))[::3]):
        ref = pool.put(mv)
        pool.move_to_disk(ref)
        back = pool.get(ref)
        assert type(back) is memoryview
        assert back.tobytes() == mv.tobytes()
