"""UltraDict compatibility: ``from mmstore.compat.ultradict import UltraDict``.

:class:`UltraDict` is :class:`mmstore.SharedDict` under UltraDict's names -- a name-mapping layer, not a
second implementation. Like UltraDict it is a ``dict`` subclass (its own dict storage stays empty; every
operation goes to the SharedDict in ``.shared``), so it can even stand in as an object's ``__dict__``. Every read and write goes to the shared table (reads are always current, there is no
local copy to refresh), every single operation is atomic, and the lock is mmstore's process-shared,
recursive, robust lock whichever ``shared_lock`` was asked for.

Constructor: ``UltraDict(*args, name=None, create=None, buffer_size=10_000, serializer=pickle,
shared_lock=None, full_dump_size=None, auto_unlink=None, recurse=None, recurse_register=None, **kwargs)``.

* ``*args, **kwargs``: initial data, as for ``dict()``; written in one atomic step (``update_many``), also
  when attaching to an existing dict (as UltraDict does).
* ``name``, ``create`` (``True``: must create, ``AlreadyExists`` otherwise; ``False``: must exist,
  ``CannotAttachSharedMemory`` otherwise; ``None``: attach or create), ``auto_unlink`` (default: True for the
  creator) and ``recurse`` (nested dicts are shared child tables; ``None`` when attaching follows the
  creator) mean what they mean in UltraDict.
* ``buffer_size``, ``full_dump_size`` and ``recurse_register`` are accepted and ignored: there is no update
  stream, no full dump and no register of child segments (nested dicts live in the same segment, and
  replacing one frees its space).
* ``serializer``: only ``pickle`` is accepted (``ValueError`` otherwise). Values use mmstore's own codec,
  readable from C++; pickle is its fallback for other Python objects.
* ``shared_lock``: accepted, any value; the lock is always shared between processes.

Lock call forms: ``with d.lock:``, ``d.lock.acquire(block=True, sleep_time=..., timeout=None,
steal_after_timeout=False)``, ``d.lock.release()``, ``with d.lock(block=..., timeout=..., sleep_time=...,
steal_after_timeout=...):``. ``sleep_time`` is ignored (waiters sleep on a futex, they do not poll);
``steal`` is accepted as another spelling of ``steal_after_timeout``, as UltraDict's README writes it.
As in UltraDict, ``block=False`` raises ``CannotAcquireLock`` (with ``blocking_pid``) at once and a
``timeout`` (seconds; ``None`` or ``0`` wait forever) raises ``CannotAcquireLockTimeout``.

**steal_after_timeout.** mmstore recovers the lock of a *dead* holder by itself: the next acquirer gets it
at once and the dict is repaired to a consistent state, with no timeout to wait for. Taking the lock from a
*live* holder -- what UltraDict does once the timeout passes, if its psutil check does not catch the holder
alive -- would let two processes write at once and break the atomicity the lock exists for. So after the
timeout a live holder keeps its lock and ``CannotAcquireLockTimeout`` is raised, naming the holder in
``blocking_pid``, with or without ``steal_after_timeout``.

``UltraDict.log`` is UltraDict's logger interface (``set_level(log.Levels.error)``, ``disable(log.CRITICAL)``,
``debug``...) over the standard logger ``mmstore.compat.ultradict``. ``ultra.SharedLock`` is the lock class;
``buffer_size`` and ``full_dump_size`` report the creator's values (informational: there is no update
buffer) and ``full_dump_counter`` counts this handle's str/bytes writes longer than ``buffer_size``.

UltraDict-only members kept because they make sense here: ``name``, ``unlink()``, ``close(unlink=False)``
and ``cleanup()`` (both return the contents as a ``dict``, as UltraDict's do), ``UltraDict.unlink_by_name(name,
ignore_errors=False)``, ``status()`` / ``print_status()``, ``has_key``, ``data`` (the dict itself: there is
no separate local cache, and reading it is as current as reading ``d``), ``get_memory(create=, name=)``
(a :class:`mmstore.SharedDict` handle on the named segment), and ``apply_update()``, ``load()``, ``dump()``
as no-ops (there is nothing to apply or dump). ``UltraDict.Exceptions`` maps UltraDict's exception names
onto mmstore's errors, so ``except UltraDict.Exceptions.CannotAcquireLock`` keeps working.

Differences worth knowing: keys compare by type and value (``1``, ``1.0`` and ``True`` are three keys),
``isinstance(d, dict)`` is false (it is a ``MutableMapping``), segments are created mode 0600, and names
are validated (``ValueError`` for ``/`` and other invalid characters).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pickle
import pprint
import sys
import weakref
from typing import Any

from .. import (
    AlreadyExists,
    CannotAcquireLock,
    CannotAcquireLockTimeout,
    ClosedError,
    Error,
    NotFound,
    SharedDict,
)

__all__ = ["Exceptions", "SharedLock", "UltraDict", "log"]


class ParameterMismatch(Error, ValueError):
    """An attacher asked for ``recurse`` other than the creator's (UltraDict's name)."""


class FullDumpMemoryFull(Error):
    """UltraDict's name; never raised (mmstore has no full dump memory)."""


