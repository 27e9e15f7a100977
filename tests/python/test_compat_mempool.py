"""mmstore.compat.mempool: MemPool.jl's names are thin aliases over mmstore.Pool."""

from __future__ import annotations

import numpy as np
import pytest

import mmstore
from mmstore.compat import mempool


@pytest.fixture(autouse=True)
def fresh_default_pool():
    old = mempool.max_memsize()
    yield
    if mempool._pool is not None:
        mempool._pool.close()
    mempool.max_memsize(old)


def test_mempool_names_map_onto_the_pool(tmp_path):
    mempool.max_memsize("1MiB")
    pool = mempool.default_pool()
    assert isinstance(pool, mmstore.Pool) and pool.max_memory == 1 << 20
    ref = mempool.poolset(np.arange(10.0))
    assert isinstance(ref, mempool.DRef) and mempool.DRef is mmstore.Ref
    np.testing.assert_array_equal(mempool.poolget(ref), np.arange(10.0))
    mempool.copytodisk(ref)
    assert pool.stats()["disk_count"] == 1 and pool.stats()["ram_count"] == 1
    mempool.movetodisk(ref)
    assert pool.stats()["ram_count"] == 0
    assert mmstore.is_mapped(mempool.poolget(ref))
    mempool.savetodisk(ref, tmp_path / "x.mms")
    np.testing.assert_array_equal(mmstore.load(tmp_path / "x.mms"), np.arange(10.0))
    mempool.pooldelete(ref)
    with pytest.raises(KeyError):
        mempool.poolget(ref)


def test_poolset_takes_a_size_and_max_memsize_lowers_the_live_limit():
    mempool.max_memsize(10_000)
    refs = [mempool.poolset(b"x", size=3000) for _ in range(3)]
    assert mempool.default_pool().stats()["ram_bytes"] == 9000
    assert mempool.max_memsize(4000) == 4000
    assert mempool.default_pool().stats()["ram_bytes"] <= 4000
    assert all(mempool.poolget(r) == b"x" for r in refs)


def test_aliases_are_the_native_methods_not_a_second_implementation():
    import inspect

    src = inspect.getsource(mempool)
    assert "_spill_parts" not in src and "pickle.dumps" not in src and "_spill_write" not in src


# -- issue 14: every name MemPool.jl exports has an equivalent ---------------------------------------------------


def test_every_mempool_export_has_an_equivalent():
    exported = ["DRef", "FileRef", "poolset", "poolget", "mmwrite", "mmread", "cleanup", "DEvent", "DFuture"]
    assert all(hasattr(mempool, n) for n in exported)


def test_mmwrite_mmread_and_fileref(tmp_path):
    ref = mempool.mmwrite(tmp_path / "a.mms", np.arange(5.0))
    assert isinstance(ref, mempool.FileRef) and ref.size > 0
    got = mempool.poolget(ref)
    np.testing.assert_array_equal(got, np.arange(5.0))
    assert mmstore.is_mapped(got)
    np.testing.assert_array_equal(mempool.mmread(tmp_path / "a.mms"), np.arange(5.0))
    with open(tmp_path / "b.mms", "wb") as f:
        mempool.mmwrite(f, {"k": [1, 2]})
    assert mempool.mmread(mempool.FileRef(tmp_path / "b.mms")) == {"k": [1, 2]}
    import pickle

    assert pickle.loads(pickle.dumps(ref)) == ref


def test_register_is_the_per_type_mmwrite_mmread(tmp_path):
    class Vec:
        def __init__(self, a):
            self.a = a

    mempool.register(Vec, lambda v: (None, [v.a]), lambda meta, views: Vec(np.frombuffer(views[0], "f8")),
                     name="test_compat_mempool.Vec")
    try:
        got = mempool.mmread(mempool.mmwrite(tmp_path / "v.mms", Vec(np.arange(3.0))))
        assert type(got) is Vec and mmstore.is_mapped(got.a)
    finally:
        mmstore._pool._SPILL_DUMP.pop(Vec, None)


def test_cleanup_closes_the_default_pool():
    pool = mempool.default_pool()
    mempool.poolset(b"x")
    mempool.cleanup()
    assert pool.closed and mempool.default_pool() is not pool


def test_devent_and_dfuture_cross_processes():
    import multiprocessing

    ev, fut = mempool.DEvent(), mempool.DFuture()
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=_child_sets, args=(ev, fut))
    p.start()
    assert ev.wait(120) and ev.isset()
    assert fut.fetch(120) == {"answer": 42} and fut.isready()
    p.join(120)
    assert p.exitcode == 0
    with pytest.raises(ValueError, match="already"):
        fut.put(1)
    late = mempool.DEvent()
    assert late.wait(0.01) is False
    for x in (ev, fut, late):
        x.close()


def _child_sets(ev, fut):
    fut.put({"answer": 42})
    ev.notify()


def test_poolset_with_a_dask_worker_address_places_the_object_there():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as c, \
            distributed.Client(c) as client:
        (addr,) = client.scheduler_info()["workers"]
        ref = mempool.poolset(np.arange(4.0), addr)
        np.testing.assert_array_equal(mempool.poolget(ref), np.arange(4.0))
        assert mempool._pool is None or ref.pool_id != mempool.default_pool()._id  # not in this process
        where = client.run(lambda: mempool.default_pool().stats()["ram_count"], workers=[addr])
        assert where[addr] == 1
        mempool.pooldelete(ref)
        assert client.run(lambda: mempool.default_pool().stats()["ram_count"], workers=[addr])[addr] == 0
