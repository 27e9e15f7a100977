"""mmstore.SharedDict: a live dict in shared memory, attached by name from any process on the machine.

Same engine and behaviour as :class:`mmstore.Dict` (the segment is an mmstore store in ``/dev/shm``); see
``docs/design.md`` ("Many processes", "Segment lifetime") for the locking and lifetime rules.
"""

from __future__ import annotations

import atexit
import os
import weakref
from collections.abc import Mapping, MutableMapping
from typing import Any, Iterator, NamedTuple

from . import _core
from ._dict import Dict
from ._snapshot import Snapshot
from ._txn import Transaction
from ._handle import check_options
from ._errors import StoreExistsError, StoreNotFoundError

__all__ = ["SharedDict", "SharedDictInfo", "NestedDict", "shared_dicts"]

# Open handles by id (SharedDict is unhashable, like dict), closed at interpreter exit.
_OPEN: "weakref.WeakValueDictionary[int, SharedDict]" = weakref.WeakValueDictionary()


class SharedDictInfo(NamedTuple):
    """One entry of :func:`shared_dicts`."""

    name: str
    size: int  # bytes of the segment
    creator_pid: int
    in_use: bool  # some process has it attached now; False for one left behind by a crash


def shared_dicts() -> list[SharedDictInfo]:
    """Every SharedDict segment on this machine, with its size, creator pid and whether it is in use.

    Segments of processes that were killed (never closed) stay until unlinked: clean up with
    ``for s in mmstore.shared_dicts(): if not s.in_use: mmstore.SharedDict.unlink_by_name(s.name)``."""
    return sorted(SharedDictInfo(*t) for t in _core.shared_segments())


_MISSING = object()


class NestedDict(MutableMapping):
    """A live view of a dict stored inside a :class:`SharedDict` opened with ``recurse=True``.

    It reads and writes the nested table in shared memory: ``d["a"]["b"] += 1`` in one process is seen by
    every other. Each operation is atomic on its own; group several with the owning dict's ``lock``.
    When the entry holding it is replaced or deleted, the view raises ``KeyError`` on use.
    ``copy()`` returns a plain ``dict`` (nested views become dicts too)."""

    __slots__ = ("_owner", "_cell", "_id")

    def __init__(self, owner: "SharedDict", cell: int, id: int) -> None:
        self._owner = owner
        self._cell = cell
        self._id = id

    def __getitem__(self, key: Any) -> Any:
        return self._owner._n_get(self._cell, self._id, key)

    def get(self, key: Any, default: Any = None) -> Any:
        return self._owner._n_get(self._cell, self._id, key, default)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._owner._n_set(self._cell, self._id, key, value)

    def __delitem__(self, key: Any) -> None:
        self._owner._n_del(self._cell, self._id, key)

    def __len__(self) -> int:
        return self._owner._n_len(self._cell, self._id)

    def __contains__(self, key: object) -> bool:
        return self._owner._n_get(self._cell, self._id, key, _MISSING) is not _MISSING

    def __iter__(self) -> Iterator[Any]:
        return iter([k for k, _ in self._owner._n_items(self._cell, self._id)])

    def items(self):
        return self._owner._n_items(self._cell, self._id)

    def values(self):
        return [v for _, v in self._owner._n_items(self._cell, self._id)]

    def clear(self) -> None:
        self._owner._n_clear(self._cell, self._id)

    def increment(self, key: Any, delta: Any = 1, default: Any = 0) -> Any:
        """Atomically ``self[key] = self.get(key, default) + delta``; returns the new value."""
        return self._owner._n_increment(self._cell, self._id, key, delta, default)

    @property
    def lock(self):
        return self._owner.lock

    def transaction(self) -> Transaction:
        """A transaction on this nested dict (holding the owning dict's lock); see ``Dict.transaction``."""
        return _core._new_transaction(Transaction, self._owner, self._cell, self._id)

    def snapshot(self) -> Snapshot:
        """``with nd.snapshot() as s:`` -- a read-only mapping of this nested dict as of the instant the block
        begins (its own nested dicts included); see ``Dict.snapshot``. Raises ``KeyError`` when the nested
        dict was replaced or deleted before that instant."""
        return Snapshot(self._owner, self._cell, self._id)

    def get_many(self, keys, default: Any = None) -> list:
        """The values of ``keys`` as of one instant, lock-free; see ``Dict.get_many``."""
        return _core._read_at_once(self._owner, self._cell, self._id, keys, default)

    def copy(self) -> dict:
        return {k: (v.copy() if isinstance(v, NestedDict) else v) for k, v in self.items()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self.copy() == (other.copy() if isinstance(other, NestedDict) else dict(other.items()))

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self):
        return (dict, (self.copy(),))  # a view pickles as its content

    def __repr__(self) -> str:
        return f"mmstore.NestedDict({self.copy()!r})"


_core._set_nested_type(NestedDict)


