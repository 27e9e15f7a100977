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
