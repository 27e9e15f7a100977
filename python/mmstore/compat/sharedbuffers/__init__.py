"""sharedbuffers compatibility: ``from mmstore.compat.sharedbuffers import mapped_struct``.

See :mod:`mmstore.compat.sharedbuffers.mapped_struct`; its names are also importable from here.
"""

from . import mapped_struct
from .mapped_struct import *  # noqa: F401,F403
from .mapped_struct import __all__ as _names

__all__ = ["mapped_struct", *_names]
