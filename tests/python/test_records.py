"""Typed records: schemas, pack/unpack_from proxies, RecordArray, Mapping, dedup, progress, merge."""

from __future__ import annotations

import collections.abc
import datetime as dt
import decimal
import pathlib
import pickle
import struct
import types
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mmstore
from mmstore import _core
from conftest import canon, keys, values


@mmstore.struct
class Inner:
    x: mmstore.int32
    label: str


@mmstore.struct(type_code=7301)
class Tagged:
    n: int
    name: str


@mmstore.struct
class Everything:
    i8: mmstore.int8
    i16: mmstore.int16
    i32: mmstore.int32
    i64: int
    u8: mmstore.uint8
    u16: mmstore.uint16
    u32: mmstore.uint32
    u64: mmstore.uint64
    f32: mmstore.float32
    f64: float
    flag: bool
    raw: bytes
    text: str
    day: dt.date
    when: dt.datetime
    money: decimal.Decimal
    tup: tuple
    lst: list
    dct: dict
    tags: frozenset
    arr: np.ndarray
    any: object
    inner: Inner


@mmstore.struct
class ABS:
    a: int
    b: float
    s: str


def full_everything():
    return Everything(
        i8=-128, i16=-32768, i32=2**31 - 1, i64=-(2**63), u8=255, u16=65535, u32=2**32 - 1, u64=2**64 - 1,
        f32=1.5, f64=-2.25, flag=True, raw=b"\x00\xff", text="héllo wörld, longer than thirty-one bytes",
        day=dt.date(2024, 2, 29), when=dt.datetime(2001, 9, 9, 1, 46, 40, 5, tzinfo=dt.timezone.utc),
        money=decimal.Decimal("3.14159"), tup=(1, "a", None), lst=[1, [2, 3]], dct={"k": 1, 2: "v"},
        tags=frozenset({"x", "y"}), arr=np.arange(6, dtype="<i4").reshape(2, 3), any={"nested": (1, 2.5)},
        inner=Inner(x=-5, label="in"),
    )


def assert_same_record(proxy, obj, schema):
    for name in schema.names:
        got, want = getattr(proxy, name), getattr(obj, name)
        if isinstance(want, np.ndarray):
            np.testing.assert_array_equal(got, want)
            assert got.dtype == want.dtype
        elif isinstance(got, mmstore.RecordProxy):
            assert got == want
        else:
            assert canon(got) == canon(want), name


# -- schema and packing ------------------------------------------------------------------------------------


def test_struct_declares_schema_with_every_field_type():
    s = Everything.__schema__
    assert s.names[:4] == ("i8", "i16", "i32", "i64")
    assert s.fields["i32"] is mmstore.int32
    assert s.fields["inner"] == Inner.__schema__
    assert Everything().text is None  # every field defaults to None


def test_pack_unpack_round_trips_every_field_type():
    obj = full_everything()
    data = Everything.__schema__.pack(obj)
    p = Everything.__schema__.unpack_from(data)
    assert_same_record(p, obj, Everything.__schema__)
    assert isinstance(p.inner, mmstore.RecordProxy) and p.inner.x == -5
    assert p.copy().inner == Inner(x=-5, label="in")


def test_missing_and_none_fields_read_as_none():
    s = ABS.__schema__
    for obj in (ABS(a=None, b=None, s=None), {"a": 1}, types.SimpleNamespace(a=1)):
        p = s.unpack_from(s.pack(obj))
        assert p.s is None and p.b is None
    assert s.unpack_from(s.pack({"a": 1})).a == 1
    with pytest.raises(TypeError, match="cannot pack object"):  # no field at all: not silently empty
        s.pack(object())


def test_dynamic_schema_from_fields_and_dict_input():
    s = mmstore.Schema.from_fields({"x": mmstore.int16, "name": str, "tags": frozenset})
    p = s.unpack_from(s.pack({"x": 3, "name": "n", "tags": {1, 2}}))
    assert (p.x, p.name, p.tags) == (3, "n", frozenset({1, 2}))
    c = p.copy()
    assert (c.x, c.name) == (3, "n")


