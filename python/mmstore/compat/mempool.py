"""MemPool.jl names: ``from mmstore.compat.mempool import poolset, poolget, ...``.

Thin aliases over :class:`mmstore.Pool`, never a second implementation. MemPool keeps one pool per process
with a global limit; so does this module (:func:`default_pool`, created on first use with ``max_memsize``).

========================  =============================================
MemPool.jl                mmstore
========================  =============================================
``poolset(x; size)``      ``default_pool().put(x, size)``
``poolget(ref)``          ``ref.get()`` (any pool, any process)
``pooldelete(ref)``       ``pool.delete(ref)`` of the ref's pool
``movetodisk(ref)``       ``pool.move_to_disk(ref)``
``copytodisk(ref)``       ``pool.copy_to_disk(ref)``
``savetodisk(ref, p)``    ``pool.save(ref, p)``
``max_memsize[]``         ``max_memsize()`` / ``max_memsize(n)``
``poolset(x, pid)``       the default pool *of Dask worker* ``pid`` (an address), via the current
                          ``distributed`` client; ``poolget`` of that ref asks the worker
``DRef``                  :class:`mmstore.Ref`
``FileRef(file)``         a file written by ``mmwrite``/``savetodisk``; ``poolget`` maps it
``mmwrite(io, x)``        ``x`` in the spill format (to a path or binary file object)
``mmread(io)``            :func:`mmstore.load` (mapped, zero-copy for arrays and hooked types)
``mmwrite``/``mmread``    per type: :func:`mmstore.register_spill` (``register(T, dump, load)`` here)
methods for a type T
``cleanup()``             close the default pool (its spill files go with it)
``DEvent`` / ``DFuture``  a one-shot event / write-once value shared by processes (over a SharedDict)
========================  =============================================

Difference: MemPool frees an object when its last ``DRef`` is garbage collected; here ``pooldelete`` (or
closing the pool) frees it, because refs are shared across processes where no collector can see them.
"""

from __future__ import annotations

import os
import threading

from .._pool import Pool, Ref, _pool_of, load, parse_bytes, register_spill
from .._shared import SharedDict

__all__ = ["DRef", "FileRef", "poolset", "poolget", "pooldelete", "movetodisk", "copytodisk", "savetodisk",
           "max_memsize", "default_pool", "mmwrite", "mmread", "register", "cleanup", "DEvent", "DFuture"]

DRef = Ref

_lock = threading.Lock()
_pool: Pool | None = None
_limit = parse_bytes("2GiB")


def default_pool() -> Pool:
    """The process-wide pool these functions use (created on first use)."""
    global _pool
    with _lock:
        if _pool is None or _pool.closed:
            _pool = Pool(max_memory=_limit)
        return _pool


def max_memsize(value=None) -> int:
    """The default pool's memory limit in bytes; with an argument, sets it (spilling as needed)."""
    global _limit
    if value is not None:
        _limit = parse_bytes(value)
        with _lock:
            if _pool is not None and not _pool.closed:
                _pool.max_memory = _limit
    return _limit


# Refs placed on a Dask worker by poolset(x, pid): ref -> worker address (this process only).
_REMOTE: dict = {}


def _poolset_here(x, size):
    return default_pool().put(x, size)


def _poolget_here(ref):
    return ref.get()


def poolset(x, pid=None, *, size=None) -> Ref:
    """Put ``x`` in the default pool of this process, or -- ``pid`` a Dask worker address other than this
    process's -- in that worker's (through ``distributed.get_client()``), as MemPool's ``poolset(x, pid)``."""
    if pid is not None and not isinstance(pid, str):  # poolset(x, size) of the first version of this module
        if size is None:
            return default_pool().put(x, pid)
        raise TypeError(f"poolset: pid must be a Dask worker address (str), not {type(pid).__name__}")
    if pid is None or _is_this_worker(pid):
        return default_pool().put(x, size)
    from distributed import get_client

    ref = get_client().submit(_poolset_here, x, size, workers=[pid], allow_other_workers=False,
                              pure=False).result()
    _REMOTE[ref] = pid
    return ref


def _is_this_worker(address: str) -> bool:
    try:
        from distributed import get_worker

        return get_worker().address == address
    except (ImportError, ValueError):
        return False


def poolget(ref):
    """The object of ``ref`` (a ``DRef`` of any pool, or a :class:`FileRef`)."""
    if isinstance(ref, FileRef):
        return load(ref.file)
    pid = _REMOTE.get(ref)
    if pid is not None:
        from distributed import get_client

        return get_client().submit(_poolget_here, ref, workers=[pid], allow_other_workers=False,
                                   pure=False).result()
    return ref.get()


