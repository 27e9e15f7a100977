"""Arrow, pandas and numpy interop of RecordArray and Mapping (python/mmstore/_arrow.py)."""

import datetime as dt
import subprocess
import sys

import numpy as np
import pytest

import mmstore

pa = pytest.importorskip("pyarrow")
pc = pytest.importorskip("pyarrow.compute")


@mmstore.struct
class Row:
    a: int
    b: float
    s: str


@mmstore.struct
class Fixed:
    x: mmstore.int64
    y: mmstore.float64
    z: mmstore.int64


@mmstore.struct
class Mixed:
    i8: mmstore.int8
    u32: mmstore.uint32
    f4: mmstore.float32
    ok: bool
    raw: bytes
    day: dt.date
    tags: list


def _rows(n):
    return [Row(a=i, b=i / 4, s=f"k{i:07d}") for i in range(n)]


def _mapping_range(arr):
    """[start, end) addresses of the RecordArray's exported buffer."""
    whole = np.frombuffer(arr, dtype=np.uint8)
    start = whole.__array_interface__["data"][0]
    return start, start + whole.nbytes


def test_to_arrow_fixed_columns_are_zero_copy_views_of_the_mapping(tmp_path):
    with mmstore.RecordArray.build(_rows(1000), tmp_path / "r.mma") as arr:
        lo, hi = _mapping_range(arr)
        t = arr.to_arrow()
        for name in ("a", "b"):
            chunk = t.column(name).chunk(0)
            data = chunk.buffers()[1]
            assert lo <= data.address and data.address + data.size <= hi, name
        assert t.column("a").to_pylist() == list(range(1000))
        assert t.column("b").to_pylist() == [i / 4 for i in range(1000)]
        assert t.column("s").to_pylist() == [f"k{i:07d}" for i in range(1000)]
        assert t.column("a").type == pa.int64() and t.column("s").type == pa.string()
        assert pc.sum(t.column("a")).as_py() == sum(range(1000))
        with pytest.raises(BufferError):
            arr.close()  # the table's buffers are views: the mapping cannot go away under them
        del t, chunk, data


def _inside(buf, lo, hi):
    return buf is not None and lo <= buf.address and buf.address + buf.size <= hi


def test_to_arrow_str_and_bytes_columns_are_zero_copy_views_of_the_mapping(tmp_path):
    s = mmstore.Schema.from_fields({"s": str, "raw": bytes})
    rows = [{"s": None if i % 9 == 4 else "é" * (i % 3) + f"v{i}", "raw": None if i % 11 == 2 else bytes([i % 256]) * (i % 50)}
            for i in range(3000)]
    with mmstore.RecordArray.build(rows, tmp_path / "v.mma", schema=s, progress=False) as arr:
        lo, hi = _mapping_range(arr)
        t = arr.to_arrow()
        assert t.column("s").type == pa.string() and t.column("raw").type == pa.binary()
        for name in ("s", "raw"):
            validity, offsets, data = t.column(name).chunk(0).buffers()
            assert _inside(validity, lo, hi) and _inside(offsets, lo, hi) and _inside(data, lo, hi), name
        assert t.column("s").to_pylist() == [r["s"] for r in rows]
        assert t.column("raw").to_pylist() == [r["raw"] for r in rows]
        assert t.column("s").null_count == sum(r["s"] is None for r in rows)
        t.validate(full=True)
        with pytest.raises(BufferError):
            arr.close()
        del t, validity, offsets, data


def _strs(series):
    """A pandas string column as a list, missing values as None (pandas 3 shows them as NaN)."""
    return [x if isinstance(x, str) else None for x in series]