def test_pack_into_writes_at_offset_and_checks_room():
    s = ABS.__schema__
    buf = bytearray(100)
    n = s.pack_into(ABS(1, 2.0, "x"), buf, 10)
    assert n == len(s.pack(ABS(1, 2.0, "x")))
    assert s.unpack_from(buf, 10).s == "x"
    with pytest.raises(ValueError):
        s.pack_into(ABS(1, 2.0, "x"), bytearray(5), 0)


def test_wrong_types_and_ranges_are_refused():
    s = Everything.__schema__
    with pytest.raises(TypeError):
        s.pack({"text": 5})
    with pytest.raises(OverflowError):
        s.pack({"i8": 128})
    with pytest.raises(OverflowError):
        s.pack({"u8": -1})
    with pytest.raises(OverflowError):
        s.pack({"i64": 2**63})
    with pytest.raises(TypeError):
        s.pack({"f64": "x"})
    # Convertible containers are accepted and stored as the field's type.
    p = s.unpack_from(s.pack({"tup": [1, 2], "lst": (3,), "tags": {4}, "dct": _ItemsOnly()}))
    assert p.tup == (1, 2) and p.lst == [3] and p.tags == frozenset({4}) and p.dct == {"a": 1}


class _ItemsOnly(collections.abc.Mapping):
    """A Mapping that is not a dict: stored in a dict field through coercion."""

    def __init__(self):
        self._d = {"a": 1}

    def __getitem__(self, k):
        return self._d[k]

    def __iter__(self):
        return iter(self._d)

    def __len__(self):
        return 1



def test_proxied_containers_behave_like_the_real_thing():
    s = Everything.__schema__
    p = s.unpack_from(s.pack(full_everything()))
    assert p.tup[1:] == ("a", None) and hash(p.tup) == hash((1, "a", None))
    assert "x" in p.tags and p.tags | {"z"} == {"x", "y", "z"} and p.tags & {"y"} == {"y"}
    assert p.lst[-1] == [2, 3] and list(iter(p.lst)) == [1, [2, 3]]
    assert p.dct[2] == "v" and sorted(p.dct, key=str) == [2, "k"]


def test_proxies_are_read_only_and_copy_clone_pickle():
    p = ABS.__schema__.unpack_from(ABS.__schema__.pack(ABS(1, 2.0, "s")))
    with pytest.raises(AttributeError):
        p.a = 2
    assert mmstore.clone(p) == ABS(1, 2.0, "s") and type(mmstore.clone(p)) is ABS
    assert p == ABS(1, 2.0, "s") and p != ABS(2, 2.0, "s")
    q = pickle.loads(pickle.dumps(p))
    assert q == p and q.s == "s"
    assert "a=1" in repr(p)
    assert pickle.loads(pickle.dumps(ABS.__schema__)) == ABS.__schema__


def test_registered_struct_can_live_in_object_fields_and_dicts(tmp_path):
    s = Everything.__schema__
    p = s.unpack_from(s.pack({"any": Tagged(n=3, name="t")}))
    assert p.any.n == 3 and p.any.name == "t"
    with mmstore.Dict(tmp_path / "d.mms") as d:
        d["k"] = Tagged(n=9, name="in a dict")
        assert d["k"].name == "in a dict"


# -- RecordArray -------------------------------------------------------------------------------------------


def abs_items(n):
    return (ABS(i, i * 0.5, "k%07d" % i) for i in range(n))


def test_array_build_streams_and_indexes(tmp_path):
    arr = mmstore.RecordArray.build(abs_items(1000), tmp_path / "a.mms")
    assert len(arr) == 1000
    assert arr[5].a == 5 and arr[-1].s == "k0000999" and arr[-1000].a == 0
    with pytest.raises(IndexError):
        arr[1000]
    with pytest.raises(IndexError):
        arr[-1001]
    assert [r.a for r in arr[10:20:3]] == [10, 13, 16, 19]
    assert [r.a for r in arr[::-400]] == [999, 599, 199]
    assert sum(r.a for r in arr) == sum(range(1000))
    rows = list(arr)  # proxies kept by the caller stay distinct
    assert rows[0].a == 0 and rows[999].a == 999
    assert arr.schema == ABS.__schema__


