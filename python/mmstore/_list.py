"""mmstore.List: a persistent list in a file."""

from __future__ import annotations

import os

from collections.abc import Iterable, MutableSequence, Sequence
from typing import TYPE_CHECKING, Any, Callable

from . import _core
from ._list_txn import ListTransaction
from ._snapshot import ListSnapshot

if TYPE_CHECKING:
    from typing_extensions import Self
from ._handle import store_handle

_REPR_LIMIT = 50


@store_handle
class List(_core._List):
    """A list that lives in a file: ``mmstore.List(path, *, create=None, mode=0o600, allow_pickle=True,
    durable=False, readonly=False, verify=True)`` (options as for :class:`mmstore.Dict`).

    Behaves like ``list`` (``MutableSequence``): indexing with negative indices and slices, slice
    assignment and deletion, ``append``, ``extend``, ``insert``, ``pop``, ``remove``, ``index``, ``count``,
    ``reverse``, ``sort``, ``in``, ``+=``, ``*=``, ``==`` against any sequence. ``l[i]`` and iteration decode
    fresh objects from the file: mutating a returned list does not change the store -- assign it back.

    Appends are O(1); ``insert``/``del`` in the middle, slice assignment, ``sort`` and ``reverse`` rebuild the
    index of words (8 bytes per element) aside and switch it atomically, as ``list`` moves its pointers.

    ``extend`` (and ``+=``) appends in chunks of 4,096 elements, each under one hold of the lock, like
    :meth:`mmstore.Dict.update` it is not atomic as a whole. Other processes may see part of it, and a process
    killed during ``extend`` leaves a prefix of the new elements in the list (never a torn element). Inside
    ``with lst.transaction() as t:`` (``t.extend(...)``) it is atomic: seen whole or not at all.

    A slice ``lst[a:b]`` is read at one instant (read again while a write lands between its reads).
    """

    __slots__ = ()

    if TYPE_CHECKING:  # what @store_handle copies in (mmstore/_handle.py), spelled out for type checkers
        def __init__(self, path: str | os.PathLike[str], *, create: bool | None = None, mode: int = 0o600,
                     allow_pickle: bool = True, durable: bool = False, readonly: bool = False,
                     pickler: Any = None, unpickler: Any = None, verify: bool = True) -> None: ...
        def __enter__(self) -> Self: ...
        def __exit__(self, *exc: object) -> None: ...
        def update_many(self, items: Any = (), /, **kwargs: Any) -> None: ...
        def stats(self) -> dict[str, Any]: ...
        @property
        def pickler(self) -> Any: ...
        @property
        def unpickler(self) -> Any: ...
        def __class_getitem__(cls, item: object) -> type[Self]: ...

    # -- transactions (docs/design.md, "List transactions") ----------------------------------------------
    def transaction(self) -> ListTransaction:
        """``with l.transaction() as t:`` -- hold the write lock, read and write through ``t`` (a mutable
        sequence); at the end every change, the length included, becomes visible to all readers at one
        instant, on an exception none does (and the exception propagates). Nested calls are savepoints.
        See :class:`mmstore.ListTransaction`."""
        return ListTransaction(self)

    def snapshot(self) -> ListSnapshot:
        """``with l.snapshot() as s:`` -- a read-only sequence of the list (length and elements) as of the
        instant the block begins, whatever writers do meanwhile; O(1) to open, no lock. See
        :class:`mmstore.ListSnapshot`."""
        return ListSnapshot(self)

    # -- slices (called by the native mp_ass_subscript) ---------------------------------------------------
    def _setslice(self, key: slice, value: Iterable[Any]) -> None:
        values = list(value)
        start, stop, step = key.indices(len(self))
        if step == 1:
            self._splice(start, max(start, stop), values)
            return
        positions = range(start, stop, step)
        if len(values) != len(positions):
            raise ValueError(
                f"attempt to assign sequence of size {len(values)} to extended slice of size {len(positions)}"
            )
        for i, v in zip(positions, values):
            self[i] = v

    def _delslice(self, key: slice) -> None:
        n = len(self)
        start, stop, step = key.indices(n)
        if step == 1:
            self._splice(start, max(start, stop), [])
            return
        drop = set(range(start, stop, step))
        if drop:
            self._reorder([i for i in range(n) if i not in drop])

    # -- MutableSequence ---------------------------------------------------------------------------------
    def remove(self, value: Any) -> None:
        del self[self.index(value)]

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        n = len(self)
        start, stop, _ = slice(start, stop).indices(n)
        for i in range(start, stop):
            v = self[i]
            if v is value or v == value:
                return i
        raise ValueError(f"{value!r} is not in list")

    def count(self, value: Any) -> int:
        return sum(1 for v in self if v is value or v == value)

    def reverse(self) -> None:
        self._reorder(list(range(len(self) - 1, -1, -1)))

    def sort(self, *, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> None:
        """Stable sort, like ``list.sort``: values are decoded to compare, then only the 8-byte words move."""
        values = list(self)
        keyed = values if key is None else [key(v) for v in values]
        order = sorted(range(len(values)), key=keyed.__getitem__, reverse=reverse)
        self._reorder(order)

    def copy(self) -> list:
        """A plain ``list`` with every element (loaded into memory)."""
        return list(self)

    def __iadd__(self, other: Iterable[Any]) -> "List":
        self.extend(other)
        return self

    def __add__(self, other):
        if not isinstance(other, (list, List)):
            return NotImplemented
        return list(self) + list(other)

    def __radd__(self, other):
        if not isinstance(other, list):
            return NotImplemented
        return other + list(self)

    def __imul__(self, n: int) -> "List":
        if not isinstance(n, int):
            return NotImplemented
        if n <= 0:
            self.clear()
        else:
            items = list(self)
            for _ in range(n - 1):
                self.extend(items)
        return self

    def __mul__(self, n: int):
        if not isinstance(n, int):
            return NotImplemented
        return list(self) * n

    __rmul__ = __mul__

    # -- comparison, repr ----------------------------------------------------------------------------------
    def _cmp_other(self, other):
        if isinstance(other, (list, List)):
            return list(other) if isinstance(other, List) else other
        return None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (str, bytes, bytearray)) or not isinstance(other, Sequence):
            return NotImplemented
        if len(self) != len(other):
            return False
        return all(a is b or a == b for a, b in zip(self, other))

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __lt__(self, other):
        o = self._cmp_other(other)
        return NotImplemented if o is None else list(self) < o

    def __le__(self, other):
        o = self._cmp_other(other)
        return NotImplemented if o is None else list(self) <= o

    def __gt__(self, other):
        o = self._cmp_other(other)
        return NotImplemented if o is None else list(self) > o

    def __ge__(self, other):
        o = self._cmp_other(other)
        return NotImplemented if o is None else list(self) >= o

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self.closed:
            return f"<mmstore.List {self.path!r} (closed)>" if self.path else "<mmstore.List (not open)>"
        n = len(self)
        head = [repr(self[i]) for i in range(min(n, _REPR_LIMIT))]
        if n > _REPR_LIMIT:
            head.append(f"... ({n - _REPR_LIMIT} more)")
        return f"mmstore.List({self.path!r}, [{', '.join(head)}])"


MutableSequence.register(List)
