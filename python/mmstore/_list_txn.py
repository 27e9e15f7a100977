"""List transactions: ``with l.transaction() as t:`` on :class:`mmstore.List`.

The block holds the store's write lock. ``t`` is the list as the transaction sees it (its own writes
first), with the whole mutable-sequence API. When the block ends, every change -- the length included --
becomes visible to every reader, in every process, at one instant; when it raises, none does and the
exception propagates. A process killed inside the block leaves none of its changes, killed at its end all or
none. A ``transaction()`` opened inside another one on the same list (``l.transaction()`` or
``t.transaction()``) is a savepoint: an exception in the inner block undoes the inner block's writes only.
docs/design.md, "List transactions".

Indexing, slices, ``len`` and the writes are native (``mmstore._core._ListTransaction``); this class adds
the rest of the ``MutableSequence`` API.
"""

from __future__ import annotations

from collections.abc import MutableSequence, Sequence
from typing import Any, Callable

from . import _core


class ListTransaction(_core._ListTransaction):
    """The sequence ``t`` of ``with l.transaction() as t:`` (see the module docstring).

    Values are stored as they are when written, as for the list itself. Writes to the list itself
    (``l.append(x)``) inside the block would shift the positions the transaction holds: the transaction's
    next operation raises ``ValueError`` and the block rolls back. Using ``t`` outside its block
    raises."""

    __slots__ = ()  # no __dict__ (see Transaction)

    def transaction(self) -> "ListTransaction":
        """A savepoint inside this transaction (same as calling ``transaction()`` on the list again)."""
        return ListTransaction(self._owner)

    __iter__ = Sequence.__iter__
    __reversed__ = Sequence.__reversed__
    __contains__ = Sequence.__contains__
    index = Sequence.index
    count = Sequence.count
    reverse = MutableSequence.reverse
    remove = MutableSequence.remove
    __iadd__ = MutableSequence.__iadd__

    def sort(self, *, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> None:
        """Stable sort, like ``list.sort``."""
        values = self[:]
        values.sort(key=key, reverse=reverse)
        self[:] = values

    def copy(self) -> list:
        """A plain ``list`` of the elements as the transaction sees them."""
        return self[:]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (str, bytes, bytearray)) or not isinstance(other, Sequence):
            return NotImplemented
        return self[:] == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<mmstore.ListTransaction ({'open' if self.active else 'not open'}) on {self._owner!r}>"


MutableSequence.register(ListTransaction)
