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
``DRef``                  :class:`mmstore.Ref`
========================  =============================================

Difference: MemPool frees an object when its last ``DRef`` is garbage collected; here ``pooldelete`` (or
closing the pool) frees it, because refs are shared across processes where no collector can see them.
"""

from __future__ import annotations

import threading

from .._pool import Pool, Ref, _pool_of, parse_bytes

__all__ = ["DRef", "poolset", "poolget", "pooldelete", "movetodisk", "copytodisk", "savetodisk", "max_memsize",
           "default_pool"]

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


def poolset(x, size=None) -> Ref:
    return default_pool().put(x, size)


def poolget(ref: Ref):
    return ref.get()


def pooldelete(ref: Ref) -> None:
    _pool_of(ref).delete(ref)


def movetodisk(ref: Ref) -> None:
    _pool_of(ref).move_to_disk(ref)


def copytodisk(ref: Ref) -> None:
    _pool_of(ref).copy_to_disk(ref)


def savetodisk(ref: Ref, path) -> None:
    _pool_of(ref).save(ref, path)
