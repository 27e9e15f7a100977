"""mmstore: persistent, shareable data structures on memory-mapped files.

This release provides the storage engine and its first face:

* :class:`Dict` -- a ``dict`` that lives in a file (``MutableMapping``);
* :class:`List` -- a ``list`` that lives in a file (``MutableSequence``);
* :class:`SharedDict` -- a ``dict`` in shared memory, attached by name from any process, with a robust
  process-shared lock (``.lock``), atomic ``increment``/``compare_and_set``/``update_many`` and
  ``wait_for_change``; :func:`shared_dicts` lists the segments on this machine;
* :class:`Pool` -- a memory-limited object pool that spills least-recently-used objects to disk and maps
  them back zero-copy (:func:`load` reads its saved files; :mod:`mmstore.dask` plugs it into Dask workers);
* :func:`encode` / :func:`decode` -- the canonical value codec shared with C++ (docs/format.md).

Both open instantly (nothing is loaded), hold far more than RAM, keep anonymous memory flat, survive
``kill -9`` at any instant, and are readable from C++ (include/mmstore/dict.hpp, list.hpp).
"""

from __future__ import annotations

from . import _errors
from ._errors import *  # noqa: F401,F403  (the exception hierarchy, listed in _errors.__all__)
from . import _core
from ._core import decode, encode, upgrade
from ._dict import Dict, DictItems, DictKeys, DictValues
from ._list import List
from ._list_txn import ListTransaction
from ._pool import Pool, Ref, is_mapped, load, register_spill
from ._shared import NestedDict, SharedDict, SharedDictInfo, shared_dicts
from ._txn import Transaction
from ._snapshot import ListSnapshot, Snapshot
from . import _records
from ._records import *  # noqa: F401,F403  (typed records, listed in _records.__all__)
from ._records import merge
from ._version import __version__

StoreLock = _core.StoreLock

FORMAT_VERSION: int = _core.FORMAT_VERSION

__all__ = [
    "Dict",
    "List",
    "ListTransaction",
    "SharedDict",
    "SharedDictInfo",
    "NestedDict",
    "Transaction",
    "Snapshot",
    "ListSnapshot",
    "shared_dicts",
    "StoreLock",
    "DictKeys",
    "DictValues",
    "DictItems",
    "encode",
    "decode",
    "Pool",
    "Ref",
    "load",
    "is_mapped",
    "register_spill",
    "FORMAT_VERSION",
    "upgrade",
    "merge",
    "__version__",
    # _records.__all__ and _errors.__all__, written out so that type checkers see them
    # (tests/python/test_packaging.py checks that they are all here)
    "struct", "Schema", "RecordArray", "Mapping", "RecordProxy", "clone", "register_type", "int8", "int16",
    "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64",
    "Error", "CorruptFileError", "TruncatedFileError", "ForeignFileError", "WrongKindError",
    "UnsupportedVersionError", "StoreLockedError", "ClosedError", "EncodeError", "StoreIOError",
    "DiskFullError", "CapacityError", "StoreNotFoundError", "StoreExistsError", "ForkedHandleError",
    "ReadOnlyError", "CannotAcquireLock", "CannotAcquireLockTimeout", "AlreadyExists", "NotFound",
    "SchemaMismatchError",
]
