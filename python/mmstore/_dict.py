"""mmstore.Dict: a persistent dict in a file."""

from __future__ import annotations

import os

from collections.abc import ItemsView, KeysView, Mapping, MutableMapping, ValuesView
from typing import TYPE_CHECKING, Any, Iterator

from . import _core

if TYPE_CHECKING:
    from typing_extensions import Self
from ._handle import store_handle
from ._txn import Transaction
from ._snapshot import Snapshot

_KEYS, _VALUES, _ITEMS = 0, 1, 2
_MISSING = object()
_REPR_LIMIT = 50


class DictKeys(KeysView):
    """``Dict.keys()``: a live, set-like view (iteration in insertion order)."""

    __slots__ = ()

    def __iter__(self) -> Iterator[Any]:
        return self._mapping._iter(_KEYS)

    def __repr__(self) -> str:
        return f"mmstore.DictKeys({list(self)!r})"


class DictValues(ValuesView):
    """``Dict.values()``: a live view of the values."""

    __slots__ = ()

    def __iter__(self) -> Iterator[Any]:
        return self._mapping._iter(_VALUES)

    def __repr__(self) -> str:
        return f"mmstore.DictValues({list(self)!r})"


class DictItems(ItemsView):
    """``Dict.items()``: a live, set-like view of (key, value) pairs."""

    __slots__ = ()

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        return self._mapping._iter(_ITEMS)

    def __repr__(self) -> str:
        return f"mmstore.DictItems({list(self)!r})"


@store_handle
class Dict(_core._Dict):
    """A dict that lives in a file: ``mmstore.Dict(path, *, create=None, mode=0o600, allow_pickle=True,
    durable=False, readonly=False, verify=True)``.

    * ``create``: ``None`` opens or creates, ``True`` must create (``StoreExistsError`` otherwise),
      ``False`` must exist (``StoreNotFoundError`` otherwise).
    * ``mode``: permission bits of a new file (default private, 0o600).
    * ``allow_pickle``: values without a native encoding are pickled; ``False`` refuses to write or read
      pickles (``EncodeError``), so an untrusted file cannot run code.
    * ``durable``: ``sync()`` after every mutation (slow; survives power loss per operation).
    * ``readonly``: map read-only; several read-only handles may share a file with no writer.
    * ``verify``: check what every read returns (default): each stored word's check byte, each record's
      checksum, the table's counters, and on a miss the probed index, so a damaged file raises
      ``CorruptFileError`` naming the file and offset instead of returning wrong data. ``False`` skips these
      read checks (a few percent faster; O(1) instead of O(size) for values above 4 KiB) at the risk of
      returning damaged data as if it were real; ``verify()`` and the repair on open still check everything.

    Behaves like ``dict`` (``MutableMapping``), with one documented difference: **keys are compared by
    type and value** through their canonical encoding, so ``1``, ``1.0`` and ``True`` are three distinct
    keys (in a ``dict`` they are one). This makes a store answer the same in every process and language.
    Iteration follows insertion order; ``popitem()`` is LIFO.

    Reopening is instant: nothing is loaded, the file is mapped and used in place.

    ``get_many(keys, default=None)`` returns ``[d.get(k, default) for k in keys]`` in one call: each chunk of
    4,096 keys is looked up in one consistent snapshot, without the GIL while probing. ``verify()`` also
    runs without the GIL; ``close()`` or ``compact()`` from another thread meanwhile raises ``ValueError``.
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

    # -- transactions and consistent reads (docs/design.md, "Transactions and snapshots") ---------------
    def transaction(self) -> "Transaction":
        """``with d.transaction() as t:`` -- hold the write lock, read and write through ``t``; at the end
        every change becomes visible to all readers at one instant, on an exception none does (and the
        exception propagates). Nested calls are savepoints. See :class:`mmstore.Transaction`."""
        return _core._new_transaction(Transaction, self, 0, 0)

    def snapshot(self) -> "Snapshot":
        """``with d.snapshot() as s:`` -- a read-only mapping of the dict as of the instant the block
        begins, whatever writers do meanwhile; O(1) to open, no lock. See :class:`mmstore.Snapshot`."""
        return Snapshot(self)

    # -- views and copies ------------------------------------------------------------------------------
    def keys(self) -> DictKeys:
        return DictKeys(self)

    def values(self) -> DictValues:
        return DictValues(self)

    def items(self) -> DictItems:
        return DictItems(self)

    def copy(self) -> dict:
        """A plain ``dict`` with every entry (loaded into memory)."""
        return dict(self._iter(_ITEMS))

    def __reversed__(self) -> Iterator[Any]:
        return reversed(list(self._iter(_KEYS)))

    # -- mutation --------------------------------------------------------------------------------------
    def update(self, other=(), /, **kwargs) -> None:
        """Store every pair, one atomic write per pair: not atomic as a whole (a process killed during it
        leaves some of the pairs stored). ``update_many`` stores a batch as one atomic step."""
        src = other
        if isinstance(other, Dict):
            src = other._iter(_ITEMS)
        elif type(other) is not dict and hasattr(other, "keys"):
            src = ((k, other[k]) for k in other.keys())
        self._update_from(src)
        if kwargs:
            self._update_from(kwargs)

    def __ior__(self, other):
        self.update(other)
        return self

    def __or__(self, other):
        if not isinstance(other, Mapping):
            return NotImplemented
        out = self.copy()
        out.update(other)
        return out

    def __ror__(self, other):
        if not isinstance(other, Mapping):
            return NotImplemented
        out = dict(other)
        out.update(self._iter(_ITEMS))
        return out

    # -- comparison, repr --------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        if len(self) != len(other):
            return False
        for k, v in self._iter(_ITEMS):
            try:
                ov = other[k]
            except KeyError:
                return False
            if not (ov is v or ov == v):
                return False
        return True

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self.closed:
            return f"<mmstore.Dict {self.path!r} (closed)>" if self.path else "<mmstore.Dict (not open)>"
        n = len(self)
        parts = []
        for i, (k, v) in enumerate(self._iter(_ITEMS)):
            if i == _REPR_LIMIT:
                parts.append(f"... ({n - _REPR_LIMIT} more)")
                break
            parts.append(f"{k!r}: {v!r}")
        return f"mmstore.Dict({self.path!r}, {{{', '.join(parts)}}})"


MutableMapping.register(Dict)
