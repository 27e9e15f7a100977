"""Data written by Python reads in C++ and the reverse, for every non-pickle value type.

The C++ side is tools/mmstore_xlang.cpp, built with the C++ test suite; scripts/test.sh exports its path in
MMSTORE_XLANG. C++ re-encodes what it decoded, so a value C++ could not represent exactly would show up as
a byte difference against Python's own encoding.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import mmstore

ROOT = Path(__file__).resolve().parents[2]


def _xlang() -> str:
    env = os.environ.get("MMSTORE_XLANG")
    if env:
        return env
    for cand in sorted(ROOT.glob("build*/mmstore_xlang")):
        return str(cand)
    found = shutil.which("mmstore_xlang")
    if found:
        return found
    pytest.skip("mmstore_xlang not built (scripts/test.sh builds it and sets MMSTORE_XLANG)")


SAMPLE = {
    "none": None,
    "true": True,
    "int": -123456789012345,
    42: "forty-two, a str longer than thirty-one bytes",
    "big": 2**96,
    "float": -2.5,
    b"raw-key": b"\x00\xff\x10",
    (1, "a"): [None, 1.5, ()],
    "dict": {"k": 1, 2: "v"},
    "set": {3, 1, 2},
    frozenset({"x", "y"}): "frozenset key",
    "date": dt.date(2024, 2, 29),
    "naive": dt.datetime(2001, 9, 9, 1, 46, 40, 123456),
    "utc": dt.datetime(2001, 9, 9, 1, 46, 40, 123456, tzinfo=dt.timezone.utc),
    "fixed": dt.datetime(2001, 9, 9, 1, 46, 40, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1, minutes=30))),
    "decimal": decimal.Decimal("3.14159"),
}
ARRAY = np.arange(6, dtype="<i4").reshape(2, 3)


def _run(*args: str) -> str:
    out = subprocess.run([_xlang(), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_dict_written_by_python_reads_identically_in_cpp(tmp_path):
    path = tmp_path / "py.mms"
    with mmstore.Dict(path) as d:
        d.update(SAMPLE)
        d["ndarray"] = ARRAY
        d["zoned"] = dt.datetime(2020, 3, 29, 3, 30, tzinfo=__import__("zoneinfo").ZoneInfo("UTC"))
    lines = _run("dump-dict", str(path)).splitlines()
    expected = list(SAMPLE.items()) + [("ndarray", ARRAY), ("zoned", None)]
    assert len(lines) == len(expected)
    for line, (k, v) in zip(lines, expected):
        khex, vhex, ktype, vtype = line.split(" ")
        assert khex == mmstore.encode(k, True).hex()
        if k == "zoned":
            assert vtype == "datetime"
            continue
        assert vhex == mmstore.encode(v).hex(), k
        assert vtype == {"NoneType": "None", "ndarray": "ndarray"}.get(type(v).__name__, type(v).__name__)


def test_list_written_by_python_reads_identically_in_cpp(tmp_path):
    path = tmp_path / "py.mml"
    values = list(SAMPLE.values()) + [ARRAY]
    with mmstore.List(path) as lst:
        lst.extend(values)
    lines = _run("dump-list", str(path)).splitlines()
    assert [ln.split(" ")[0] for ln in lines] == [mmstore.encode(v).hex() for v in values]


def test_dict_written_by_cpp_reads_in_python(tmp_path):
    path = tmp_path / "cpp.mms"
    _run("write-dict", str(path))
    with mmstore.Dict(path) as d:
        d.verify()
        got = d.copy()
    arr = got.pop("ndarray")
    assert arr.dtype == ARRAY.dtype and arr.shape == ARRAY.shape and (arr == ARRAY).all()
    # The C++ bytes-level API stores codec bytes values.
    assert got.pop(b"bytes-api-key") == b"bytes-api-value"
    assert got == SAMPLE
    assert list(got) == list(SAMPLE)  # insertion order survives the language boundary
    assert got["fixed"].utcoffset() == dt.timedelta(hours=1, minutes=30)


def test_list_written_by_cpp_reads_in_python(tmp_path):
    path = tmp_path / "cpp.mml"
    _run("write-list", str(path))
    with mmstore.List(path) as lst:
        got = lst.copy()
    assert got[-1] == b"bytes-api-value"
    arr = got[-2]
    assert (arr == ARRAY).all() and arr.dtype == ARRAY.dtype
    assert got[:-2] == list(SAMPLE.values())
