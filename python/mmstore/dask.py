"""Dask integration: an mmstore :class:`~mmstore.Pool` as the data store of ``distributed`` workers.

* :class:`PoolData` -- a ``MutableMapping`` for a worker's ``data=``::

      LocalCluster(data=(mmstore.dask.PoolData, {"max_memory": "1GiB"}))

  Keys are any hashable Dask key. Values live in a Pool: when they exceed ``max_memory`` the least recently
  used are spilled to mmstore spill files, and a spilled value comes back as zero-copy read-only views of
  the file mapping. It implements distributed's manual-evict protocol (``fast``, ``slow``, ``evict()``,
  ``spilled_total``; ``distributed.spill.ManualEvictProto``), so the worker's memory monitor also drives
  spilling when the process as a whole uses too much memory.

* :class:`PoolWorker` -- a ``distributed.Worker`` whose data is a PoolData sized from the worker's memory
  limit: ``dask worker SCHEDULER --worker-class mmstore.dask.PoolWorker``.

Differences from Dask's default ``SpillBuffer`` worth knowing: values read back from disk are *read-only*
numpy arrays (views of the mapping; tasks must not modify their inputs in place -- Dask's own rule); a
value's spill file is kept after it is read back, so evicting it again writes nothing.

Like SpillBuffer, PoolData never fails a task because spilling failed: a full disk or an unpicklable value
is logged and the value stays in memory (even above ``max_memory``); ``evict()`` then returns -1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, NamedTuple

from ._pool import Pool, parse_bytes

__all__ = ["PoolData", "PoolWorker", "SpilledSize", "read_records", "mapping_lookup"]

try:  # distributed's own type, so that its code sees what it expects
    from distributed.spill import SpilledSize
except ImportError:  # pragma: no cover - distributed not installed

    class SpilledSize(NamedTuple):  # type: ignore[no-redef]
        memory: int
        disk: int


def _auto_max_memory() -> int:
    """The default: distributed's ``memory.target`` fraction (0.6) of the machine's memory limit."""
    try:
        import dask
        from distributed.system import MEMORY_LIMIT

        frac = dask.config.get("distributed.worker.memory.target") or 0.6
        return int(MEMORY_LIMIT * frac)
    except ImportError:  # pragma: no cover
        return parse_bytes("2GiB")


class _Tier(Mapping):
    """``PoolData.fast`` (values in RAM) or ``.slow`` (values only on disk): live read-only views."""

    def __init__(self, data: "PoolData", in_ram: bool):
        self._data = data
        self._in_ram = in_ram

    def _has(self, ref) -> bool:
        return (ref.id in self._data.pool._order) == self._in_ram

    def __getitem__(self, key):
        ref = self._data._refs[key]
        if not self._has(ref):
            raise KeyError(key)
        return self._data.pool.get(ref)

    def __iter__(self):
        return iter([k for k, r in list(self._data._refs.items()) if self._has(r)])

    def __len__(self) -> int:
        n = len(self._data.pool._order)
        return n if self._in_ram else len(self._data._refs) - n

    def __contains__(self, key) -> bool:
        ref = self._data._refs.get(key)
        return ref is not None and self._has(ref)


class PoolData(MutableMapping):
    """A worker's key -> value store backed by an mmstore Pool (module docstring).

    ``max_memory``: bytes, a string like ``"1GiB"``, or ``"auto"``. ``spill_dir``: defaults to the worker's
    local directory (passed by distributed as ``worker_local_directory``), else the system temp directory.
    """

    def __init__(self, max_memory="auto", spill_dir=None, policy: str = "lru", *, worker_local_directory=None):
        if spill_dir is None and worker_local_directory is not None:
            spill_dir = os.path.join(worker_local_directory, "mmstore-spill")
        limit = _auto_max_memory() if max_memory == "auto" else parse_bytes(max_memory)
        self.pool = Pool(limit, spill_dir, policy)
        self._refs: dict = {}
        self.fast = _Tier(self, True)
        self.slow = _Tier(self, False)

    def __setitem__(self, key, value) -> None:
        old = self._refs.pop(key, None)
        if old is not None:
            self.pool.delete(old)
        self._refs[key] = self.pool._put(value, None, strict=False)

    def __getitem__(self, key):
        return self.pool.get(self._refs[key])

    def __delitem__(self, key) -> None:
        self.pool.delete(self._refs.pop(key))

    def __contains__(self, key) -> bool:
        return key in self._refs

    def __iter__(self):
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def evict(self) -> int:
        """Spill one value (per the pool's policy); its in-memory size, or -1 if nothing could be spilled.

        Never raises: failures are logged and the value stays in memory (ManualEvictProto).
        """
        try:
            return self.pool._evict_one()
        except Exception:  # pragma: no cover - defensive: the protocol forbids raising
            return -1

    @property
    def spilled_total(self) -> SpilledSize:
        """(in-memory size, file bytes) of the values currently only on disk."""
        pool = self.pool
        with pool._lock:
            memory = disk = 0
            for id, e in pool._entries.items():
                if id not in pool._order:
                    memory += e.size
                    disk += e.disk
        return SpilledSize(memory, disk)

    def stats(self) -> dict:
        return self.pool.stats()

    def close(self) -> None:
        self._refs.clear()
        self.pool.close()

    def __repr__(self):
        return f"<mmstore.dask.PoolData {len(self.fast)} in memory, {len(self.slow)} spilled, {self.pool!r}>"


def _worker_class():
    from distributed import Worker
    from distributed.worker_memory import parse_memory_limit

    import logging

    class PoolWorker(Worker):
        """A ``distributed.Worker`` storing its data in an mmstore Pool (:class:`PoolData`).

        The pool's ``max_memory`` is ``pool_max_memory`` if given, else distributed's ``memory.target``
        fraction of the worker's memory limit. An explicit ``data=`` argument wins.
        """

        def __init__(self, *args, pool_max_memory=None, **kwargs):
            if kwargs.get("data") is None:
                if pool_max_memory is None:
                    import dask

                    limit = parse_memory_limit(kwargs.get("memory_limit", "auto"), kwargs.get("nthreads") or 1,
                                               logger=logging.getLogger("mmstore.dask"))
                    frac = dask.config.get("distributed.worker.memory.target") or 0.6
                    pool_max_memory = int(limit * frac) if limit else "auto"
                kwargs["data"] = (PoolData, {"max_memory": pool_max_memory})
            super().__init__(*args, **kwargs)

        async def close(self, *args, **kwargs):
            try:
                return await super().close(*args, **kwargs)
            finally:
                if isinstance(self.data, PoolData):
                    self.data.close()

    PoolWorker.__module__ = __name__
    PoolWorker.__qualname__ = "PoolWorker"  # picklable by reference (nannies send the class)
    return PoolWorker


if TYPE_CHECKING:  # made on first access by __getattr__ below
    from distributed import Worker

    class PoolWorker(Worker):
        def __init__(self, *args: Any, pool_max_memory: Any = None, **kwargs: Any) -> None: ...
        async def close(self, *args: Any, **kwargs: Any) -> Any: ...  # type: ignore[override]


def __getattr__(name):
    # PoolWorker subclasses distributed.Worker, built on first access so that importing mmstore.dask
    # (for PoolData) does not import distributed's worker machinery.
    if name == "PoolWorker":
        cls = _worker_class()
        globals()["PoolWorker"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------------------
# Typed records on a Dask cluster: a RecordArray file as a dask.dataframe, lookups in a Mapping file

_OPEN_FILES: dict = {}  # (kind, path) -> the RecordArray / Mapping this worker process opened (once)


def _opened(kind: str, path: str):
    store = _OPEN_FILES.get((kind, path))
    if store is None or store.closed:
        from ._records import Mapping, RecordArray

        store = _OPEN_FILES[(kind, path)] = (RecordArray if kind == "array" else Mapping)(path)
    return store


def _records_partition(part):
    """One partition of :func:`read_records`: rows ``start:stop`` of the file, mapped by this worker."""
    path, start, stop, columns = part
    from ._arrow import to_pandas

    df = to_pandas(_opened("array", path), start, stop, columns)
    df.index = __import__("pandas").RangeIndex(start, stop)
    return df


def read_records(path, npartitions: int | None = None, columns=None):
    """A ``dask.dataframe`` of a RecordArray file, one partition per row range.

    Each task carries only ``(path, start, stop)``: workers map the file themselves (opened once per worker
    process), so no record data goes through the scheduler or between workers, and the graph's size depends
    on ``npartitions`` only, not on the file's size. ``npartitions`` defaults to one per 1M records. The
    index is the record number (divisions are known). Fixed-width columns come out as read-only views of
    the worker's mapping; str columns are decoded per partition. ``columns`` (field names) limits what each
    partition converts, as ``read_parquet(columns=)``."""
    import dask.dataframe as dd

    from ._arrow import to_pandas
    from ._records import RecordArray

    path = os.path.abspath(os.fspath(path))
    with RecordArray(path) as arr:
        n = len(arr)
        columns = None if columns is None else list(columns)
        meta = to_pandas(arr, 0, 0, columns)
        meta = meta.copy()  # an empty frame holds no views, so the array can close
    if npartitions is None:
        npartitions = max(1, -(-n // 1_000_000))
    if not isinstance(npartitions, int) or npartitions < 1:
        raise ValueError(f"read_records: npartitions must be a positive int, not {npartitions!r}")
    npartitions = min(npartitions, max(n, 1))
    bounds = [n * i // npartitions for i in range(npartitions + 1)]
    parts = [(path, bounds[i], bounds[i + 1], columns) for i in range(npartitions)]
    import pandas as pd

    meta.index = pd.RangeIndex(0, 0)
    divisions = tuple(bounds[:-1]) + (max(bounds[-1] - 1, 0),)
    return dd.from_map(_records_partition, parts, meta=meta, divisions=divisions, enforce_metadata=False,
                       label="mmstore-read-records")


def _lookup_columns(m, prefix: str):
    """{output column: (value field or None for plain values, pandas dtype)} for a Mapping's values."""
    if m.schema is None:
        # Plain values: a nullable numeric dtype when they are numbers (an object column would be turned into
        # strings by dask's "dataframe.convert-string", the default of some dask versions).
        sample = next(iter(m.values()), None)
        dtype = ("boolean" if isinstance(sample, bool) else "Int64" if isinstance(sample, int)
                 else "Float64" if isinstance(sample, float) else "object")
        return {prefix + "value": (None, dtype)}
    out = {}
    for name, t in m.schema.fields.items():
        tn = getattr(t, "name", "")
        dtype = ("Float64" if tn.startswith("float") else "boolean" if tn == "bool"
                 else ("UInt64" if tn == "uint64" else "Int64") if getattr(t, "dtype", None) else "object")
        out[prefix + name] = (name, dtype)
    return out


def _lookup_partition(df, column: str, path: str, prefix: str):
    import pandas as pd

    m = _opened("mapping", path)
    cols = _lookup_columns(m, prefix)
    found = [m.get(k) for k in df[column].tolist()]
    out = df.copy()
    for out_name, (field, dtype) in cols.items():
        if field is None:
            vals = found
        else:
            vals = [None if r is None else getattr(r, field) for r in found]
        out[out_name] = pd.array(vals, dtype=dtype) if dtype != "object" else pd.Series(vals, index=df.index,
                                                                                         dtype=object).values
    return out


def mapping_lookup(ddf, column: str, mapping_path, *, prefix: str = ""):
    """Joins ``ddf`` against a Mapping file: for each row, the value stored under ``ddf[column]`` is added as
    columns (``prefix`` + each value field, or ``prefix + "value"`` for plain values); keys not in the mapping
    give missing values. Each worker opens the file once and looks keys up in place (no shuffle, no broadcast
    of the mapping)."""
    import pandas as pd

    from ._records import Mapping

    path = os.path.abspath(os.fspath(mapping_path))
    if column not in ddf.columns:
        raise KeyError(f"mapping_lookup: the dataframe has no column {column!r}")
    with Mapping(path) as m:
        cols = _lookup_columns(m, prefix)
    clash = [c for c in cols if c in ddf.columns]
    if clash:
        raise ValueError(f"mapping_lookup: columns {clash} already exist in the dataframe; pass prefix=")
    meta = ddf._meta.copy()
    for name, (_, dtype) in cols.items():
        meta[name] = pd.Series([], dtype=dtype)
    return ddf.map_partitions(_lookup_partition, column, path, prefix, meta=meta)
