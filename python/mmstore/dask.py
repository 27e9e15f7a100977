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

__all__ = ["PoolData", "PoolWorker", "SpilledSize"]

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
