"""What every store handle shares: opening options, context manager, stats, pickling as "reopen by path"."""

from __future__ import annotations

import os

from ._codec import Serializer


class StoreHandle:
    """Mixin placed before a native handle type (``_core._Dict``, ``_core._List``) in the bases."""

    __slots__ = ()

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool | None = None,
        mode: int = 0o600,
        allow_pickle: bool = True,
        durable: bool = False,
        readonly: bool = False,
        pickler=None,
        unpickler=None,
    ) -> None:
        if (pickler is not None or unpickler is not None) and not allow_pickle:
            raise ValueError(f"{type(self).__name__}({os.fspath(path)!r}): pickler=/unpickler= write and read the "
                             "pickle payload that allow_pickle=False refuses; pass one or the other")
        serializer = Serializer(pickler, unpickler) if pickler is not None or unpickler is not None else None
        super().__init__(
            os.fspath(path), create=create, mode=mode, allow_pickle=allow_pickle, durable=durable, readonly=readonly
        )
        if serializer is not None:
            self._set_serializer(serializer)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update_many(self, items=(), /, **kwargs) -> None:
        """Store every pair as one atomic step: other writers, and lock-free readers, see all or none.

        The pairs go into a copy of the table that replaces it with one store, so this costs O(len(self))
        per call; use ``update()`` (one atomic write per pair) for bulk loading."""
        if kwargs:
            items = list(items.items() if hasattr(items, "items") else items) + list(kwargs.items())
        elif hasattr(items, "items") and not isinstance(items, dict):
            items = list(items.items())
        self._update_many(items)

    def stats(self) -> dict:
        """Entries, file and disk bytes, free bytes on the arena's free lists, capacity."""
        return self._stats()

    @property
    def pickler(self):
        """The ``pickler=`` this store was opened with (``None``: pickle)."""
        s = self._serializer()
        return s.pickler if s is not None else None

    @property
    def unpickler(self):
        """The ``unpickler=`` this store was opened with (``None``: pickle)."""
        s = self._serializer()
        return s.unpickler if s is not None else None

    def __reduce__(self):
        # A handle pickles as "reopen this path with these options" in the receiving process (a custom
        # pickler is not sent along: the receiver opens with its own, as pyrsistence users do).
        return (_reopen, (type(self), self.path, self.allow_pickle))

    def __class_getitem__(cls, item):  # Dict[str, int] in annotations
        return cls


def _reopen(cls, path: str, allow_pickle: bool):
    return cls(path, create=False, allow_pickle=allow_pickle)
