"""Transactions: ``with d.transaction() as t:`` on Dict, SharedDict and NestedDict.

The block holds the store's write lock. ``t`` is a mapping of the dict as the transaction sees it (its own
writes first). When the block ends, every change becomes visible to every reader, in every process, at one
instant; when it raises, none of them does and the exception propagates. A process killed inside the block
leaves none of its changes, killed at its end all or none. A ``transaction()`` opened inside another one on
the same dict (``d.transaction()`` or ``t.transaction()``) is a savepoint: an exception in the inner block
undoes the inner block's writes only. docs/design.md, "Transactions and snapshots".

The block, the item access and ``len`` are native (``mmstore._core._Transaction``); this class adds the rest
of the mapping API.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from . import _core


class Transaction(_core._Transaction):
    """The mapping ``t`` of ``with d.transaction() as t:`` (see the module docstring).

    Values are stored as they are when written, as for the dict itself. A nested dict read through ``t``
    is a live :class:`~mmstore.NestedDict` view: writes through it are not part of the transaction (open
    ``t[key].transaction()`` for that, or assign a whole new dict). Writes to the dict itself (``d[k] =
    v``) inside the block go straight to the store, outside the transaction. Using ``t`` outside its block
    raises."""

    # No __dict__ (nor __weakref__): a smaller instance, cheaper to create and free, which every `with
    # d.transaction()` pays for: 35-45 ns of an empty block's ~540 ns (tmp txn loop, alternated builds).
    __slots__ = ()

    def transaction(self) -> "Transaction":
        """A savepoint inside this transaction (same as calling ``transaction()`` on the dict again)."""
        return _core._new_transaction(Transaction, self._owner, self._cell, self._id)

    def __iter__(self) -> Iterator[Any]:
        return iter([k for k, _ in self.items()])

    def keys(self):
        return [k for k, _ in self.items()]

    def values(self):
        return [v for _, v in self.items()]

    def copy(self) -> dict:
        return dict(self.items())

    def pop(self, key: Any, *default: Any) -> Any:
        """Removes ``key`` and returns its value; ``default`` (if given) when it is absent, else KeyError.
        (``MutableMapping.pop`` cannot be borrowed: its private marker is name-mangled to the ABC.)"""
        if len(default) > 1:
            raise TypeError(f"pop expected at most 2 arguments, got {1 + len(default)}")
        try:
            value = self[key]
        except KeyError:
            if default:
                return default[0]
            raise
        del self[key]
        return value

    popitem = MutableMapping.popitem
    setdefault = MutableMapping.setdefault
    update = MutableMapping.update
    __eq__ = Mapping.__eq__
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<mmstore.Transaction ({'open' if self.active else 'not open'}) on {self._owner!r}>"


MutableMapping.register(Transaction)