def pooldelete(ref: Ref) -> None:
    pid = _REMOTE.pop(ref, None)
    if pid is not None:
        from distributed import get_client

        get_client().submit(pooldelete, ref, workers=[pid], allow_other_workers=False, pure=False).result()
        return
    _pool_of(ref).delete(ref)


def movetodisk(ref: Ref) -> None:
    _pool_of(ref).move_to_disk(ref)


def copytodisk(ref: Ref) -> None:
    _pool_of(ref).copy_to_disk(ref)


def savetodisk(ref: Ref, path) -> None:
    _pool_of(ref).save(ref, path)


class FileRef:
    """MemPool's ``FileRef``: a file in mmstore's spill format (``mmwrite``, ``savetodisk``) that ``poolget``
    maps back; it pickles as its path, so only the name crosses process boundaries."""

    __slots__ = ("file", "size")

    def __init__(self, file, size: int | None = None) -> None:
        self.file = os.fspath(file)
        if size is None:
            try:
                size = os.stat(self.file).st_size
            except OSError:
                size = 0
        self.size = size

    def __eq__(self, other):
        return isinstance(other, FileRef) and other.file == self.file

    def __hash__(self):
        return hash(self.file)

    def __repr__(self):
        return f"FileRef({self.file!r}, size={self.size})"


def mmwrite(io, x) -> FileRef:
    """Write ``x`` in the spill format (a native array or bytes, a :func:`register` -ed type's own format,
    or pickle) to ``io``, a path or a binary file object; returns a :class:`FileRef` for a path."""
    if hasattr(io, "write"):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            tmp = os.path.join(d, "x.spill")
            mmwrite(tmp, x)
            with open(tmp, "rb") as f:
                io.write(f.read())
        return None
    pool = Pool(max_memory=1 << 60)  # in RAM until saved
    try:
        ref = pool.put(x, 1)
        pool.save(ref, io)
    finally:
        pool.close()
    return FileRef(io)


def mmread(io):
    """Map back what :func:`mmwrite` wrote (a path, a :class:`FileRef`, or a file object with a name)."""
    if isinstance(io, FileRef):
        io = io.file
    elif hasattr(io, "name") and not isinstance(io, (str, os.PathLike)):
        io = io.name
    return load(io)


def register(cls: type, dump, load, *, name: str | None = None) -> None:
    """Per-type ``mmwrite``/``mmread``: :func:`mmstore.register_spill` (see there)."""
    register_spill(cls, dump, load, name=name)


def cleanup() -> None:
    """MemPool's ``cleanup()``: close the default pool; its spill files are removed."""
    global _pool
    with _lock:
        if _pool is not None and not _pool.closed:
            _pool.close()
        _pool = None


class DEvent:
    """MemPool's ``DEvent``: a one-shot event any process can ``notify`` and ``wait`` for. Pickles as its
    name (pass it to workers); the segment goes away when the last handle closes."""

    def __init__(self, name: str | None = None) -> None:
        self._d = SharedDict(name, auto_unlink=True)

    @property
    def name(self) -> str:
        return self._d.name

    def notify(self) -> None:
        self._d["set"] = True

    def isset(self) -> bool:
        return self._d.get("set", False)

    is_set = isset

    def wait(self, timeout: float | None = None) -> bool:
        """Block until notified (``True``), or ``timeout`` seconds pass (``False``)."""
        import time

        end = None if timeout is None else time.monotonic() + timeout
        while not self.isset():
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._d.wait_for_change(left)
        return True

    def close(self) -> None:
        self._d.close()

    def __reduce__(self):
        return (DEvent, (self.name,))


class DFuture:
    """MemPool's ``DFuture``: a write-once value cell shared by processes (``put``, ``fetch``, ``wait``,
    ``isready``). The value goes through mmstore's codec (pickle for other objects)."""

    def __init__(self, name: str | None = None) -> None:
        self._d = SharedDict(name, auto_unlink=True)

    @property
    def name(self) -> str:
        return self._d.name

    def put(self, value) -> None:
        """Set the value; a second ``put`` raises ``ValueError``, as MemPool's ``put!`` errors."""
        with self._d.lock:
            if "value" in self._d:
                raise ValueError(f"DFuture {self.name!r} already has a value")
            self._d["value"] = value

    def isready(self) -> bool:
        return "value" in self._d

    def wait(self, timeout: float | None = None) -> DFuture:
        import time

        end = None if timeout is None else time.monotonic() + timeout
        while not self.isready():
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"DFuture {self.name!r}: no value after {timeout} s")
            self._d.wait_for_change(left)
        return self

    def fetch(self, timeout: float | None = None):
        return self.wait(timeout)._d["value"]

    def close(self) -> None:
        self._d.close()

    def __reduce__(self):
        return (DFuture, (self.name,))
