"""Snapshots: ``with d.snapshot() as s:`` on Dict and SharedDict.

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

from collections.abc import Iterator, Mapping
from typing import Any

from . import _core


class Snapshot(_core._Snapshot):
    """The read-only mapping ``s`` of ``with d.snapshot() as s:`` (see the module docstring). Using ``s``
    outside its block raises."""

    def __iter__(self) -> Iterator[Any]:
        return iter([k for k, _ in self.items()])

    def keys(self):
        return [k for k, _ in self.items()]

    def values(self):
        return [v for _, v in self.items()]

    def copy(self) -> dict:
        """A plain ``dict`` of the snapshot's items (nested dicts become dicts too)."""
        return {k: (v.copy() if isinstance(v, Snapshot) else v) for k, v in self.items()}

    __eq__ = Mapping.__eq__
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<mmstore.Snapshot ({'open' if self.active else 'not open'}) of {self._owner!r}>"


Mapping.register(Snapshot)
