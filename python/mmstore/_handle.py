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

from ._codec import Serializer

_T = TypeVar("_T", bound=type)


def check_path(path, where: str, arg: str = "path") -> str:
    """``path`` as a str; TypeError for anything but str or os.PathLike[str], ValueError for a NUL byte
    (the kernel would stop there and act on another file: ``"x/a\\0.secret"`` is ``"x/a"``)."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"{where}: {arg} must be a str or os.PathLike[str], not {type(path).__name__}") from None
    if not isinstance(path, str):
        raise TypeError(f"{where}: {arg} must be a str or os.PathLike[str], not {type(path).__name__}")
    if "\0" in path:
        raise ValueError(f"{where}: {arg} {path!r} contains a NUL byte")
    return path


def check_options(where: str, **options) -> None:
    """TypeError naming the option and its type for a wrong-typed store option (instead of nanobind's
    signature dump); ValueError for a mode outside 0..0o7777."""
    for key, value in options.items():
        if key == "mode":
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{where}: mode must be an int (permission bits such as 0o600), "
                                f"not {type(value).__name__}")
            if not 0 <= value <= 0o7777:
                raise ValueError(f"{where}: mode {value:#o} is not a set of permission bits (0 to 0o7777)")
        elif key == "create":
            if value is not None and not isinstance(value, bool):
                raise TypeError(f"{where}: create must be None, True or False, not {type(value).__name__}")
        elif not isinstance(value, bool):
            raise TypeError(f"{where}: {key} must be a bool, not {type(value).__name__}")


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
        pickler: Any = None,
        unpickler: Any = None,
        verify: bool = True,
    ) -> None:
        name = type(self).__name__
        path = check_path(path, name)
        check_options(name, create=create, mode=mode, allow_pickle=allow_pickle, durable=durable, readonly=readonly,
                      verify=verify)
        if (pickler is not None or unpickler is not None) and not allow_pickle:
            raise ValueError(f"{name}({path!r}): pickler=/unpickler= write and read the pickle payload that "
                             "allow_pickle=False refuses; pass one or the other")
        serializer = Serializer(pickler, unpickler) if pickler is not None or unpickler is not None else None
        native_init(self, path, create=create, mode=mode, allow_pickle=allow_pickle, durable=durable, readonly=readonly,
                    verify=verify)
        if serializer is not None:
            self._set_serializer(serializer)

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
        shared = callable(value) or isinstance(value, property)  # methods, and properties (pickler, unpickler)
        if shared and name not in own and name not in ("__init__",) and not name.startswith("__slot"):
            setattr(cls, name, value)
    if "__class_getitem__" not in own:
        setattr(cls, "__class_getitem__", classmethod(_class_getitem))
    return cls


def _class_getitem(cls: type, item: object) -> type:  # Dict[str, int] in annotations
    return cls


def _reopen(cls, path: str, allow_pickle: bool):
    return cls(path, create=False, allow_pickle=allow_pickle)
