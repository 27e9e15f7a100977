"""Snapshots: ``with d.snapshot() as s:`` on Dict and SharedDict, and ``with l.snapshot() as s:`` on List.

``s`` is a read-only mapping of the dict as of the instant the block began: whatever other threads and
processes write meanwhile, every read through ``s`` (``s[k]``, ``get``, ``in``, ``len``, iteration, keys,
values, items) answers from that instant. Opening costs O(1) and takes no lock; reads take none either, and
never wait for a writer (one stopped with SIGSTOP stops no snapshot). While any snapshot of the store is
open, each write records the old value of what it changes (O(1) per write); those records are freed by the
first write after the last snapshot closes, or after the process holding it died. At most 64 snapshots of a
store are open at once. ``len(s)`` and iteration collect the snapshot's items once, in process memory, and
reuse them. A nested dict of a SharedDict reads back as a snapshot of that dict at the same instant (a
``Snapshot``, open while the one it came from is), also after it was replaced or deleted in the store:
such a dict is kept until the last snapshot that can see it closes. ``nd.snapshot()`` on a
:class:`~mmstore.NestedDict` snapshots that nested dict alone. docs/design.md, "Transactions and snapshots".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import chain
from typing import Any

from . import _core


class Snapshot(_core._Snapshot):
    """The read-only mapping ``s`` of ``with d.snapshot() as s:`` (see the module docstring). Using ``s``
    outside its block raises."""

    __slots__ = ()  # no __dict__ (see Transaction)

    # iter(s) is native (_core._Snapshot's tp_iter, python/bindings/snapshot.cpp): while nothing was
    # written since the snapshot opened it walks the live table like iter(d), else the instant's items.

    def keys(self):
        return list(self._iter(0))

    def values(self):
        return list(self._iter(1))

    def copy(self) -> dict:
        """A plain ``dict`` of the snapshot's items (nested dicts become dicts too)."""
        return {k: (v.copy() if isinstance(v, Snapshot) else v) for k, v in self.items()}

    __eq__ = Mapping.__eq__
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<mmstore.Snapshot ({'open' if self.active else 'not open'}) of {self._owner!r}>"


Mapping.register(Snapshot)


class ListSnapshot(_core._ListSnapshot):
    """The read-only sequence ``s`` of ``with l.snapshot() as s:`` on a :class:`mmstore.List`: its length and
    every element as of the instant the block began, whatever other threads and processes write meanwhile
    (``s[i]`` with negative indices, slices, ``len``, iteration, ``in``, ``index``, ``count``,
    ``reversed``, ``==`` against any sequence). Opening costs O(1) and takes no lock; reads take none either
    and never wait for a writer. While any snapshot of the store is open, each write other than an append
    records a copy of each 64-element page it is about to change (once per page per snapshot), so a write
    costs O(1) more, and one that moves n elements (insert or delete in the middle, clear, sort) O(n) more,
    like the write itself; records the list drops meanwhile are kept, not freed. Appends record nothing:
    the snapshot keeps the length it opened with.
    All of it is freed by the first write after the last snapshot closes (or after the process holding it
    died). Elements are decoded fresh at each read, as from the list. Using ``s`` outside its block raises.
    docs/design.md, "Snapshots of a List"."""

    __slots__ = ()  # no __dict__ (see Transaction)

    _BATCH = 256  # elements read per step of reversed()

    # iter(s) is native (_core._ListSnapshot's tp_iter, python/bindings/list_snapshot.cpp): batches of 256
    # words read from the instant, each decoded when handed out; closing the snapshot while iterating raises
    # at the next batch, or sooner at an element whose decoding needs the mapping (a record).

    def __reversed__(self) -> Iterator[Any]:
        n, step, get = len(self), self._BATCH, self._range
        return chain.from_iterable(reversed(get(max(0, i - step), i)) for i in range(n, 0, -step))

    def __contains__(self, value: Any) -> bool:
        return any(v is value or v == value for v in self)

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        start, stop, _ = slice(start, stop).indices(len(self))
        for i, v in enumerate(self[start:stop], start):
            if v is value or v == value:
                return i
        raise ValueError(f"{value!r} is not in list")

    def count(self, value: Any) -> int:
        return sum(1 for v in self if v is value or v == value)

    def copy(self) -> list:
        """A plain ``list`` of the snapshot's elements."""
        return list(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes, bytearray)):
            return NotImplemented
        return len(self) == len(other) and list(self) == list(other)

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<mmstore.ListSnapshot ({'open' if self.active else 'not open'}) of {self._owner!r}>"


Sequence.register(ListSnapshot)