class SharedDict(Dict):
    """``mmstore.SharedDict(name=None, *, create=None, mode=0o600, recurse=False, auto_unlink=None,
    allow_pickle=True, size_hint=None, verify=True)``: a dict shared live by every process that attaches ``name``.

    * ``name``: 1-200 characters of letters, digits, ``_``, ``-`` and ``.`` (not starting with ``.``);
      ``None`` creates a segment with a random name (``.name``). Invalid names raise ``ValueError``.
    * ``create``: ``None`` attaches or creates; ``True`` must create (:class:`mmstore.AlreadyExists`);
      ``False`` must attach (:class:`mmstore.NotFound`).
    * ``mode``: permission bits of a new segment (private by default).
    * ``recurse``: store ``dict`` values as nested tables in the same segment, returned as live
      :class:`NestedDict` views (``d["a"]["b"] += 1`` is seen by every process).
    * ``auto_unlink``: remove the segment when the last attached handle closes (default: True for the
      handle that created it). A segment never disappears while any handle is still attached.
    * ``size_hint``: number of keys to make room for at creation.
    * ``verify``: checked reads, as for :class:`mmstore.Dict` (``False`` skips them, at the risk of
      returning damaged data as if it were real).

    Every single operation is atomic; ``with d.lock:`` groups several. Reads take no lock and never see a
    torn or stale-then-newer value. ``increment``, ``compare_and_set``, ``setdefault`` and ``update_many``
    are atomic read-modify-write steps. ``wait_for_change()`` sleeps until another process writes.
    The handle pickles as "attach to this name", so it can be passed to spawned workers; a handle inherited
    through ``fork()`` reattaches in the child on first use.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        create: bool | None = None,
        mode: int = 0o600,
        recurse: bool = False,
        auto_unlink: bool | None = None,
        allow_pickle: bool = True,
        size_hint: int | None = None,
        verify: bool = True,
    ) -> None:
        if name is None:
            if create is False:
                raise ValueError("create=False needs the name of an existing SharedDict")
            # os.urandom(8).hex() is secrets.token_hex(8), without the import of hmac that secrets costs
            name, create = "sd_" + os.urandom(8).hex(), True
        if not isinstance(name, str):
            raise TypeError(f"SharedDict name must be a str, not {type(name).__name__}")
        check_options("SharedDict", create=create, mode=mode, allow_pickle=allow_pickle, verify=verify)
        path = _core.shared_segment_path(name)  # ValueError for an invalid name
        try:
            _core._Dict.__init__(self, path, create=create, mode=mode, allow_pickle=allow_pickle, verify=verify,
                                 _segment=True)
        except StoreNotFoundError as e:
            raise StoreNotFoundError(f"no SharedDict named {name!r} ({path})", path) from e
        except StoreExistsError as e:
            raise StoreExistsError(f"a SharedDict named {name!r} already exists ({path})", path) from e
        self._name = name
        self._recurse = bool(recurse)
        if self._recurse:
            self._set_recurse(True)
        self._auto_unlink = self._created if auto_unlink is None else bool(auto_unlink)
        if size_hint and self._created:
            self.reserve(int(size_hint))
        _OPEN[id(self)] = self

    @property
    def name(self) -> str:
        return self._name

    @property
    def recurse(self) -> bool:
        return self._recurse

    @property
    def auto_unlink(self) -> bool:
        return self._auto_unlink

    def close(self) -> None:
        """Detach. With ``auto_unlink``, the last handle to close (in any process) removes the segment."""
        if self.closed:
            return
        if getattr(self, "_auto_unlink", False):
            self._request_unlink_on_last_close()
        _core._Dict.close(self)

    def unlink(self) -> None:
        """Remove the segment's name now. Attached handles keep working until they close; new attaches
        by this name create a new segment."""
        try:
            _core.unlink_shared(self._name)
        except StoreNotFoundError:
            pass

    @staticmethod
    def unlink_by_name(name: str) -> None:
        """Remove segment ``name`` (:class:`mmstore.NotFound` if there is none)."""
        if not isinstance(name, str):
            raise TypeError(f"SharedDict.unlink_by_name: name must be a str, not {type(name).__name__}")
        _core.unlink_shared(name)

    def copy(self) -> dict:
        """A plain ``dict`` with every entry; nested views become dicts too."""
        return {k: (v.copy() if isinstance(v, NestedDict) else v) for k, v in self.items()}

    def __reduce__(self):
        return (_attach, (self._name, self.allow_pickle, self._recurse))

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        if self.closed:  # also a handle whose __init__ failed (shown in tracebacks)
            return f"mmstore.SharedDict({getattr(self, '_name', '?')!r}) <closed>"
        return f"mmstore.SharedDict({self._name!r}, {super().__repr__()})"


def _attach(name: str, allow_pickle: bool, recurse: bool) -> SharedDict:
    return SharedDict(name, create=False, allow_pickle=allow_pickle, recurse=recurse)


@atexit.register
def _close_all() -> None:
    # Normal interpreter exit closes every handle, so auto_unlink segments of finished programs go away.
    for d in list(_OPEN.values()):
        try:
            d.close()
        except Exception:
            pass