class MissingDependency(Error, ImportError):
    """UltraDict's name; never raised (mmstore needs no optional package for its lock)."""


class Exceptions:
    """``UltraDict.Exceptions``: UltraDict's exception names, bound to mmstore's errors."""

    CannotAttachSharedMemory = NotFound
    CannotAcquireLock = CannotAcquireLock
    CannotAcquireLockTimeout = CannotAcquireLockTimeout
    AlreadyExists = AlreadyExists
    AlreadyClosed = ClosedError
    ParameterMismatch = ParameterMismatch
    FullDumpMemoryFull = FullDumpMemoryFull
    MissingDependency = MissingDependency


def _acquire(lock, block, timeout, steal_after_timeout) -> bool:
    # UltraDict's order: a timeout wins over block=False; timeout None or 0 means wait forever.
    if timeout:
        try:
            return lock.acquire(timeout=timeout)
        except CannotAcquireLockTimeout as e:
            if steal_after_timeout and hasattr(e, "add_note"):
                e.add_note(f"steal_after_timeout: mmstore does not take the lock from a live holder (pid "
                           f"{e.blocking_pid}); a dead holder's lock is recovered without waiting")
            raise
    if not block:
        return lock.acquire(block=False)
    return lock.acquire()


class _LockCall:
    """What ``d.lock(timeout=..., ...)`` returns: a context manager acquiring with those parameters."""

    __slots__ = ("_block", "_lock", "_steal", "_timeout")

    def __init__(self, lock, block, timeout, steal) -> None:
        self._lock, self._block, self._timeout, self._steal = lock, block, timeout, steal

    def __enter__(self):
        _acquire(self._lock, self._block, self._timeout, self._steal)
        return self

    def __exit__(self, *exc) -> bool:
        self._lock.release()
        return False


class SharedLock:
    """``UltraDict.lock``: mmstore's lock (process-shared, recursive per thread, robust) under UltraDict's
    call forms. See the module docstring for ``steal_after_timeout``."""

    __slots__ = ("_lock",)

    def __init__(self, lock) -> None:
        self._lock = lock

    def acquire(self, block: bool = True, sleep_time: float | None = None, timeout: float | None = None,
                steal_after_timeout: bool = False, *, steal: bool | None = None) -> bool:
        return _acquire(self._lock, block, timeout, steal_after_timeout or bool(steal))

    def release(self, *args) -> bool:
        """Release one level; ``False`` (as in UltraDict) when this thread does not hold the lock."""
        try:
            self._lock.release()
        except RuntimeError:
            return False
        return True

    def locked(self) -> bool:
        return self._lock.locked()

    def __call__(self, block: bool = True, timeout: float | None = None, sleep_time: float | None = None,
                 steal_after_timeout: bool = False, *, steal: bool | None = None) -> _LockCall:
        return _LockCall(self._lock, block, timeout, steal_after_timeout or bool(steal))

    def __enter__(self):
        self._lock.acquire()
        return self

    def __exit__(self, *exc) -> bool:
        self._lock.release()
        return False

    def status(self) -> dict:
        """UltraDict's lock status: whether it is held, by this thread, and the holder's pid (0 if free)."""
        return {"has_lock": self._lock.owned(), "locked": self._lock.locked(), "pid": os.getpid(),
                "pid_remote": self._lock.holder_pid()}

    def print_status(self, status: dict | None = None) -> None:
        pprint.pprint(status or self.status())

    def __repr__(self) -> str:
        return f"<mmstore.compat.ultradict.SharedLock holder_pid={self._lock.holder_pid()} pid={os.getpid()}>"


class _Log:
    """``UltraDict.log``: UltraDict's logger interface (``set_level``, ``Levels``, ``disable``, ``debug`` ...)
    over the standard logger ``mmstore.compat.ultradict``, which reports creations, attaches and closes at
    DEBUG level."""

    class Levels:
        debug, info, warning, error, critical = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR,
                                                 logging.CRITICAL)

    DEBUG, INFO, WARNING, ERROR, CRITICAL = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR,
                                             logging.CRITICAL)

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def set_level(self, level) -> None:
        self.logger.setLevel(level)

    def disable(self, level=logging.CRITICAL) -> None:
        """Silence every message at ``level`` and below (for this logger only, not process-wide)."""
        self.logger.setLevel(level + 1)

    def __getattr__(self, name):  # debug, info, warning, error, exception, isEnabledFor, ...
        return getattr(self.logger, name)


