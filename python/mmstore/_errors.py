"""The mmstore exception hierarchy.

Every error mmstore raises for bad input or a failing environment is a subclass of :class:`Error`, and
carries ``path`` (the store involved, or ``""``). Python protocol errors stay Python's: a missing key is
``KeyError``, a bad index ``IndexError``, an unhashable key ``TypeError``.

The native core maps its error codes (``mmstore::ErrorCode`` in include/mmstore/error.hpp) to these classes
through :func:`error_for_code`.
"""

from __future__ import annotations

__all__ = [
    "Error",
    "CorruptFileError",
    "TruncatedFileError",
    "ForeignFileError",
    "WrongKindError",
    "UnsupportedVersionError",
    "StoreLockedError",
    "ClosedError",
    "EncodeError",
    "StoreIOError",
    "DiskFullError",
    "CapacityError",
    "StoreNotFoundError",
    "StoreExistsError",
    "ForkedHandleError",
    "ReadOnlyError",
    "CannotAcquireLock",
    "CannotAcquireLockTimeout",
    "AlreadyExists",
    "NotFound",
    "SchemaMismatchError",
]


class Error(Exception):
    """Base class of every mmstore error. ``path`` names the store ("" when none)."""

    def __init__(self, message: str = "", path: str = "") -> None:
        super().__init__(message)
        self.path = path


class CorruptFileError(Error):
    """The file fails a checksum, bound or invariant (C++ ``mmstore::FormatError``)."""


class TruncatedFileError(CorruptFileError):
    """The file is shorter than its header says."""


class ForeignFileError(CorruptFileError):
    """The file is not an mmstore file at all."""


class WrongKindError(CorruptFileError):
    """The file is an mmstore store of another kind (for example a List opened as a Dict)."""


class UnsupportedVersionError(CorruptFileError):
    """The file was written by a newer format version, or with an incompatible layout."""


class StoreLockedError(Error):
    """The operation needs the store to itself (``compact()``) while other handles have it open; ``pid``
    names the lock holder when there is one."""

    def __init__(self, message: str = "", path: str = "", pid: int = 0) -> None:
        super().__init__(message, path)
        self.pid = pid


class ClosedError(Error, ValueError):
    """Operation on a closed handle (a ``ValueError``, as for closed files)."""


class EncodeError(Error, TypeError):
    """A value cannot be stored: no native encoding and pickling refused (``allow_pickle=False``)."""


class StoreIOError(Error, OSError):
    """An operating-system call failed."""


class DiskFullError(StoreIOError):
    """The disk is full; the operation had no effect."""


class CapacityError(Error):
    """A store outgrew its address reservation or a format limit."""


class StoreNotFoundError(Error, FileNotFoundError):
    """``create=False`` and the store does not exist."""


class StoreExistsError(Error, FileExistsError):
    """``create=True`` and the store already exists."""


class ForkedHandleError(Error):
    """A handle opened before ``fork()`` was used in the child; open the store again there."""


class ReadOnlyError(Error, ValueError):
    """A write through a handle opened with ``readonly=True``."""


class CannotAcquireLock(Error):
    """``lock.acquire(block=False)`` found the store's lock held; ``blocking_pid`` is the holder."""

    def __init__(self, message: str = "", path: str = "", blocking_pid: int = 0) -> None:
        super().__init__(message, path)
        self.blocking_pid = blocking_pid


class CannotAcquireLockTimeout(CannotAcquireLock):
    """``lock.acquire(timeout=...)`` did not get the lock in time; ``blocking_pid`` is the holder."""


# The names SharedDict's documentation (and UltraDict users) use for the create=True / create=False cases.
AlreadyExists = StoreExistsError
NotFound = StoreNotFoundError

class SchemaMismatchError(CorruptFileError):
    """A typed-records file does not have the schema the caller expects, or a stored record's type code is
    not registered in this process."""


# Tracebacks and reprs show the public name (mmstore.CorruptFileError, not mmstore._errors.CorruptFileError).
# Pickling looks classes up by __module__ and __qualname__, and `mmstore` exports every one of them.
for _name in __all__:
    globals()[_name].__module__ = "mmstore"
del _name


_BY_CODE = {
    1: StoreIOError,
    2: DiskFullError,
    3: TruncatedFileError,
    4: CorruptFileError,
    5: ForeignFileError,
    6: WrongKindError,
    7: UnsupportedVersionError,
    8: StoreLockedError,
    9: ClosedError,
    10: EncodeError,
    11: CapacityError,
    12: StoreNotFoundError,
    13: StoreExistsError,
    14: ValueError,
    15: ForkedHandleError,
    16: ReadOnlyError,
}


def error_for_code(code: int, path: str, message: str, pid: int = 0, errno: int = 0) -> BaseException:
    """Build the exception for a native error code (called by the extension)."""
    cls = _BY_CODE.get(code, Error)
    if cls is ValueError:
        return ValueError(message)
    if cls is StoreLockedError:
        return StoreLockedError(message, path, pid)
    exc = cls(message, path)
    if isinstance(exc, OSError) and errno:
        # errno + strerror make str() read "[Errno N] <path>: <problem>"; filename stays unset because the
        # message already names the path.
        exc.errno = errno
        exc.strerror = message
    return exc


def annotate(exc: BaseException, path: str) -> BaseException:
    """Name the store in an mmstore error raised below the store level (the codec does not know it)."""
    if path and isinstance(exc, Error) and not exc.path:
        exc.path = path
        exc.args = (f"{path}: {exc.args[0]}",) + exc.args[1:] if exc.args else (path,)
    return exc


def decode_failure(exc: BaseException, path: str) -> BaseException:
    """A value that fails to decode is a corrupt file, whatever Python error the payload provoked."""
    if isinstance(exc, UnicodeDecodeError) or (isinstance(exc, TypeError) and not isinstance(exc, Error)):
        new = CorruptFileError(f"corrupt value encoding: {exc}", path)
        new.__cause__ = exc
        exc = new
    return annotate(exc, path)
