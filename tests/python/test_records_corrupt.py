"""Corrupt, truncated and foreign typed-records files raise specific mmstore.Error subclasses, never crash.

Sweeps: every truncation of a small RecordArray and Mapping file, and every single-byte flip (each flip
either raises an mmstore.Error or leaves readable data; verify() then catches every flip outside alignment
padding). A crash would kill the test process, so surviving the loop is part of the assertion.
"""

from __future__ import annotations

import struct

import pytest

import mmstore


@mmstore.struct
class Rec:
    a: int
    s: str
    o: object


def _files(tmp_path):
    arr = tmp_path / "a.mms"
    m = tmp_path / "m.mms"
    mmstore.RecordArray.build([Rec(i, "s%d" % i, (i, [i])) for i in range(12)] + [Rec()], arr)
    mmstore.Mapping.build((("k%d" % i, Rec(i, "v", {"i": i})) for i in range(12)), m, key=str,
                          schema=Rec.__schema__)
    return [(arr, mmstore.RecordArray), (m, mmstore.Mapping)]


def _read_everything(cls, data):
    h = cls.from_buffer(data)
    if cls is mmstore.RecordArray:
        for r in h:
            r._values()
    else:
        for i in range(12):
            v = h.get("k%d" % i)
            if v is not None:
                v._values()
        for _k, v in h.items():
            v._values()
    return h


def _covered(image: bytes) -> set:
    """Byte positions covered by a checksum: headers, schema, section table, sections (docs/format.md §7)."""
    _count, schema_off, schema_len, table_off, nsections, _flags = struct.unpack_from("<QQQQII", image, 64)
    spans = [(0, 192), (schema_off, schema_len), (table_off, 32 * nsections)]
    for k in range(nsections):
        _id, _width, off, length, _sum = struct.unpack_from("<IIQQQ", image, table_off + 32 * k)
        spans.append((off, length))
    return {i for off, n in spans for i in range(off, off + n)}


def test_truncations_raise_specific_errors(tmp_path):
    for path, cls in _files(tmp_path):
        good = path.read_bytes()
        _read_everything(cls, good).verify()
        for n in range(len(good)):
            with pytest.raises(mmstore.CorruptFileError):
                _read_everything(cls, good[:n])
        short = tmp_path / "short.mms"
        short.write_bytes(good[: len(good) // 2])
        with pytest.raises(mmstore.TruncatedFileError):
            cls(short)


def test_byte_flips_never_crash_and_verify_catches_them(tmp_path):
    for path, cls in _files(tmp_path):
        good = path.read_bytes()
        covered = _covered(good)
        for i in range(len(good)):
            bad = bytearray(good)
            bad[i] ^= 0x5A
            try:
                _read_everything(cls, bytes(bad)).verify()
                detected = False
            except mmstore.Error:
                detected = True
            # Only alignment padding between sections is outside every checksum.
            assert detected == (i in covered), i


def test_foreign_wrong_kind_and_newer_version(tmp_path):
    (tmp_path / "x.txt").write_bytes(b"just some text, not an mmstore file" * 10)
    with pytest.raises(mmstore.ForeignFileError):
        mmstore.RecordArray(tmp_path / "x.txt")
    arr_path, _ = _files(tmp_path)[0]
    with pytest.raises(mmstore.WrongKindError):
        mmstore.Mapping(arr_path)
    with mmstore.Dict(tmp_path / "d.mms") as d:
        d["a"] = 1
    with pytest.raises(mmstore.WrongKindError):
        mmstore.RecordArray(tmp_path / "d.mms")
    with pytest.raises(mmstore.StoreNotFoundError):
        mmstore.RecordArray(tmp_path / "missing.mms")
