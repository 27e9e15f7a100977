"""What every store handle shares: opening options, context manager, stats, pickling as "reopen by path".

``StoreHandle`` holds these methods once; :func:`store_handle` copies them into a class whose only base is a
native handle type (``_core._Dict``, ``_core._List``). They are copied rather than inherited as a mixin
because nanobind's metaclass accepts one base only before nanobind 3 (which needs Python >= 3.10), so
``class Dict(StoreHandle, _core._Dict)`` cannot be created on Python 3.9. Copying also keeps the method
resolution order of the hot paths as short as a plain subclass's.
"""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

_T = TypeVar("_T", bound=type)


class StoreHandle:
    """The shared methods (never a base class: see the module docstring)."""

    __slots__ = ()

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

    def __reduce__(self):
        # A handle pickles as "reopen this path with these options" in the receiving process.
        return (_reopen, (type(self), self.path, self.allow_pickle))


def _make_init(native: type) -> Callable[..., None]:
    native_init = native.__init__

    def __init__(
        self: Any,
        path: str | os.PathLike[str],
        *,
        create: bool | None = None,
        mode: int = 0o600,
        allow_pickle: bool = True,
        durable: bool = False,
        readonly: bool = False,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"{type(self).__name__}: path must be a str or os.PathLike, not {type(path).__name__}")
        native_init(
            self, os.fspath(path), create=create, mode=mode, allow_pickle=allow_pickle, durable=durable,
            readonly=readonly,
        )

    return __init__


def store_handle(cls: _T) -> _T:
    """Class decorator: give ``cls`` (whose one base is a native handle type) the shared handle methods it
    does not define itself, and ``cls[...]`` for annotations such as ``Dict[str, int]``."""
    (native,) = cls.__bases__
    own = vars(cls)
    if "__init__" not in own:
        init = _make_init(native)
        init.__qualname__ = f"{cls.__qualname__}.__init__"
        setattr(cls, "__init__", init)
    for name, value in vars(StoreHandle).items():
        if callable(value) and name not in own and name not in ("__init__",) and not name.startswith("__slot"):
            setattr(cls, name, value)
    if "__class_getitem__" not in own:
        setattr(cls, "__class_getitem__", classmethod(_class_getitem))
    return cls


def _class_getitem(cls: type, item: object) -> type:  # Dict[str, int] in annotations
    return cls


def _reopen(cls, path: str, allow_pickle: bool):
    return cls(path, create=False, allow_pickle=allow_pickle)