log = _Log(logging.getLogger("mmstore.compat.ultradict"))

# buffer_size / full_dump_size as given by the creator of each segment created in this process, so that a
# handle attaching by name reports the creator's values (UltraDict keeps them in its segment; mmstore has no
# update buffer to size, so they are informational and not shared with other processes).
_PARAMS: dict = {}
_DEFAULT_BUFFER_SIZE = 10_000
_NO_PARAMS = (_DEFAULT_BUFFER_SIZE, None)


class UltraDict(dict):
    """UltraDict's constructor and names over :class:`mmstore.SharedDict` (see the module docstring).

    As UltraDict is, it is a ``dict`` subclass (so it can stand in as an object's ``__dict__``), whose own
    dict storage stays empty: every operation goes to the SharedDict in :attr:`shared`. Attributes not
    defined here are the SharedDict's (``increment``, ``update_many``, ``wait_for_change``, ``stats`` ...).
    """

    __slots__ = ("_d", "_buffer_size", "_full_dump_size", "_full_dumps", "__weakref__")
    Exceptions = Exceptions
    SharedLock = SharedLock
    log = log

    def __init__(self, *args, name: str | None = None, create: bool | None = None,
                 buffer_size: int = _DEFAULT_BUFFER_SIZE, serializer: Any = pickle, shared_lock: Any = None,
                 full_dump_size: int | None = None, auto_unlink: bool | None = None, recurse: bool | None = None,
                 recurse_register: Any = None, **kwargs) -> None:
        if serializer is not pickle:
            raise ValueError(f"UltraDict(serializer={serializer!r}): mmstore stores values in its own codec, with "
                             "pickle as the fallback for other objects; only serializer=pickle is accepted")
        if len(args) > 1:
            raise TypeError(f"UltraDict expected at most 1 positional argument, got {len(args)}")
        self._d = d = SharedDict(name, create=create, auto_unlink=auto_unlink, recurse=bool(recurse))
        if d._created:
            _PARAMS[d.name] = (buffer_size, full_dump_size)
            log.debug("created UltraDict %r", d.name)
        else:
            buffer_size, full_dump_size = _PARAMS.get(d.name, (buffer_size, full_dump_size))
            log.debug("attached UltraDict %r", d.name)
        self._buffer_size, self._full_dump_size, self._full_dumps = buffer_size, full_dump_size, 0
        _OPEN[id(self)] = self
        if args or kwargs:
            src = args[0] if args else ()
            pairs = list(src.items() if hasattr(src, "items") else src)
            pairs.extend(kwargs.items())
            d.update_many(pairs)

    # -- the mapping, delegated to the SharedDict -------------------------------------------------------------
    @property
    def shared(self) -> SharedDict:
        """The :class:`mmstore.SharedDict` this UltraDict is a view of."""
        return self._d

    def __getattr__(self, name):
        if name.startswith("__") or name in UltraDict.__slots__:
            raise AttributeError(name)
        return getattr(self._d, name)

    def __getitem__(self, key):
        return self._d[key]

    def __setitem__(self, key, value) -> None:
        if type(value) in (str, bytes, bytearray) and len(value) > self._buffer_size:
            self._full_dumps += 1
        self._d[key] = value

    def __delitem__(self, key) -> None:
        del self._d[key]

    def __len__(self) -> int:
        return len(self._d)

    def __iter__(self):
        return iter(self._d)

    def __reversed__(self):
        return reversed(self._d)

    def __contains__(self, key) -> bool:
        return key in self._d

    def __eq__(self, other) -> bool:
        if isinstance(other, UltraDict):
            other = other._d
        return self._d == other

    def __ne__(self, other) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]

    def __or__(self, other):
        return self.copy() | dict(other)

    def __ror__(self, other):
        return dict(other) | self.copy()

    def __ior__(self, other):
        self.update(other)
        return self

    def keys(self):
        return self._d.keys()

    def values(self):
        return self._d.values()

    def items(self):
        return self._d.items()

    def get(self, key, default=None):
        return self._d.get(key, default)

    def pop(self, key, *default):
        return self._d.pop(key, *default)

    def popitem(self):
        return self._d.popitem()

    def setdefault(self, key, default=None):
        return self._d.setdefault(key, default)

    def update(self, *args, **kwargs) -> None:
        self._d.update(*args, **kwargs)

    def clear(self) -> None:
        self._d.clear()

    def copy(self) -> dict:
        """The contents as a plain ``dict`` (nested shared dicts become dicts too)."""
        return self._d.copy()

    @property
    def name(self) -> str:
        return self._d.name

    @property
    def closed(self) -> bool:
        return self._d.closed

    # -- UltraDict's attributes ----------------------------------------------------------------------------------
    @property
    def lock(self) -> SharedLock:
        # A new wrapper per access, never stored on the instance: the native lock refers to its dict, and a
        # dict -> wrapper -> lock -> dict cycle through a native object is one the GC cannot collect.
        return SharedLock(self._d.lock)

    @property
    def data(self) -> UltraDict:
        """The dict itself: mmstore keeps no local copy, so there is nothing faster (or staler) to return."""
        return self

    @property
    def shared_lock(self) -> bool:
        return True

    @property
    def buffer_size(self) -> int:
        """The creator's ``buffer_size`` (informational: mmstore has no update buffer)."""
        return self._buffer_size

    @property
    def full_dump_size(self) -> int | None:
        return self._full_dump_size

    @property
    def full_dump_counter(self) -> int:
        """How many str/bytes values this handle wrote that were longer than ``buffer_size`` -- the writes
        for which UltraDict does a full dump. Informational: mmstore writes every value in place."""
        return self._full_dumps

    # -- no-ops: there is no update stream to apply and no full dump to load or write --------------------------
    def apply_update(self) -> None:
        """Nothing to apply: every read sees the shared table."""

    def load(self, force: bool = False) -> None:
        """Nothing to load: every read sees the shared table."""

    def dump(self) -> None:
        """Nothing to dump: every write goes to the shared table."""

    def has_key(self, key) -> bool:
        return key in self._d

    # -- lifetime -------------------------------------------------------------------------------------------------
    def close(self, unlink: bool = False, from_finalizer: bool = False) -> dict | None:
        """Detach; with ``unlink=True`` also remove the name. Returns the contents as a ``dict`` (UltraDict's
        return value; O(entries)), or ``None`` when already closed or ``from_finalizer``."""
        d = self._d
        if d.closed:
            return None
        if from_finalizer:
            d.close()
            return None
        data = d.copy()
        if unlink:
            d.unlink()
        d.close()
        log.debug("closed UltraDict %r", d.name)
        return data

    def unlink(self) -> None:
        """Remove the name (new processes cannot attach) and close this handle; attached processes go on."""
        self.close(unlink=True)

    def cleanup(self) -> dict | None:
        """UltraDict's local clean-up: close this handle and return the contents as a ``dict``."""
        return self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._d.close()  # no copy of the contents nobody asked for

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # never raise from a finalizer
            self._d.close()

    @staticmethod
    def unlink_by_name(name: str, ignore_errors: bool = False) -> bool:
        """Remove a segment by name (e.g. left over after a crash); ``False`` if absent and ``ignore_errors``."""
        try:
            SharedDict.unlink_by_name(name)
        except NotFound:
            if not ignore_errors:
                raise
            return False
        return True

    @staticmethod
    def get_memory(*, create: bool | None = True, name: str | None = None, size: int = 0) -> SharedDict:
        """A :class:`mmstore.SharedDict` on segment ``name`` (UltraDict returns its raw ``SharedMemory``);
        ``create`` as in the constructor, ``size`` ignored (segments grow)."""
        return SharedDict(name, create=create)

    # -- introspection ----------------------------------------------------------------------------------------------
    def status(self) -> dict:
        st = {"name": self.name, "len": len(self), "closed": self.closed, "lock": self.lock.status(),
              "buffer_size": self._buffer_size, "full_dump_counter": self._full_dumps}
        st.update(self._d.stats())
        return st

    def print_status(self, status: dict | None = None, stderr: bool = False) -> None:
        pprint.pprint(status or self.status(), stream=sys.stderr if stderr else sys.stdout)

    def __repr__(self) -> str:
        return repr(self.copy())  # UltraDict shows its contents as a dict does

    def __reduce__(self):
        return (_reattach, (self.name,))


def _reattach(name: str) -> UltraDict:
    return UltraDict(name=name, create=False)


# Open UltraDicts by id. At exit they are closed here, without the copy of the contents that close() returns;
# this handler is registered after mmstore's own (which calls close()), so it runs first.
_OPEN: weakref.WeakValueDictionary[int, UltraDict] = weakref.WeakValueDictionary()


@atexit.register
def _close_without_copies() -> None:
    for d in list(_OPEN.values()):
        with contextlib.suppress(Exception):  # close the others
            d._d.close()
