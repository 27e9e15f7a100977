"""sharedbuffers compatibility: ``from mmstore.compat.sharedbuffers import mapped_struct``.

See :mod:`mmstore.compat.sharedbuffers.mapped_struct`; its names are also importable from here.
"""

from . import mapped_struct
from .mapped_struct import *  # noqa: F401,F403

# mapped_struct.__all__, written out so that type checkers see it (tests/python/test_packaging.py checks it)
__all__ = [
    "mapped_struct",
    "Schema", "mapped_object", "MappedArrayProxyBase", "MappedMappingProxyBase", "MappedMultiMappingProxyBase",
    "StringIdMapper", "StringId32Mapper", "NumericIdMapper", "NumericId32Mapper", "ObjectIdMapper",
    "StringIdMultiMapper", "StringId32MultiMapper", "NumericIdMultiMapper", "NumericId32MultiMapper",
    "ApproxStringIdMultiMapper", "ApproxStringId32MultiMapper", "ubyte", "byte", "ushort", "short", "uint8",
    "int8", "uint16", "int16", "int32", "uint32", "int64", "uint64", "float32", "float64",
    "bsearch", "sorted_contains", "index_merge", "cmp",
]
