"""Typed records cross languages: files built by Python read in C++ (tools/mmstore_xlang.cpp) and the reverse.

Both sides build the same sample (schema XRec with a nested record); C++ prints every field re-encoded, so a
value either side stored differently shows up as a difference. Builds are deterministic, so the two files are
also compared byte for byte.
"""

from __future__ import annotations

import subprocess

import mmstore
from test_cross_language import _xlang


@mmstore.struct(name="XInner")
class XInner:
    x: mmstore.int16


@mmstore.struct(name="XRec")
class XRec:
    i: mmstore.int32
    f: float
    flag: bool
    s: str
    o: object
    inner: XInner


SAMPLE = [
    XRec(1, 0.5, True, "one", (1, "x"), XInner(-7)),
    XRec(),
    XRec(-(2**31), -1e300, False, "a longer string with non-ASCII: é€", {"k": 2}, XInner(-7)),
]


def _run(*args: str) -> str:
    out = subprocess.run([_xlang(), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_cpp_reads_python_records_and_files_match(tmp_path):
    py, cpp = tmp_path / "py.mms", tmp_path / "cpp.mms"
    mmstore.RecordArray.build(SAMPLE, py)
    _run("write-records", str(cpp))
    assert _run("dump-records", str(py)) == _run("dump-records", str(cpp))
    assert py.read_bytes() == cpp.read_bytes()


def test_python_reads_cpp_records(tmp_path):
    path = tmp_path / "cpp.mms"
    _run("write-records", str(path))
    arr = mmstore.RecordArray(path, schema=XRec.__schema__)  # the stored schema encodes identically
    assert [r.copy() for r in arr] == SAMPLE
    assert arr[0].inner.x == -7 and arr[1].inner is None


def test_mappings_cross_languages(tmp_path):
    py, cpp = tmp_path / "py.mms", tmp_path / "cpp.mms"
    mmstore.Mapping.build((("k%d" % i, r) for i, r in enumerate(SAMPLE)), py, key=str, schema=XRec.__schema__)
    _run("write-mapping", str(cpp))
    assert _run("dump-mapping", str(py)) == _run("dump-mapping", str(cpp))
    assert py.read_bytes() == cpp.read_bytes()
    m = mmstore.Mapping(cpp)
    assert m["k2"].s == SAMPLE[2].s and m["k0"].o == (1, "x")
