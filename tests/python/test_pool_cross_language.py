"""Pool files cross languages: C++ mmstore::Pool::load reads what Python's Pool.save wrote for arrays and
bytes, and mmstore.load reads what C++ saved (tools/mmstore_xlang.cpp is the C++ side)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

import mmstore
from test_cross_language import _xlang


def _run(*args: str) -> str:
    out = subprocess.run([_xlang(), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize(
    "value, expected",
    [
        (np.arange(6, dtype="<f8").reshape(3, 2), "<f8 3,2"),
        (np.array([1, -2], dtype="<i2"), "<i2 2"),
        (b"python bytes", "bytes -"),
    ],
)
def test_cpp_loads_what_python_saved(tmp_path, value, expected):
    with mmstore.Pool(spill_dir=tmp_path) as pool:
        ref = pool.put(value)
        pool.move_to_disk(ref)
        pool.save(ref, tmp_path / "x.mms")
    dtype, shape, data = _run("dump-pool", str(tmp_path / "x.mms")).split(" ")
    assert f"{dtype} {shape}" == expected
    raw = value.tobytes() if isinstance(value, np.ndarray) else value
    assert bytes.fromhex(data) == raw


def test_cpp_refuses_a_pickled_python_object_clearly(tmp_path):
    with mmstore.Pool(spill_dir=tmp_path) as pool:
        pool.save(pool.put({"a": 1}), tmp_path / "x.mms")
    out = subprocess.run([_xlang(), "dump-pool", str(tmp_path / "x.mms")], capture_output=True, text=True)
    assert out.returncode == 1 and "only Python" in out.stderr


def test_python_loads_what_cpp_saved(tmp_path):
    _run("write-pool", str(tmp_path / "c.mms"))
    arr = mmstore.load(tmp_path / "c.mms")
    assert arr.dtype == np.dtype("<i4") and arr.shape == (2, 3)
    assert arr.tolist() == [[1, -2, 3], [4, 5, -6]]
    assert mmstore.is_mapped(arr)
    assert mmstore.load(str(tmp_path / "c.mms") + ".bytes") == b"pool bytes"