def test_column_is_a_zero_copy_numpy_view(tmp_path):
    arr = mmstore.RecordArray.build(abs_items(1000), tmp_path / "a.mms")
    a = arr.column("a")
    assert a.dtype == np.dtype("<i8") and not a.flags.writeable
    np.testing.assert_array_equal(a, np.arange(1000))
    np.testing.assert_array_equal(arr.column("b"), np.arange(1000) * 0.5)
    assert arr.present("a").all()
    with pytest.raises(ValueError):
        arr.column("s")
    with pytest.raises(BufferError):
        arr.close()  # a view is alive
    del a
    arr.close()
    with pytest.raises(mmstore.ClosedError):
        len(arr)
    with pytest.raises(mmstore.ClosedError):
        arr[0]


def test_columns_with_missing_values_have_a_mask(tmp_path):
    items = [{"a": i} if i % 3 else {"b": 1.0} for i in range(100)]
    arr = mmstore.RecordArray.build(items, tmp_path / "a.mms", schema=ABS.__schema__)
    mask = arr.present("a")
    assert mask.tolist() == [bool(i % 3) for i in range(100)]
    assert arr[3].a is None and arr[4].a == 4


def test_proxies_outlive_close(tmp_path):
    arr = mmstore.RecordArray.build(abs_items(10), tmp_path / "a.mms")
    p = arr[3]
    arr.close()
    del arr
    assert p.s == "k0000003"


def test_open_from_buffer_and_uncompressed_zip_member(tmp_path):
    mmstore.RecordArray.build(abs_items(100), tmp_path / "a.mms")
    data = (tmp_path / "a.mms").read_bytes()
    arr = mmstore.RecordArray.from_buffer(data)
    assert arr[42].s == "k0000042"
    zpath = tmp_path / "z.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("first.txt", "padding so the member is not at offset 0")
        z.write(tmp_path / "a.mms", "data/a.mms", compress_type=zipfile.ZIP_STORED)
        z.write(tmp_path / "a.mms", "data/b.mms", compress_type=zipfile.ZIP_DEFLATED)
    zarr = mmstore.RecordArray.open_zip(zpath, "data/a.mms")
    assert len(zarr) == 100 and zarr[99].a == 99
    np.testing.assert_array_equal(zarr.column("a"), np.arange(100))
    with pytest.raises(ValueError, match="compressed"):
        mmstore.RecordArray.open_zip(zpath, "data/b.mms")


def test_schema_is_stored_as_codec_value_not_pickle(tmp_path):
    arr = mmstore.RecordArray.build(abs_items(3), tmp_path / "a.mms")
    blob = arr.schema_blob()
    assert b"pickle" not in blob and mmstore.decode(blob, False)[0] == "mmstore.schema"
    # Opening without the struct declared works from the stored schema alone.
    other = mmstore.RecordArray(tmp_path / "a.mms")
    assert other.schema.names == ("a", "b", "s")


def test_schema_mismatch_is_reported(tmp_path):
    mmstore.RecordArray.build(abs_items(3), tmp_path / "a.mms")
    with pytest.raises(mmstore.SchemaMismatchError):
        mmstore.RecordArray(tmp_path / "a.mms", schema=Inner.__schema__)
    mmstore.Mapping.build({"a": 1}, tmp_path / "m.mms")
    with pytest.raises(mmstore.WrongKindError):
        mmstore.RecordArray(tmp_path / "m.mms")


def test_untrusted_pickle_values_can_be_refused(tmp_path):
    class Odd:
        pass

    s = mmstore.Schema.from_fields({"o": object})
    mmstore.RecordArray.build([{"o": dt.timedelta(days=1)}], tmp_path / "a.mms", schema=s)
    assert mmstore.RecordArray(tmp_path / "a.mms")[0].o == dt.timedelta(days=1)
    with pytest.raises(mmstore.EncodeError):
        _ = mmstore.RecordArray(tmp_path / "a.mms", allow_pickle=False)[0].o


def test_dedup_writes_repeated_values_once(tmp_path):
    # dedup covers the heap's fields (tuple here); str and bytes are in Arrow's layout, one copy per record
    s = mmstore.Schema.from_fields({"a": int, "t": tuple, "s": str})
    items = [{"a": i, "t": ("a repeated value that is longer than a few bytes", i % 5), "s": "x" * 40}
             for i in range(5000)]
    a = mmstore.RecordArray.build(items, tmp_path / "a.mms", schema=s, dedup=True)
    b = mmstore.RecordArray.build(items, tmp_path / "b.mms", schema=s, dedup=False)
    assert (tmp_path / "a.mms").stat().st_size + 5000 * 40 < (tmp_path / "b.mms").stat().st_size
    assert [(r.t, r.s) for r in a] == [(r.t, r.s) for r in b] == [(d["t"], d["s"]) for d in items]
    # the str column is 40 bytes per record in both (no dedup, no tag), plus 4-byte offsets
    assert (tmp_path / "a.mms").stat().st_size > 5000 * 44


