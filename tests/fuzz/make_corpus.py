"""Writes the seed corpus of the libFuzzer harnesses (tests/fuzz/corpus/<harness>/) from the Python package.

Run:  python tests/fuzz/make_corpus.py   (with mmstore installed; scripts/fuzz.sh runs it when a corpus
folder is missing). The corpus is committed: small valid files of every kind, so the fuzzer starts from
real structure instead of discovering magic numbers and checksums by chance.
"""

import datetime
import decimal
import os
import shutil
import sys
import tempfile
from pathlib import Path

import mmstore
from mmstore import _core

OUT = Path(__file__).resolve().parent / "corpus"


def put(harness: str, name: str, data: bytes) -> None:
    d = OUT / harness
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main() -> int:
    tmp = Path(tempfile.mkdtemp())
    try:
        p = tmp / "d.mms"
        with mmstore.Dict(p) as d:
            d.update({"a": 1, 2: "two", (3, "x"): [1.5, None], "big": "y" * 100, "seven77": "abcdefg"})
            d.compact()  # the smallest file: seeds are read and written on every execution
        put("dict", "small", p.read_bytes())
        with mmstore.Dict(p) as d:
            for i in range(40):
                d[f"k{i}"] = i if i % 2 else b"v" * i
            del d["a"]
            d.compact()
        put("dict", "grown", p.read_bytes())
        p = tmp / "l.mml"
        with mmstore.List(p) as lst:
            lst.extend([1, "two", b"three", (4,), {"five": 5}, "s" * 64, "7chars!"])
            lst.compact()
        put("list", "small", p.read_bytes())

        @mmstore.struct
        class Item:
            a: int
            b: float
            s: str
            tags: frozenset

        items = [Item(a=i, b=i / 2, s=f"s{i}", tags=frozenset({i})) for i in range(20)]
        p = tmp / "r.mma"
        mmstore.RecordArray.build(items, p, schema=Item.__schema__)
        put("records", "items", p.read_bytes())
        p = tmp / "m.mmm"
        mmstore.Mapping.build(((it.s, it) for it in items), p, key=str, schema=Item.__schema__)
        put("mapping", "by_name", p.read_bytes())
        p = tmp / "ids.mmm"
        mmstore.Mapping.build(((f"k{i}", i) for i in range(30)), p, key=str, value=mmstore.int64)
        put("mapping", "ids", p.read_bytes())
        p = tmp / "multi.mmm"
        mmstore.Mapping.build(((i % 5, i) for i in range(30)), p, key=int, value=mmstore.int64, multi=True)
        put("mapping", "multi", p.read_bytes())

        pool = mmstore.Pool(max_memory=1 << 20, spill_dir=str(tmp))
        ref = pool.put(b"spilled bytes" * 10)
        pool.save(ref, tmp / "b.spill")
        put("spill", "bytes", (tmp / "b.spill").read_bytes())
        pool.close()

        values = [None, True, 0, -1, 2**70, 1.5, "s", "x" * 40, b"b", (1, "t"), [1, [2]], {"k": {1: 2}},
                  {1, 2}, frozenset({"a"}), datetime.date(2024, 1, 2),
                  datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=datetime.timezone.utc), decimal.Decimal("1.25")]
        for i, v in enumerate(values):
            put("codec", f"v{i}", _core.encode(v))
        blob = Item.__schema__.blob
        row = Item.__schema__.pack(items[3])
        put("schema", "item", len(blob).to_bytes(2, "little") + blob + row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