def test_version_2_files_still_read_and_convert(tmp_path):
    """tests/python/data/*_v2.* were written by mmstore 0.2 (records format version 2: str and bytes as codec
    values in the heap); this version reads them, gathering str/bytes for Arrow as before."""
    from test_records import V2_DATA, v2_rows

    arr = mmstore.RecordArray(V2_DATA / "records_v2.mma")
    assert arr.var_column_info(1) is None  # heap layout
    t = arr.to_arrow(columns=["a", "s", "b"])
    want = v2_rows()
    for name in ("a", "s", "b"):
        assert t.column(name).to_pylist() == [r[name] for r in want], name
    assert t.column("s").type == pa.string()
    df = arr.to_pandas(start=8, stop=30)
    assert _strs(df["s"]) == [r["s"] for r in want[8:30]]
    del t, df
    arr.close()


def test_to_pandas_str_slices_of_a_version_3_file(tmp_path):
    rows = [Row(a=i, b=0.0, s=None if i % 4 == 1 else "ü%d" % i) for i in range(50)]
    with mmstore.RecordArray.build(rows, tmp_path / "p.mma") as arr:
        for start, stop in ((0, 50), (8, 20), (3, 17), (49, 50), (10, 10)):
            df = arr.to_pandas(start=start, stop=stop)
            assert _strs(df["s"]) == [r.s for r in rows[start:stop]], (start, stop)
            del df


def test_to_arrow_missing_values_are_nulls_through_the_presence_bitmap(tmp_path):
    rows = [Row(a=None if i % 3 == 0 else i, b=i * 1.0, s=None if i % 5 == 0 else str(i)) for i in range(100)]
    with mmstore.RecordArray.build(rows, tmp_path / "r.mma") as arr:
        t = arr.to_arrow()
        assert t.column("a").to_pylist() == [r.a for r in rows]
        assert t.column("s").to_pylist() == [r.s for r in rows]
        assert t.column("a").null_count == 34
        del t


def test_to_arrow_long_strings_unicode_and_every_fixed_type(tmp_path):
    long = "é" * 40 + "x"  # more than 32 bytes: the long str encoding
    rows = [Mixed(i8=-i, u32=2**32 - 1 - i, f4=i / 2, ok=i % 2 == 0, raw=bytes([i]) * (i % 40),
                  day=dt.date(2024, 1, 1 + i % 28), tags=[i, i + 1]) for i in range(50)]
    with mmstore.RecordArray.build(rows, tmp_path / "m.mma") as arr:
        t = arr.to_arrow()
        assert t.column("i8").type == pa.int8() and t.column("u32").type == pa.uint32()
        assert t.column("i8").to_pylist() == [r.i8 for r in rows]
        assert t.column("u32").to_pylist() == [r.u32 for r in rows]
        assert t.column("ok").to_pylist() == [r.ok for r in rows]
        assert t.column("f4").to_pylist() == [r.f4 for r in rows]
        assert t.column("raw").to_pylist() == [r.raw for r in rows]
        assert t.column("day").to_pylist() == [r.day for r in rows]
        assert t.column("tags").to_pylist() == [r.tags for r in rows]
        del t
    with mmstore.RecordArray.build([Row(a=1, b=1.0, s=long), Row(a=2, b=2.0, s="short")], tmp_path / "l.mma") as arr:
        t = arr.to_arrow()
        assert t.column("s").to_pylist() == [long, "short"]
        del t


def test_to_arrow_strings_shared_by_dedup_and_spanning_several_gather_chunks(tmp_path):
    words = ["", "a", "bb", "x" * 31, "y" * 32, "ü" * 20]
    rows = [Row(a=i, b=0.0, s=words[i % len(words)] + ("" if i % 7 else str(i))) for i in range(40_000)]
    with mmstore.RecordArray.build(rows, tmp_path / "d.mma") as arr:
        t = arr.to_arrow()
        assert t.column("s").to_pylist() == [r.s for r in rows]
        del t
    same = [Row(a=i, b=0.0, s="same") for i in range(100)]  # every record points at one heap value
    with mmstore.RecordArray.build(same, tmp_path / "s.mma") as arr:
        t = arr.to_arrow()
        assert t.column("s").to_pylist() == ["same"] * 100
        del t