V2_DATA = pathlib.Path(__file__).parent / "data"


def v2_rows():
    """The records of data/records_v2.mma, written by mmstore 0.2 with this formula."""
    return [{"a": i, "s": None if i % 7 == 3 else ("é%d" % i if i % 5 == 0 else "k%d" % i) * (1 if i % 4 else 9),
             "b": None if i % 6 == 1 else bytes([i]) * (i % 3 + (40 if i % 10 == 0 else 0)), "t": (i, "x")}
            for i in range(40)]


def test_records_format_version_3_is_written_and_version_2_files_still_read(tmp_path):
    arr = mmstore.RecordArray.build([ABS(1, 1.0, "x")], tmp_path / "a.mms")
    assert struct.unpack_from("<I", (tmp_path / "a.mms").read_bytes(), 8)[0] == _core.RECORDS_FORMAT_VERSION == 3
    arr.close()
    old = mmstore.RecordArray(V2_DATA / "records_v2.mma")
    assert struct.unpack_from("<I", (V2_DATA / "records_v2.mma").read_bytes(), 8)[0] == 2
    assert [r._asdict() for r in old] == v2_rows()
    old.verify()
    m = mmstore.Mapping(V2_DATA / "mapping_v2.mmm")
    assert {k: (v.n, v.s) for k, v in m.items()} == {"k%d" % i: (i, None if i == 2 else "v%d" % i) for i in range(10)}
    m.close()
    old.close()


def _rewrite(image: bytearray, section_id: int, edit) -> bytes:
    """Applies edit(image, offset, length) to a section and recomputes every checksum over it."""
    table_off, nsections = struct.unpack_from("<QI", image, 64 + 24)
    for k in range(nsections):
        sid, _w, off, length = struct.unpack_from("<IIQQ", image, table_off + 32 * k)
        if sid == section_id:
            edit(image, off, length)
            struct.pack_into("<Q", image, table_off + 32 * k + 24, _core._hash64(bytes(image[off:off + length])))
    schema_off, schema_len = struct.unpack_from("<QQ", image, 64 + 8)
    meta = bytes(image[schema_off:schema_off + schema_len]) + bytes(image[table_off:table_off + 32 * nsections])
    struct.pack_into("<Q", image, 64 + 56, _core._hash64(meta))
    struct.pack_into("<Q", image, 64 + 120, _core._hash64(bytes(image[64:64 + 120])))
    return bytes(image)


def test_offsets_out_of_order_or_past_the_data_are_corrupt_even_with_valid_checksums(tmp_path):
    mmstore.RecordArray.build([ABS(i, 0.0, "v%d" % i) for i in range(20)], tmp_path / "a.mms", progress=False)
    good = bytearray((tmp_path / "a.mms").read_bytes())
    s_col = 0x100 + 2
    assert mmstore.RecordArray.from_buffer(_rewrite(bytearray(good), s_col, lambda im, o, n: None))[19].s == "v19"

    def swap(im, off, n):  # offsets 5 and 6 out of order
        a, b = struct.unpack_from("<II", im, off + 20)
        struct.pack_into("<II", im, off + 20, b, a)

    def past_end(im, off, n):
        struct.pack_into("<I", im, off + n - 4, 10_000)

    def not_zero_first(im, off, n):
        struct.pack_into("<I", im, off, 1)

    for edit in (swap, past_end, not_zero_first):
        with pytest.raises(mmstore.CorruptFileError, match="offsets of field 's'"):
            mmstore.RecordArray.from_buffer(_rewrite(bytearray(good), s_col, edit))


