"""Shared strategies and helpers for the mmstore Python tests.

* ``canon(value)``: a hashable, type-exact normal form of a decoded value. Floats compare by their bit
  pattern (so ``nan`` equals a ``nan`` with the same bits and ``-0.0 != 0.0``), ``1``, ``1.0`` and ``True``
  stay distinct, dicts keep their order. Use it to compare what a store returns with what was stored.
* ``model_key(key)``: the same normal form for keys. mmstore compares keys by their canonical encoding
  (type and value), so a model dict keyed by ``model_key`` behaves exactly as the store is specified to.
* Hypothesis strategies: ``keys``, ``values`` (recursive), ``list_values`` (no nan: list methods compare
  with ``==``).
* Under ``scripts/sanitize.sh python`` (``MMSTORE_UNDER_ASAN=1``: the extension is built with ASan and
  UBSan) the tests of ``_ASAN_SKIPS`` skip, each with its reason.
* ``CHILD_ENV``: the environment for child Python processes, with the mmstore under test on their path.
* Hypothesis profile ``ci`` (scripts/test.sh selects it): derandomized, so the suite CI runs is the same
  every time -- the advice of Hypothesis' documentation for CI. Run pytest without it to explore new
  examples locally (``--hypothesis-seed`` reproduces one).
"""

from __future__ import annotations

import math
import os
import struct

import pytest

from hypothesis import settings
from hypothesis import strategies as st

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)

import mmstore  # noqa: E402

# The environment for child Python processes (``subprocess`` with ``sys.executable``): the mmstore under
# test first on their path, whether it is installed or found through PYTHONPATH; a child that crashes
# (SIGSEGV, SIGBUS, abort) prints its Python traceback on stderr, which the tests show when it exits.
CHILD_ENV = dict(os.environ, PYTHONFAULTHANDLER="1")
CHILD_ENV["PYTHONPATH"] = os.pathsep.join(
    p for p in (os.path.dirname(os.path.dirname(os.path.abspath(mmstore.__file__))), os.environ.get("PYTHONPATH"))
    if p
)

# Tests that cannot run against an ASan build of the extension, and why. ASan keeps shadow memory (1/8 of
# what a process maps and touches) and a quarantine of freed blocks, so RSS says nothing about mmstore there.
_ASAN_RSS = "measures resident memory (RSS), which ASan's shadow memory and quarantine inflate by design"
_ASAN_SKIPS = {
    "test_builds_stay_within_their_memory_budget": _ASAN_RSS,
    "test_anonymous_memory_stays_flat_over_a_million_entries": _ASAN_RSS,
}


def pytest_collection_modifyitems(config, items):
    if not os.environ.get("MMSTORE_UNDER_ASAN"):
        return
    for item in items:
        reason = _ASAN_SKIPS.get(getattr(item, "originalname", item.name))
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"under ASan: {reason}"))


# -- normal forms -------------------------------------------------------------------------------------------


def canon(v):
    """Type-exact, hashable normal form of a value made of the natively encoded builtin types."""
    t = type(v)
    if v is None or t is bool or t is int or t is str or t is bytes:
        return (t.__name__, v)
    if t is float:
        return ("float", struct.pack("<d", v))
    if t is tuple:
        return ("tuple", tuple(canon(x) for x in v))
    if t is list:
        return ("list", tuple(canon(x) for x in v))
    if t is dict:
        return ("dict", tuple((canon(k), canon(x)) for k, x in v.items()))
    if t is set or t is frozenset:
        return (t.__name__, frozenset(canon(x) for x in v))
    return (t.__module__ + "." + t.__qualname__, repr(v))


model_key = canon


def has_nan(v) -> bool:
    t = type(v)
    if t is float:
        return math.isnan(v)
    if t in (tuple, list, set, frozenset):
        return any(has_nan(x) for x in v)
    if t is dict:
        return any(has_nan(k) or has_nan(x) for k, x in v.items())
    return False


def assert_same(actual, expected):
    """``actual`` equals ``expected`` exactly: same types all the way down, floats bit for bit."""
    assert canon(actual) == canon(expected), f"{actual!r} != {expected!r}"


# -- strategies ----------------------------------------------------------------------------------------------

BIG_INTS = [2**64, -(2**64), 2**64 + 1, 2**100, -(2**100), 2**63, -(2**63) - 1, 10**40]
EDGE_INTS = [0, 1, -1, 127, 128, 129, -128, -129, 255, 256, 2**31, 2**55 - 1, 2**55, 2**55 + 1, 2**56,
             2**63 - 1, -(2**63)]

ints = st.one_of(
    st.integers(-300, 300),
    st.sampled_from(EDGE_INTS + BIG_INTS),
    st.integers(-(2**130), 2**130),
)
# ≤ 7 UTF-8 bytes fit inline in a slot; longer strings become records. Both halves are drawn on purpose.
short_text = st.text(max_size=3)
long_text = st.text(min_size=8, max_size=60)
texts = st.one_of(short_text, long_text, st.text(alphabet="aé€😀", min_size=1, max_size=12))
short_bytes = st.binary(max_size=7)
long_bytes = st.binary(min_size=8, max_size=80)
byte_strings = st.one_of(short_bytes, long_bytes)
floats = st.one_of(st.floats(allow_nan=True), st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan]))
floats_no_nan = st.floats(allow_nan=False)

hashable_leaves = st.one_of(st.none(), st.booleans(), ints, floats, texts, byte_strings)

# Keys: every hashable native type. 1, 1.0 and True are distinct keys in a store; model_key agrees.
keys = st.one_of(
    st.integers(-20, 20),  # small pool: many overwrites and deletes hit existing keys
    st.sampled_from(["a", "b", "k", "key", "x" * 7, "y" * 8, "é" * 3, "é" * 4]),
    hashable_leaves,
    st.tuples(st.integers(-5, 5), short_text),
    st.tuples(),
    st.tuples(long_text, byte_strings, st.booleans()),
    st.frozensets(st.integers(-3, 3), max_size=3),
)


def _containers(children):
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(hashable_leaves, children, max_size=4),
        st.sets(hashable_leaves, max_size=4),
        st.frozensets(hashable_leaves, max_size=4),
    )


values = st.recursive(hashable_leaves, _containers, max_leaves=12)

_list_leaves = st.one_of(st.none(), st.booleans(), ints, floats_no_nan, texts, byte_strings)
list_values = st.recursive(
    _list_leaves,
    lambda c: st.one_of(st.lists(c, max_size=3), st.lists(c, max_size=3).map(tuple)),
    max_leaves=6,
)
