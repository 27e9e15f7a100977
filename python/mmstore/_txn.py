"""Transactions: ``with d.transaction() as t:`` on Dict, SharedDict and NestedDict.

The block holds the store's write lock. ``t`` is a mapping of the dict as the transaction sees it (its own
writes first). When the block ends, every change becomes visible to every reader, in every process, at one
instant; when it raises, none of them does and the exception propagates. A process killed inside the block
leaves none of its changes, killed at its end all or none. A ``transaction()`` opened inside another one on
the same dict (``d.transaction()`` or ``t.transaction()``) is a savepoint: an exception in the inner block
undoes the inner block's writes only. docs/design.md, "Transactions and snapshots".
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, MutableMapping
from typing import Any

from . import _core

_MISSING = object()


class _NotEntered:
    """Stands for the native transaction before ``__enter__``: any use raises."""

    __slots__ = ()

    def __getattr__(self, name):
        raise RuntimeError("use the transaction inside its `with` block")

    def __len__(self):
        raise RuntimeError("use the transaction inside its `with` block")


_NOT_ENTERED = _NotEntered()
# The outermost transaction per (handle, table, thread): a transaction() opened inside it is a savepoint.
_ACTIVE: dict = {}


class Transaction(MutableMapping):
    """The mapping ``t`` of ``with d.transaction() as t:`` (see the module docstring).

    Values are stored as they are when written, as for the dict itself. A nested dict read through ``t``
    is a live :class:`~mmstore.NestedDict` view: writes through it are not part of the transaction (open
    ``t[key].transaction()`` for that, or assign a whole new dict). Writes to the dict itself (``d[k] =
    v``) inside the block go straight to the store, outside the transaction."""

    __slots__ = ("_owner", "_cell", "_id", "_t", "_mark", "_outer", "_key")

    def __init__(self, owner: Any, cell: int = 0, id: int = 0) -> None:
        self._owner = owner
        self._cell = cell
        self._id = id
        self._t = _NOT_ENTERED
        self._outer = None
        self._key = None

    # -- the block ----------------------------------------------------------------------------------------
    def __enter__(self) -> "Transaction":
        if self._key is not None:
            raise RuntimeError("this transaction was already entered; call transaction() again for a new one")
        self._key = (id(self._owner), self._cell, threading.get_ident())
        outer = _ACTIVE.get(self._key)
        if outer is not None:
            self._outer = outer
            self._t = outer._t
            self._mark = self._t.savepoint()
        else:
            self._t = _core._Transaction(self._owner, self._cell, self._id)
            _ACTIVE[self._key] = self
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._outer is not None:  # a savepoint
            if exc_type is not None and self._t.active:
                self._t.rollback_to(self._mark)
            return False
        try:
            if exc_type is None:
                self._t.commit()
        finally:
            if self._t.active:
                self._t.rollback()
            _ACTIVE.pop(self._key, None)
        return False

    def transaction(self) -> "Transaction":
        """A savepoint inside this transaction (same as calling ``transaction()`` on the dict again)."""
        return Transaction(self._owner, self._cell, self._id)

    # -- the mapping ----------------------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        value = self._t.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        return self._t.get(key, default)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._t.set(key, value)

    def __delitem__(self, key: Any) -> None:
        if not self._t.delete(key):
            raise KeyError(key)

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        value = self._t.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        self._t.delete(key)
        return value

    def __contains__(self, key: object) -> bool:
        return self._t.contains(key)

    def __len__(self) -> int:
        return len(self._t)

    def __iter__(self) -> Iterator[Any]:
        return iter([k for k, _ in self._t.items()])

    def items(self):
        return self._t.items()

    def values(self):
        return [v for _, v in self._t.items()]

    def keys(self):
        return [k for k, _ in self._t.items()]

    def copy(self) -> dict:
        return dict(self._t.items())

    def __repr__(self) -> str:
        state = "open" if self._t is not _NOT_ENTERED and self._t.active else "closed"
        return f"<mmstore.Transaction ({state}) on {self._owner!r}>"

    __hash__ = None  # type: ignore[assignment]