def test_newer_records_format_version_is_unsupported(tmp_path):
    mmstore.RecordArray.build([ABS(1, 1.0, "x")], tmp_path / "a.mms", progress=False)
    image = bytearray((tmp_path / "a.mms").read_bytes())
    struct.pack_into("<I", image, 8, _core.RECORDS_FORMAT_VERSION + 1)
    struct.pack_into("<Q", image, 56, _core._hash64(bytes(image[:56])))
    (tmp_path / "n.mms").write_bytes(image)
    with pytest.raises(mmstore.UnsupportedVersionError, match="records format version 4"):
        mmstore.RecordArray(tmp_path / "n.mms")


def test_failed_build_leaves_nothing(tmp_path):
    def gen():
        yield ABS(1, 1.0, "x")
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        mmstore.RecordArray.build(gen(), tmp_path / "a.mms")
    with pytest.raises(TypeError):
        mmstore.RecordArray.build([ABS(1, 1.0, 3)], tmp_path / "a.mms")
    assert list(tmp_path.iterdir()) == []


def test_progress_callback_and_off(tmp_path, capsys):
    seen = []
    mmstore.RecordArray.build(abs_items(40000), tmp_path / "a.mms", progress=seen.append)
    assert seen and seen[-1] == 40000
    mmstore.RecordArray.build(abs_items(10), tmp_path / "b.mms", progress=False)
    assert capsys.readouterr().err == ""


record_values = st.fixed_dictionaries(
    {},
    optional={
        "a": st.integers(-(2**63), 2**63 - 1),
        "b": st.floats(allow_nan=False),
        "s": st.text(max_size=40),
    },
)


@settings(max_examples=40, deadline=None)
@given(st.lists(record_values, max_size=60), st.booleans())
def test_array_matches_model(tmp_path_factory, records, dedup):
    path = tmp_path_factory.mktemp("h") / "a.mms"
    arr = mmstore.RecordArray.build(records, path, schema=ABS.__schema__, dedup=dedup, progress=False)
    assert len(arr) == len(records)
    for p, r in zip(arr, records):
        assert (p.a, p.b, p.s) == (r.get("a"), r.get("b"), r.get("s"))


# -- Mapping -----------------------------------------------------------------------------------------------


def test_str_mapping_of_records(tmp_path):
    m = mmstore.Mapping.build(((o.s, o) for o in abs_items(500)), tmp_path / "m.mms", key=str,
                              schema=ABS.__schema__)
    assert len(m) == 500 and m["k0000042"].a == 42
    assert "k0000042" in m and "nope" not in m and 5 not in m
    assert m.get("nope") is None and m.get("nope", 1) == 1
    with pytest.raises(KeyError):
        m["nope"]
    assert sorted(m.keys()) == ["k%07d" % i for i in range(500)]
    assert sorted(v.a for v in m.values()) == list(range(500))
    assert all(k == v.s for k, v in m.items())
    with pytest.raises(TypeError):
        mmstore.Mapping.build([(1, ABS(1, 1.0, "x"))], tmp_path / "bad.mms", key=str, schema=ABS.__schema__)


def test_int_and_object_keys_with_plain_values(tmp_path):
    m = mmstore.Mapping.build({i: i * i for i in range(1000)}, tmp_path / "i.mms", key=int, value=mmstore.int64)
    assert m[31] == 961 and m.get(-1) is None and len(m) == 1000
    o = mmstore.Mapping.build({(1, "a"): [1], frozenset({2}): {"x": None}, b"k": 1.5}, tmp_path / "o.mms")
    assert o[(1, "a")] == [1] and o[frozenset({2})] == {"x": None} and o[b"k"] == 1.5
    with pytest.raises(TypeError):
        o[[1]]  # unhashable, as for dict


class HasValue:
    value = 3

    def __eq__(self, other):
        return type(other) is HasValue


def test_plain_values_are_stored_as_themselves_never_read_as_records(tmp_path):
    # A plain value is packed directly as the one field of its schema: one shaped like a record (a dict naming
    # the field, a 1-tuple, an object with a `value` attribute) stays the value it is.
    vals = [None, {"value": 5}, (7,), [8], "s", HasValue(), 2**70]
    m = mmstore.Mapping.build(list(enumerate(vals)), tmp_path / "p.mms", key=int)
    assert [m[i] for i in range(len(vals))] == vals
    ints = mmstore.Mapping.build([(1, 5), (2, None)], tmp_path / "i.mms", key=int, value=mmstore.uint32)
    assert ints[1] == 5 and ints[2] is None
    with pytest.raises(TypeError, match="field 'value'.*str"):
        mmstore.Mapping.build([(1, "x")], tmp_path / "bad.mms", key=int, value=mmstore.uint32)