def test_to_arrow_columns_selects_fields_without_converting_the_others(tmp_path):
    with mmstore.RecordArray.build(_rows(10), tmp_path / "r.mma") as arr:
        t = arr.to_arrow(columns=["a"])
        assert t.column_names == ["a"] and t.column("a").to_pylist() == list(range(10))
        with pytest.raises(KeyError, match="no field 'nope'"):
            arr.to_arrow(columns=["nope"])
        del t


def test_to_numpy_is_a_structured_view_when_every_field_is_fixed_width(tmp_path):
    rows = [Fixed(x=i, y=i * 0.5, z=-i) for i in range(500)]
    with mmstore.RecordArray.build(rows, tmp_path / "f.mma") as arr:
        lo, hi = _mapping_range(arr)
        s = arr.to_numpy()
        assert s.dtype.names == ("x", "y", "z")
        assert lo <= s.__array_interface__["data"][0] < hi
        assert not s.flags.writeable
        assert s["x"].tolist() == list(range(500)) and s["z"][-1] == -499 and s[10]["y"] == 5.0
        del s


def test_to_numpy_copies_fields_of_mixed_widths_and_refuses_variable_fields(tmp_path):
    S = mmstore.Schema.from_fields({"a": mmstore.int8, "b": mmstore.float64})
    with mmstore.RecordArray.build([{"a": 1, "b": 2.5}, {"a": -1, "b": 0.0}], tmp_path / "m.mma", schema=S) as arr:
        s = arr.to_numpy()
        assert s["a"].tolist() == [1, -1] and s["b"].tolist() == [2.5, 0.0]
    with mmstore.RecordArray.build(_rows(3), tmp_path / "r.mma") as arr:
        with pytest.raises(TypeError, match="'s'.*not fixed-width"):
            arr.to_numpy()


def test_to_pandas_round_trips_values_and_nulls(tmp_path):
    pd = pytest.importorskip("pandas")
    rows = [Row(a=None if i == 2 else i, b=i / 2, s=None if i == 3 else f"s{i}") for i in range(10)]
    with mmstore.RecordArray.build(rows, tmp_path / "r.mma") as arr:
        df = arr.to_pandas()
        assert list(df.columns) == ["a", "b", "s"]
        assert df["b"].tolist() == [i / 2 for i in range(10)]
        assert df["a"].isna().tolist() == [i == 2 for i in range(10)]
        assert df["a"].dropna().astype(int).tolist() == [i for i in range(10) if i != 2]
        assert df["s"].isna().tolist() == [i == 3 for i in range(10)]
        assert df["s"].dropna().tolist() == [f"s{i}" for i in range(10) if i != 3]
        assert isinstance(df, pd.DataFrame)
        del df


def test_to_arrow_of_values_arrow_cannot_type_names_the_field(tmp_path):
    S = mmstore.Schema.from_fields({"mixed": list})
    with mmstore.RecordArray.build([{"mixed": [1, "x"]}], tmp_path / "x.mma", schema=S) as arr:
        with pytest.raises(TypeError, match="field 'mixed'"):
            arr.to_arrow()


def test_from_arrow_maps_column_types_and_streams_batches(tmp_path):
    batches = [pa.record_batch({"a": pa.array([i, i + 1], pa.int32()), "name": [f"n{i}", None],
                                "when": pa.array([dt.date(2020, 1, 1)] * 2, pa.date32())}) for i in range(0, 20, 2)]
    reader = pa.RecordBatchReader.from_batches(batches[0].schema, iter(batches))
    with mmstore.RecordArray.from_arrow(reader, tmp_path / "a.mma", progress=False) as arr:
        assert len(arr) == 20
        assert arr.schema.fields["a"] is mmstore.int32
        assert arr[4].a == 4 and arr[4].name == "n4" and arr[5].name is None
        assert arr[0].when == dt.date(2020, 1, 1)
        assert arr.to_arrow().column("a").to_pylist() == list(range(20))


