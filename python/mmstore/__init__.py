"""mmstore: persistent, shareable data structures on memory-mapped files.

This release provides the storage engine and its first face:

* :class:`Dict` -- a ``dict`` that lives in a file (``MutableMapping``);
* :class:`List` -- a ``list`` that lives in a file (``MutableSequence``);
* :func:`encode` / :func:`decode` -- the canonical value codec shared with C++ (docs/format.md).

Both open instantly (nothing is loaded), hold far more than RAM, keep anonymous memory flat, survive
``kill -9`` at any instant, and are readable from C++ (include/mmstore/dict.hpp, list.hpp).
"""

from __future__ import annotations

from . import _errors
from ._errors import *  # noqa: F401,F403  (the exception hierarchy, listed in _errors.__all__)
from . import _core
from ._core import decode, encode
from ._dict import Dict, DictItems, DictKeys, DictValues
from ._list import List
from . import _records
from ._records import *  # noqa: F401,F403  (typed records, listed in _records.__all__)
from ._records import merge

FORMAT_VERSION: int = _core.FORMAT_VERSION
__version__ = "0.1.0"

__all__ = [
    "Dict",
    "List",
    "DictKeys",
    "DictValues",
    "DictItems",
    "encode",
    "decode",
    "FORMAT_VERSION",
    "merge",
    *_records.__all__,
    *_errors.__all__,
]