def test_repeated_keys_last_wins_and_multi_keeps_all(tmp_path):
    items = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("a", 5)]
    m = mmstore.Mapping.build(items, tmp_path / "m.mms", key=str, value=int)
    assert m["a"] == 5 and len(m) == 3
    mm = mmstore.Mapping.build(items, tmp_path / "mm.mms", key=str, value=int, multi=True)
    assert mm.get_all("a") == [1, 3, 5] and mm.get_all("zz") == [] and len(mm) == 5
    assert sorted(mm.keys()) == ["a", "b", "c"]


def test_get_all_returns_its_default_only_for_a_missing_key(tmp_path):
    mm = mmstore.Mapping.build([("a", 1), ("a", 2)], tmp_path / "mm.mms", key=str, value=int, multi=True)
    assert mm.get_all("a", None) == [1, 2] and mm.get_all("zz", None) is None and mm.get_all("zz") == []
    with pytest.raises(TypeError):
        mm.get_all("a", None, None)


def test_approximate_map_keeps_only_hashes(tmp_path):
    items = [("k%d" % i, i) for i in range(5000)]
    exact = mmstore.Mapping.build(items, tmp_path / "e.mms", key=str, value=int)
    approx = mmstore.Mapping.build(items, tmp_path / "a.mms", key=str, value=int, approximate=True, multi=True)
    assert approx.get_all("k77") == [77] and approx["k4999"] == 4999 and "nope" not in approx
    assert (tmp_path / "a.mms").stat().st_size < (tmp_path / "e.mms").stat().st_size
    with pytest.raises(TypeError):
        list(approx.keys())
    assert exact["k77"] == 77


def test_small_memory_budget_builds_the_same_mapping(tmp_path):
    items = [("key%06d" % (i * 7919 % 20000), i) for i in range(20000)]
    a = mmstore.Mapping.build(items, tmp_path / "a.mms", key=str, value=int, memory_budget=64 << 10)
    b = mmstore.Mapping.build(items, tmp_path / "b.mms", key=str, value=int)
    assert (tmp_path / "a.mms").read_bytes() == (tmp_path / "b.mms").read_bytes()
    assert a["key000123"] == b["key000123"]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_merge_of_two_mappings(tmp_path):
    a = mmstore.Mapping.build({"x": 1, "y": 2}, tmp_path / "a.mms", key=str, value=int)
    b = mmstore.Mapping.build({"y": 20, "z": 30}, tmp_path / "b.mms", key=str, value=int)
    c = mmstore.merge(a, b, tmp_path / "c.mms")
    assert dict(c.items()) == {"x": 1, "y": 20, "z": 30}
    s = mmstore.Mapping.build({"q": ABS(1, 1.0, "q")}, tmp_path / "s.mms", key=str, schema=ABS.__schema__)
    with pytest.raises(ValueError):
        mmstore.merge(a, s, tmp_path / "bad.mms")


def test_mapping_from_buffer_and_zip(tmp_path):
    mmstore.Mapping.build({"a": 1}, tmp_path / "m.mms", key=str)
    m = mmstore.Mapping.from_buffer((tmp_path / "m.mms").read_bytes())
    assert m["a"] == 1
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as z:
        z.write(tmp_path / "m.mms", "m.mms")
    assert mmstore.Mapping.open_zip(tmp_path / "z.zip", "m.mms")["a"] == 1


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.integers(-5, 50), st.text(max_size=3)), st.integers()), max_size=80),
       st.booleans())
def test_mapping_matches_model(tmp_path_factory, items, multi):
    path = tmp_path_factory.mktemp("m") / "m.mms"
    m = mmstore.Mapping.build(items, path, multi=multi, progress=False)
    model: dict = {}
    for k, v in items:
        model.setdefault(canon(k), []).append(v)
    for k, _v in items:
        if multi:
            assert m.get_all(k) == model[canon(k)]
        else:
            assert m[k] == model[canon(k)][-1]
    assert len(m) == (len(items) if multi else len(model))