def test_from_arrow_round_trips_a_table_through_to_arrow(tmp_path):
    t = pa.table({"a": pa.array(range(1000), pa.int64()), "b": pa.array([i / 3 for i in range(1000)]),
                  "s": [f"k{i}" for i in range(1000)]})
    with mmstore.RecordArray.from_arrow(t, tmp_path / "t.mma") as arr:
        back = arr.to_arrow()
        assert back.equals(t)
        del back


def test_from_arrow_rejects_a_column_type_it_cannot_map(tmp_path):
    t = pa.table({"ok": [1, 2], "span": pa.array([1, 2], pa.duration("s"))})
    with pytest.raises(TypeError, match="column 'span' has Arrow type duration"):
        mmstore.RecordArray.from_arrow(t, tmp_path / "x.mma")
    assert not (tmp_path / "x.mma").exists()
    with pytest.raises(TypeError, match="expected a pyarrow Table"):
        mmstore.RecordArray.from_arrow(42, tmp_path / "y.mma")
    with pytest.raises(TypeError, match="yields int, not pyarrow.RecordBatch"):
        mmstore.RecordArray.from_arrow([1, 2], tmp_path / "y.mma")


def test_from_pandas_builds_in_batches(tmp_path):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": np.arange(70_000, dtype=np.int64), "s": [f"v{i}" for i in range(70_000)]})
    with mmstore.RecordArray.from_pandas(df, tmp_path / "p.mma", progress=False) as arr:
        assert len(arr) == 70_000 and arr[69_999].s == "v69999" and arr.column("a").sum() == df["a"].sum()
    with pytest.raises(TypeError, match="pandas.DataFrame"):
        mmstore.RecordArray.from_pandas({"a": [1]}, tmp_path / "q.mma")


def test_mapping_items_to_arrow_and_build_from_two_arrow_columns(tmp_path):
    keys = pa.array([f"k{i}" for i in range(100)])
    values = pa.array(range(100), pa.int64())
    with mmstore.Mapping.from_arrow(keys, values, tmp_path / "m.mmm", progress=False) as m:
        assert m["k42"] == 42 and len(m) == 100
        t = m.to_arrow()
        assert t.column_names == ["key", "value"]
        assert dict(zip(t.column("key").to_pylist(), t.column("value").to_pylist())) == {f"k{i}": i for i in range(100)}
    structs = pa.StructArray.from_arrays([pa.array(range(10)), pa.array([f"s{i}" for i in range(10)])], names=["n", "s"])
    with mmstore.Mapping.from_arrow(pa.array(range(10)), structs, tmp_path / "r.mmm", progress=False) as m:
        assert m[7].n == 7 and m[7].s == "s7"
        t = m.to_arrow()
        assert t.column_names == ["key", "n", "s"] and sorted(t.column("n").to_pylist()) == list(range(10))


def test_mapping_from_arrow_rejects_bad_key_columns(tmp_path):
    with pytest.raises(TypeError, match="keys must be strings or integers"):
        mmstore.Mapping.from_arrow(pa.array([1.5]), pa.array([1]), tmp_path / "m.mmm")
    with pytest.raises(ValueError, match="null"):
        mmstore.Mapping.from_arrow(pa.array(["a", None]), pa.array([1, 2]), tmp_path / "m.mmm")
    with pytest.raises(ValueError, match="keys has 1 rows but values has 2"):
        mmstore.Mapping.from_arrow(pa.array(["a"]), pa.array([1, 2]), tmp_path / "m.mmm")


_NO_PYARROW = r"""
import sys
sys.modules["pyarrow"] = None   # as if it were not installed
import mmstore
S = mmstore.Schema.from_fields({"a": int})
arr = mmstore.RecordArray.build([{"a": 1}], sys.argv[1], schema=S, progress=False)
try:
    arr.to_arrow()
except ImportError as e:
    print(e)
"""


def test_missing_pyarrow_names_the_extra_to_install(tmp_path):
    out = subprocess.run([sys.executable, "-c", _NO_PYARROW, str(tmp_path / "a.mma")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "pip install 'mmstore[arrow]'" in out.stdout
