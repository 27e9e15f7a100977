"""mmstore.dask: PoolData as a worker's data store (manual-evict protocol) and PoolWorker, on a real
LocalCluster with 2 worker processes whose data exceeds their pool's memory limit."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import mmstore
from mmstore import _core

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

from distributed import Client, LocalCluster  # noqa: E402

from mmstore.dask import PoolData, SpilledSize  # noqa: E402


@pytest.fixture
def data(tmp_path):
    d = PoolData(max_memory=3000, spill_dir=tmp_path)
    yield d
    d.close()


def test_pool_data_is_a_mutable_mapping_of_any_hashable_key(data):
    keys = ["x", ("chunk", 0, 1), ("name-abc", 3), 7]
    for i, k in enumerate(keys):
        data[k] = np.full(100, i)  # 800 bytes each: the fourth put spills the first
    assert len(data) == 4 and set(data) == set(keys)
    for i, k in enumerate(keys):
        np.testing.assert_array_equal(data[k], np.full(100, i))
    data["x"] = b"replaced"
    assert data["x"] == b"replaced" and len(data) == 4
    del data[("name-abc", 3)]
    assert ("name-abc", 3) not in data
    with pytest.raises(KeyError):
        data["missing"]
    assert data.stats()["spills"] >= 1


def test_manual_evict_protocol(data):
    assert not data.fast and data.evict() == -1
    data["a"] = np.zeros(100)
    data["b"] = np.ones(100)
    assert len(data.fast) == 2 and len(data.slow) == 0
    assert data.spilled_total == SpilledSize(0, 0)
    assert data.evict() == 800
    assert list(data.slow) == ["a"] and list(data.fast) == ["b"]
    memory, disk = data.spilled_total
    assert memory == 800 and disk >= 800
    back = data["a"]
    assert mmstore.is_mapped(back) and "a" in data.fast


def test_evict_never_raises_and_keeps_the_value_when_the_disk_is_full(data):
    data["a"] = np.zeros(100)
    try:
        _core._inject_write_failures(errno.ENOSPC, 1)
        assert data.evict() == -1
    finally:
        _core._inject_write_failures(0, 0)
    assert "a" in data.fast
    assert data.evict() == 800


def test_setitem_never_fails_a_task_when_spilling_fails(data):
    data["a"] = np.zeros(300)  # 2400 bytes
    try:
        _core._inject_write_failures(errno.ENOSPC, 5)
        data["b"] = np.ones(300)  # would need "a" spilled: kept in memory above the limit instead
    finally:
        _core._inject_write_failures(0, 0)
    assert len(data.fast) == 2
    np.testing.assert_array_equal(data["b"], np.ones(300))


def test_spill_dir_defaults_to_the_worker_local_directory(tmp_path):
    d = PoolData(max_memory="1MiB", worker_local_directory=str(tmp_path))
    try:
        assert d.pool.directory.startswith(str(tmp_path / "mmstore-spill"))
    finally:
        d.close()


def _worker_report(dask_worker):
    import mmstore

    d = dask_worker.data
    restored = [d[k] for k in list(d.slow)]
    arrays = [v for v in restored if isinstance(v, np.ndarray)]
    return {
        "type": type(d).__name__,
        "stats": d.stats(),
        "restored": len(arrays),
        "zero_copy": sum(mmstore.is_mapped(v) and not v.flags.writeable for v in arrays),
    }


def test_local_cluster_with_two_worker_processes_spills_through_mmstore(tmp_path):
    # 16 chunks of 4 MB = 64 MB of persisted data, 2 workers with an 8 MiB pool each: most of it is spilled.
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, memory_limit="2GiB", dashboard_address=None,
        host="127.0.0.1", local_directory=str(tmp_path),
        data=(PoolData, {"max_memory": "8MiB"}),
    ) as cluster, Client(cluster) as client:
        x = da.random.RandomState(0).random_sample((4000, 2000), chunks=(250, 2000))
        full = x.compute()  # the same chunks again (seeded), as one local numpy array
        x = x.persist()
        distributed.wait(x)
        assert float((x * 2 + 1).sum().compute()) == pytest.approx(float((full * 2 + 1).sum()))
        np.testing.assert_allclose((x.T @ x).compute(), full.T @ full)
        reports = client.run(_worker_report)
    assert len(reports) == 2
    for r in reports.values():
        assert r["type"] == "PoolData"
        s = r["stats"]
        assert s["spills"] > 0 and s["restores"] > 0 and s["ram_bytes"] <= 8 << 20
        assert r["restored"] > 0 and r["zero_copy"] == r["restored"]
    left = [d for _, dirs, _ in os.walk(tmp_path) for d in dirs if d.startswith("mmstore-pool-")]
    assert left == []  # no pool directory outlives the cluster


def test_pool_worker_sizes_its_pool_from_the_memory_limit():
    from mmstore.dask import PoolWorker

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, memory_limit="1GiB",
                      worker_class=PoolWorker, dashboard_address=None) as cluster, Client(cluster) as client:
        assert client.submit(lambda: 21 * 2).result() == 42
        (w,) = cluster.workers.values()
        assert isinstance(w.data, PoolData)
        assert w.data.pool.max_memory == int((1 << 30) * 0.6)


def test_dask_worker_cli_accepts_the_pool_worker_class(tmp_path):
    with LocalCluster(n_workers=0, processes=False, protocol="tcp", dashboard_address=None, host="127.0.0.1") as cluster, \
            Client(cluster) as client:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        proc = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address, "--nworkers", "1",
             "--nthreads", "1", "--memory-limit", "512MiB", "--worker-class", "mmstore.dask.PoolWorker",
             "--local-directory", str(tmp_path), "--no-dashboard"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            client.wait_for_workers(1, timeout=60)
            kinds = client.run(lambda dask_worker: (type(dask_worker).__name__, type(dask_worker.data).__name__))
            assert list(kinds.values()) == [("PoolWorker", "PoolData")]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