def test_datetimes_naive_utc_and_zoned_round_trip():
    import zoneinfo

    s = mmstore.Schema.from_fields({"when": dt.datetime, "day": dt.date})
    for when in (dt.datetime(2020, 1, 2, 3, 4, 5, 6), dt.datetime(2020, 1, 2, tzinfo=dt.timezone.utc),
                 dt.datetime(2020, 6, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
                 dt.datetime(2020, 6, 1, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))):
        p = s.unpack_from(s.pack({"when": when, "day": when.date()}))
        assert p.when == when and p.when.tzinfo == when.tzinfo and p.day == when.date()


def test_handles_pickle_as_reopen_and_other_processes_read(tmp_path):
    import subprocess
    import sys

    arr = mmstore.RecordArray.build(abs_items(100), tmp_path / "a.mms")
    again = pickle.loads(pickle.dumps(arr))
    assert again[7].s == "k0000007"
    m = mmstore.Mapping.build({"x": 1}, tmp_path / "m.mms", key=str)
    assert pickle.loads(pickle.dumps(m))["x"] == 1
    code = ("import sys, mmstore; a = mmstore.RecordArray(sys.argv[1]); m = mmstore.Mapping(sys.argv[2]);"
            "print(sum(r.a for r in a), a[-1].s, m['x'])")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.mms"), str(tmp_path / "m.mms")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(sum(range(100))), "k0000099", "1"]


KILLED_BUILD = r"""
import os, sys, mmstore
from pathlib import Path

class ABS:
    def __init__(self, i):
        self.a, self.b, self.s = i, 0.5, "k%07d" % i

schema = mmstore.Schema.from_fields({"a": int, "b": float, "s": str}, name="ABS")

def gen():
    i = 0
    while True:
        if i == 200_000:
            Path(sys.argv[2]).touch()  # tell the parent we are well into the build
        yield ABS(i)
        i += 1

mmstore.RecordArray.build(gen(), sys.argv[1], schema=schema, progress=False)
"""


def test_build_killed_midway_leaves_previous_file_intact(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "a.mms"
    mmstore.RecordArray.build(abs_items(10), path)
    marker = tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(path), str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), "builder did not start"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    arr = mmstore.RecordArray(path)
    assert len(arr) == 10 and arr[9].s == "k0000009"
    arr.verify()
    # Only the dead build's temporary files are left, named after the destination.
    assert all(p.name.startswith("a.mms.tmp-") for p in tmp_path.iterdir() if p.name not in ("a.mms", "started"))


@settings(max_examples=60, deadline=None)
@given(values, keys)
def test_object_fields_and_keys_round_trip_any_value(tmp_path_factory, value, key):
    s = mmstore.Schema.from_fields({"o": object, "n": mmstore.int8})
    p = s.unpack_from(s.pack({"o": value, "n": 1}))
    assert canon(p.o) == canon(value) and p.n == 1
    path = tmp_path_factory.mktemp("o") / "m.mms"
    m = mmstore.Mapping.build([(key, value)], path, progress=False)
    assert canon(m[key]) == canon(value)
    assert canon(next(iter(m.keys()))) == canon(key)


BOUNDED_BUILD = r"""
import json, sys
import mmstore
path, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
schema = mmstore.Schema.from_fields({"a": int, "b": float, "s": str}, name="ABS")
items = ({"a": i, "b": 0.5, "s": "a value of some length %09d" % i} for i in range(n))
hwm0 = status("VmHWM")
if kind == "mapping":
    mmstore.Mapping.build((("key%09d" % r["a"], r) for r in items), path, key=str, schema=schema,
                          memory_budget=8 << 20, dedup_budget=4 << 20, progress=False)
else:
    mmstore.RecordArray.build(items, path, schema=schema, dedup_budget=4 << 20, progress=False)
print(json.dumps({"growth": status("VmHWM") - hwm0}))
"""


@pytest.mark.parametrize("kind", ["mapping", "array"])
def test_builds_stay_within_their_memory_budget(tmp_path, kind):
    from test_resources import run_py

    # 400k entries are ~50 MB of partition data: several times the 8 MiB budget.
    r = run_py(BOUNDED_BUILD, tmp_path / "out.mms", kind, 400_000)
    assert r["growth"] < 40 << 20, r


