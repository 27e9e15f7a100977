"""pyrsistence compatibility: ``from mmstore.compat.pyrsistence import EMDict, EMList``.

pyrsistence stores each container in a *directory* (``EMDict("graph")`` creates ``graph/``); these names keep
that convention and place one mmstore file inside it, so code that reopens ``EMDict("graph")`` finds its data.
They are the native :class:`mmstore.Dict` / :class:`mmstore.List`, not a second implementation: everything
else (views, pickling of handles, ``sync``, ``close``) is mmstore's.

Differences from pyrsistence worth knowing: keys compare by type and value (``1`` and ``1.0`` are distinct
keys), values are stored in mmstore's language-neutral codec (pickle only for other objects), and files are
crash-safe and private (mode 0600) by default.
"""

from __future__ import annotations

import os

from .._dict import Dict
from .._handle import _reopen
from .._list import List

__all__ = ["EMDict", "EMList"]

_DICT_FILE = "dict.mms"
_LIST_FILE = "list.mms"


def _file_in(dirname: str | os.PathLike[str], name: str) -> str:
    dirname = os.fspath(dirname)
    os.makedirs(dirname, mode=0o700, exist_ok=True)
    return os.path.join(dirname, name)


def _reduce_to_directory(self):
    """Pickles as "reopen this directory", pyrsistence's unit of storage."""
    return (_reopen, (type(self), os.path.dirname(self.path), self.allow_pickle))


# One base each: nanobind before 3.0 (the one Python 3.9 gets) refuses a mixin beside a native base.
class EMDict(Dict):
    """External-memory dict stored in directory ``dirname`` (pyrsistence's ``EMDict``)."""

    __slots__ = ()

    def __init__(self, dirname: str | os.PathLike[str], **options) -> None:
        super().__init__(_file_in(dirname, _DICT_FILE), **options)

    __reduce__ = _reduce_to_directory


class EMList(List):
    """External-memory list stored in directory ``dirname`` (pyrsistence's ``EMList``)."""

    __slots__ = ()

    def __init__(self, dirname: str | os.PathLike[str], **options) -> None:
        super().__init__(_file_in(dirname, _LIST_FILE), **options)

    __reduce__ = _reduce_to_directory