def test_mapping_build_accepts_any_pairs_and_rejects_non_pairs(tmp_path):
    m = mmstore.Mapping.build([["a", 1], ("b", 2)], tmp_path / "m.mms", key=str, value=int)
    assert m["a"] == 1 and m["b"] == 2
    with pytest.raises(TypeError):
        mmstore.Mapping.build([("a", 1, 2)], tmp_path / "bad.mms")
    with pytest.raises(TypeError):
        mmstore.Mapping.build([5], tmp_path / "bad.mms")
    assert not (tmp_path / "bad.mms").exists()


def test_progress_bar_on_a_terminal_uses_tqdm(tmp_path, monkeypatch):
    import sys
    import types

    bars = []

    class FakeTqdm:
        def __init__(self, total=None, **kw):
            self.n, self.total, self.closed = 0, total, False
            bars.append(self)

        def update(self, k):
            self.n += k

        def close(self):
            self.closed = True

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeTqdm))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    mmstore.RecordArray.build([ABS(i, 0.0, "x") for i in range(70000)], tmp_path / "a.mms")
    assert len(bars) == 1 and bars[0].total == 70000 and bars[0].n == 70000 and bars[0].closed
    mmstore.RecordArray.build([ABS(1, 0.0, "x")], tmp_path / "b.mms", progress=False)
    assert len(bars) == 1


def _plain_field(v):
    if isinstance(v, mmstore.RecordProxy):
        return ("record", v._asdict())
    if isinstance(v, np.ndarray):
        return ("ndarray", v.dtype.str, v.tolist())
    return v


def test_values_reads_one_field_of_every_record_like_the_proxies(tmp_path):
    rows = [full_everything(), Everything()] + [Everything(i64=i, text=None if i % 3 else "t%d" % i, raw=b"r" * i,
                                                           f64=i / 2, tup=(i,)) for i in range(30)]
    with mmstore.RecordArray.build(rows, tmp_path / "e.mma", progress=False) as arr:
        for name in Everything.__schema__.names:
            vals = arr.values(name)
            assert len(vals) == len(rows)
            want = [_plain_field(getattr(r, name)) for r in arr]
            assert [_plain_field(v) for v in vals] == want, name
            assert _plain_field(vals[-1]) == want[-1] and [_plain_field(v) for v in vals[3:20:4]] == want[3:20:4]
            with pytest.raises(IndexError):
                vals[len(rows)]
            with pytest.raises(TypeError):
                vals["x"]
        with pytest.raises(KeyError):
            arr.values("nope")
        s = arr.values("text")
    with pytest.raises(mmstore.ClosedError):
        s[0]
    old = mmstore.RecordArray(V2_DATA / "records_v2.mma")  # heap layout: the same reads
    assert list(old.values("s")) == [r["s"] for r in v2_rows()]
    assert list(old.values("b")) == [r["b"] for r in v2_rows()]
    old.close()


@mmstore.struct
class _Widths:
    s: str
    b: bytes


@settings(max_examples=80, deadline=None)
@given(st.integers(min_value=0, max_value=9), st.lists(st.tuples(st.integers(0, 40), st.integers(-2, 2), st.booleans()),
                                                       min_size=1, max_size=40))
def test_str_and_bytes_columns_of_uniform_and_near_uniform_widths_read_back_exactly(tmp_path_factory, w, rows):
    # Columns whose values all have one width are read without their offsets (ColumnSet::var_stride, found
    # when the open validates the offsets); near-uniform columns (one value longer, one shorter, a None: the
    # total can still be a multiple of the count) must take the offsets. Every read path agrees with the model.
    model = []
    for k, (seed, delta, none) in enumerate(rows):
        width = max(0, w + (delta if seed % 5 == 0 else 0))
        text = "".join(chr(0x61 + (seed + j) % 26) if (seed + j) % 7 else "é" for j in range(width))
        model.append(_Widths(s=None if none and seed % 3 == 0 else text, b=bytes([seed % 256]) * width))
    path = tmp_path_factory.mktemp("w") / "w.mma"
    with mmstore.RecordArray.build(model, path, progress=False) as arr:
        for name in ("s", "b"):
            want = [getattr(r, name) for r in model]
            vals = arr.values(name)
            assert list(vals) == want
            assert [vals[i] for i in range(len(model) - 1, -1, -1)] == want[::-1]
            assert [getattr(arr[i], name) for i in range(len(model))] == want
            assert arr.to_arrow().column(name).to_pylist() == want
        arr.verify()
