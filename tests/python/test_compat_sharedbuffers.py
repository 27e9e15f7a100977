"""mmstore.compat.sharedbuffers: code written for sharedbuffers.mapped_struct runs after changing its import
(the examples follow sharedbuffers' README)."""

from __future__ import annotations

import tempfile

import pytest

from mmstore.compat.sharedbuffers import mapped_struct


class SomeStruct:
    __slot_types__ = {
        "a": int,
        "b": float,
        "s": str,
        "u": mapped_struct.unicode,
        "fset": frozenset,
        "l": list,
        "o": object,
        "small": mapped_struct.int32,
    }
    __slots__ = tuple(__slot_types__)

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


SomeStruct.__schema__ = mapped_struct.Schema.from_typed_slots(SomeStruct)
SomeStruct.__mapped_type__ = mapped_struct.mapped_object.register_schema(SomeStruct, SomeStruct.__schema__, "S")


class Outer:
    __slot_types__ = {"name": str, "inner": SomeStruct}
    __slots__ = tuple(__slot_types__)


Outer.__schema__ = mapped_struct.Schema.from_typed_slots(Outer)


class StructArray(mapped_struct.MappedArrayProxyBase):
    schema = SomeStruct.__schema__


class StructNameMapping(mapped_struct.MappedMappingProxyBase):
    IdMapper = mapped_struct.StringIdMapper
    ValueArray = StructArray


class StructIdMapping(mapped_struct.MappedMappingProxyBase):
    IdMapper = mapped_struct.NumericIdMapper
    ValueArray = StructArray


class StructObjectMapping(mapped_struct.MappedMappingProxyBase):
    IdMapper = mapped_struct.ObjectIdMapper
    ValueArray = StructArray


class StructNameMultiMapping(mapped_struct.MappedMultiMappingProxyBase):
    IdMapper = mapped_struct.StringIdMultiMapper
    ValueArray = StructArray


def make(i):
    return SomeStruct(a=i, b=i / 2, s="s%d" % i, fset=frozenset([1, 3]), l=[i], o={"k": i}, small=-i)


def test_pack_pack_into_unpack_from():
    s = SomeStruct(a=3, s="blah", fset=frozenset([1, 3]), o=3)  # unset slots are missing, as in sharedbuffers
    data = s.__schema__.pack(s)
    assert isinstance(data, bytearray)
    buf = bytearray(1000)
    end = s.__schema__.pack_into(s, buf, 10)
    assert end == 10 + len(data)
    p = s.__schema__.unpack_from(buf, 10)
    assert (p.a, p.s, p.fset, p.o, getattr(p, "b", None)) == (3, "blah", frozenset([1, 3]), 3, None)
    assert not hasattr(p, "b")
    c = p.copy()
    assert type(c) is SomeStruct and c.s == "blah"


def test_registered_type_nests_and_lives_in_object_fields():
    o = Outer()
    o.name = "outer"
    o.inner = make(5)
    p = Outer.__schema__.unpack_from(Outer.__schema__.pack(o))
    assert p.inner.a == 5 and p.inner.l == [5]
    holder = SomeStruct(o=make(7))
    q = SomeStruct.__schema__.unpack_from(SomeStruct.__schema__.pack(holder))
    assert q.o.s == "s7"


def test_array_build_map_file_map_buffer(tmp_path):
    with tempfile.NamedTemporaryFile(dir=tmp_path) as destfile:
        arr = StructArray.build([make(i) for i in range(100)], destfile=destfile)
        assert len(arr) == 100 and arr[7].s == "s7" and arr[-1].a == 99
        again = StructArray.map_file(destfile)
        assert [x.a for x in again][:3] == [0, 1, 2]
        destfile.seek(0)
        buf = destfile.read()
    assert StructArray.map_buffer(buf)[3].small == -3


def test_mappings_by_name_id_and_object(tmp_path):
    with tempfile.NamedTemporaryFile(dir=tmp_path) as destfile:
        m = StructNameMapping.build(dict(a=make(1), b=make(2)).items(), destfile=destfile)
        assert m["a"].a == 1 and "b" in m and m.get("zz") is None and len(m) == 2
        assert sorted(m.keys()) == [b"a", b"b"]  # string mappers key by bytes, as sharedbuffers' do
    with tempfile.NamedTemporaryFile(dir=tmp_path) as destfile:
        m = StructIdMapping.build({1: make(1), 3: make(3)}.items(), destfile=destfile)
        assert m[3].s == "s3"
    m = StructObjectMapping.build({(1, "x"): make(4)}.items())
    assert m[(1, "x")].a == 4
    mm = StructNameMultiMapping.build([("k", make(1)), ("k", make(2))])
    assert [v.a for v in mm["k"]] == [1, 2]
    with pytest.raises(KeyError):
        mm["zz"]


def test_id_mappers(tmp_path):
    items = [("k%d" % i, i) for i in range(1000)]
    with tempfile.NamedTemporaryFile(dir=tmp_path) as f:
        ids = mapped_struct.StringIdMapper.build(items, destfile=f)
        assert ids["k10"] == 10 and ids.get("nope") is None and "k999" in ids
        assert mapped_struct.StringIdMapper.map_file(f)["k5"] == 5
    n = mapped_struct.NumericId32Mapper.build({i * 3: i for i in range(100)})
    assert n[30] == 10
    multi = mapped_struct.StringIdMultiMapper.build([("a", 1), ("a", 2), ("b", 3)])
    assert multi["a"] == [1, 2] and multi.get("b") == [3]
    approx = mapped_struct.ApproxStringIdMultiMapper.build([("a", 1), ("b", 2)])
    assert approx.get("a") == [1]
    obj = mapped_struct.ObjectIdMapper.build({(1, 2): 5})
    assert obj[(1, 2)] == 5


def test_container_type_names_pack_and_name_fields():
    buf = bytearray(100)
    end = mapped_struct.mapped_list.pack_into([1, "a"], buf, 3)
    assert mapped_struct.mapped_list.unpack_from(buf, 3) == [1, "a"] and end > 3
    mapped_struct.proxied_frozenset.pack_into(frozenset({2}), buf, end)
    assert mapped_struct.proxied_frozenset.unpack_from(buf, end) == {2}

    class WithNames:
        __slot_types__ = {"t": mapped_struct.mapped_tuple, "l": mapped_struct.proxied_list}
        __slots__ = tuple(__slot_types__)

    s = mapped_struct.Schema.from_typed_slots(WithNames)
    o = WithNames()
    o.t, o.l = (1, 2), [3]
    p = s.unpack(s.pack(o))
    assert p.t == (1, 2) and p.l == [3]
    assert s.compatible(mapped_struct.Schema.from_typed_slots(WithNames))
    assert mapped_struct.mapped_object.TYPE_CODES[SomeStruct] == b"S"


def test_string_mappers_take_str_and_bytes_keys_alike():
    ids = mapped_struct.StringIdMapper.build([(b"abc", 1), ("d\u00e9f", 2)])
    assert ids["abc"] == 1 and ids[b"abc"] == 1 and ids["d\u00e9f".encode()] == 2 and b"abc" in ids
    multi = mapped_struct.StringIdMultiMapper.build([("k", 1), (b"k", 2)])
    assert sorted(multi.get_iter(b"k")) == [1, 2]


# -- issue 14: sharedbuffers' own suite through this layer ---------------------------------------------------------

import datetime as _dt
import pickle as _pickle

import numpy as _np
import pytest as _pytest


class Opt:
    __slot_types__ = {"n": int, "x": float, "s": str, "l": list}
    __slots__ = tuple(__slot_types__)


_OPT = mapped_struct.Schema.from_typed_slots(Opt)


def _opt(**kw):
    o = Opt()
    for k, v in kw.items():
        setattr(o, k, v)
    return o


def test_unset_fields_are_missing_and_none_is_a_value():
    p = _OPT.unpack(_OPT.pack(_opt(n=1, s=None)))
    assert p.n == 1 and hasattr(p, "s") and p.s is None  # a variable field set to None stays None
    assert not hasattr(p, "l") and not hasattr(p, "x")  # never set: AttributeError, as in sharedbuffers
    with _pytest.raises(AttributeError, match="'l'"):
        p.l
    assert p.copy().l is None  # the copy has every slot (unset ones None)


def test_fixed_width_fields_set_to_none_read_as_none_not_unset():
    class Num:
        __slot_types__ = {"a": int, "b": float, "c": mapped_struct.int32, "s": str}
        __slots__ = tuple(__slot_types__)

    sch = mapped_struct.Schema.from_typed_slots(Num)
    n = Num()
    n.a, n.b = 1, None
    p = sch.unpack(sch.pack(n))
    assert p.a == 1 and hasattr(p, "b") and p.b is None and not hasattr(p, "c") and not hasattr(p, "s")
    assert sch.slot_keys == ("a", "b", "c", "s")  # the hidden None mask is no slot

    class Arr(mapped_struct.MappedArrayProxyBase):
        schema = sch

    m = Num()
    m.c = None
    arr = Arr.build([n, m])
    assert arr[0].b is None and not hasattr(arr[0], "c") and arr[1].c is None and not hasattr(arr[1], "a")
    assert type(arr[1].copy()) is Num and arr[1].copy().c is None


def test_unset_fields_in_mapped_arrays_are_missing():
    class Arr(mapped_struct.MappedArrayProxyBase):
        schema = _OPT

    arr = Arr.build([_opt(n=1, l=[1]), _opt(s="x")])
    assert hasattr(arr[0], "l") and not hasattr(arr[0], "s") and not hasattr(arr[1], "n") and arr[1].s == "x"


def test_native_schemas_still_read_unset_fields_as_none():
    import mmstore

    native = mmstore.Schema([("a", int), ("s", str)])
    p = native.unpack_from(native.pack({"a": 1}))
    assert p.s is None and hasattr(p, "s")


def test_pack_and_unpack_take_an_idmap():
    idmap = {}
    p = _OPT.unpack(_OPT.pack(_opt(n=5), idmap), {})
    assert p.n == 5


def test_schema_pickles_with_user_data_and_stays_compatible():
    s = mapped_struct.Schema.from_typed_slots({"a": int}, user_data={"some": "contents"})
    again = _pickle.loads(_pickle.dumps(s, 2))
    assert again.user_data == {"some": "contents"} and again.compatible(s) and s.compatible(again)
    p2 = _pickle.loads(_pickle.dumps(_OPT))
    assert p2.unpack(_OPT.pack(_opt(n=3))).n == 3 and not hasattr(p2.unpack(_OPT.pack(_opt(n=3))), "s")


def test_memoryview_values_are_stored_as_bytes():
    class B:
        __slot_types__ = {"o": object}
        __slots__ = ("o",)

    sch = mapped_struct.Schema.from_typed_slots(B)
    b = B()
    b.o = memoryview(bytearray(range(10)))
    assert sch.unpack(sch.pack(b)).o == bytes(range(10))


def test_string_mappers_key_by_bytes_and_approximate_ones_iterate_by_hash():
    multi = mapped_struct.StringIdMultiMapper.build([(b"42", 1), (b"42", 2), ("35", 3)])
    assert set(multi.keys()) == {b"42", b"35"} and sorted(multi[b"42"]) == [1, 2] and multi["35"] == [3]
    approx = mapped_struct.ApproxStringIdMultiMapper.build([(b"42", 1), ("35", 3)])
    h = {approx.xxh(approx.encode(k)).intdigest(): k for k in (b"42", "35")}
    assert {(h[k], v) for k, v in approx.iteritems()} == {(b"42", 1), ("35", 3)}
    assert sorted(approx[b"35"]) == [3]


def test_mapping_exposes_its_id_mapper():
    class Arr(mapped_struct.MappedArrayProxyBase):
        schema = _OPT

    class M(mapped_struct.MappedMultiMappingProxyBase):
        IdMapper = mapped_struct.ApproxStringIdMultiMapper
        ValueArray = Arr

    m = M.build([(b"k", _opt(n=1)), (b"k", _opt(n=2))])
    idm = m.id_mapper
    assert {idm.xxh(idm.encode(b"k")).intdigest()} == {k for k, _ in m.iteritems()}
    assert sorted(v.n for v in m[b"k"]) == [1, 2]


def test_id_mapper_copy_and_merge():
    a = mapped_struct.NumericIdMapper.build([(1, 2), (3, 4)])
    c = a.copy()
    assert c.buf is not a.buf and sorted(c.items()) == [(1, 2), (3, 4)]
    assert list(mapped_struct.NumericIdMapper.build([]).copy()) == []
    merged = mapped_struct.NumericIdMapper.merge([a, mapped_struct.NumericIdMapper.build([(5, 6)])])
    assert sorted(merged.items()) == [(1, 2), (3, 4), (5, 6)]
    multi = mapped_struct.StringIdMultiMapper.merge([mapped_struct.StringIdMultiMapper.build([("a", 1)]),
                                                     mapped_struct.StringIdMultiMapper.build([("a", 2)])])
    assert sorted(multi["a"]) == [1, 2]


def test_bsearch_sorted_contains_and_index_merge():
    a = _np.array([1, 1, 2, 2, 3, 4, 4, 5, 6, 6])
    assert [mapped_struct.bsearch(a, x) for x in (0, 1, 2, 4, 6, 7)] == [0, 0, 2, 5, 8, 10]
    assert mapped_struct.sorted_contains(a, 5) and not mapped_struct.sorted_contains(a, 7)
    assert mapped_struct.bsearch(_np.array([], "u4"), 3) == 0
    with _pytest.raises(NotImplementedError):
        mapped_struct.bsearch(_np.arange(3, dtype=complex), 1)
    x = _np.array([[1, 10], [5, 50]], "u4")
    y = _np.array([[2, 20], [5, 51]], "u4")
    dest = _np.empty((4, 2), "u4")
    assert mapped_struct.index_merge(x, y, dest) == 4
    assert dest.tolist() == [[1, 10], [2, 20], [5, 50], [5, 51]]
    with _pytest.raises(ValueError):
        mapped_struct.index_merge(x, y, _np.empty((4, 3), "u4"))
    with _pytest.raises(ValueError):
        mapped_struct.index_merge(x, y, _np.empty((3, 2), "u4"))
    with _pytest.raises(NotImplementedError):
        mapped_struct.index_merge(dest[:1], dest[2:3], dest[1:])
    assert mapped_struct.cmp(1, 2) == -1 and mapped_struct.cmp(2, 2) == 0


def test_registry_conflicts_raise_value_error():
    class C:
        __slot_types__ = {"a": int}
        __slots__ = ("a",)

    sch = mapped_struct.Schema.from_typed_slots(C)
    with _pytest.raises(ValueError, match="builtin"):
        mapped_struct.mapped_object.register_schema(C, sch, b"b")
    with _pytest.raises(ValueError):
        mapped_struct.mapped_object.register_schema(C, sch, b"t")
    assert mapped_struct.mapped_object.OBJ_PACKERS[b"t"][2] is mapped_struct.mapped_tuple


def test_single_value_packers_fit_sharedbuffers_sizes():
    buf = bytearray(12)
    now = _dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    assert mapped_struct.mapped_datetime.pack_into(now, buf, 2) == 10
    assert mapped_struct.mapped_datetime.unpack_from(buf, 2) == now
    assert mapped_struct.mapped_datetime_utc.pack_into(now, buf, 0) == 8
    got = mapped_struct.mapped_datetime_utc.unpack_from(buf, 0)
    assert got.tzinfo is not None and got.replace(tzinfo=None) == now
    assert mapped_struct.mapped_date.pack_into(_dt.date(1900, 1, 1), buf, 4) == 12
    assert mapped_struct.mapped_date.unpack_from(buf, 4) == _dt.date(1900, 1, 1)
    big = bytearray(64)
    assert mapped_struct.proxied_buffer.pack_into(bytearray(range(20)), big, 10) == 10 + 20 + 8
    assert mapped_struct.proxied_buffer.unpack_from(big, 10) == bytes(range(20))
    assert mapped_struct.mapped_datetime.pack_into(now, buf, 8) == 16 and len(buf) == 16  # a bytearray grows
    with _pytest.raises(IndexError, match="buffer too small"):  # a fixed buffer does not
        mapped_struct.mapped_datetime.pack_into(now, memoryview(bytearray(12)), 8)
    with _pytest.raises(IndexError, match="beyond the end"):
        mapped_struct.mapped_frozenset.unpack_from(b"m", 0)


class Nested:
    __slot_types__ = {"a": int, "b": float}
    __slots__ = tuple(__slot_types__)

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


def test_registered_records_inside_containers_keep_none_and_unset():
    sch = mapped_struct.Schema.from_typed_slots(Nested)
    mapped_struct.mapped_object.register_schema(Nested, sch, b"~")
    buf = bytearray(10)
    mapped_struct.mapped_list.pack_into([Nested(a=1, b=None), Nested(b=2.0), 3], buf, 0)
    got = mapped_struct.mapped_list.unpack_from(buf, 0)
    assert got[0].a == 1 and hasattr(got[0], "b") and got[0].b is None
    assert not hasattr(got[1], "a") and got[1].b == 2.0 and got[2] == 3
    assert isinstance(got[0], mapped_struct.BufferProxyObject)


def test_floats_in_decimal_fields_are_cast_and_proxied_sequences_are_read_only():
    import decimal

    class D:
        __slot_types__ = {"d": decimal.Decimal}
        __slots__ = ("d",)

    sch = mapped_struct.Schema.from_typed_slots(D)
    d = D()
    d.d = 1.23
    assert sch.unpack(sch.pack(d)).d == decimal.Decimal("1.23")
    buf = bytearray(64)
    mapped_struct.proxied_list.pack_into([1, 2.0, None], buf, 0)
    view = mapped_struct.proxied_list.unpack_from(buf, 0)
    assert view == (1, 2.0, None) and view == [1, 2.0, None] and repr(view) == "proxied_list([1,2.0,None])"
    with _pytest.raises(TypeError):
        view[0] = 5
    with _pytest.raises(TypeError):
        del view[0]
    with _pytest.raises(NotImplementedError):
        view < None
    assert list(view.iter(mask=[1, 0, 1])) == [1, None] and str(view[1:]) == "[2.0,None]"


# -- lookups go straight to the native mapping (sharedbuffers' huge-build tests do tens of millions) ------------


def test_string_mapper_lookups_normalize_str_bytearray_and_memoryview_natively():
    ids = mapped_struct.StringIdMapper.build([("k\u00e9", 1), (b"b", 2), (7, 3)])
    get = ids.get
    assert type(get) is type(ids.native.get)  # the native method itself, no Python wrapper
    assert get("k\u00e9") == 1 and get("k\u00e9".encode()) == 1 and get(bytearray(b"b")) == 2
    assert get(memoryview(b"b")) == 2 and get(7) == 3 and get("zz") is None and get("zz", -1) == -1
    assert ids[bytearray(b"b")] == 2 and memoryview(b"b") in ids and "\udcff" not in ids
    nums = mapped_struct.NumericIdMapper.build([(1, 10)])
    assert nums.get(1) == 10 and nums.get(b"1") is None  # numeric mappers take keys as they are


def test_multi_mapper_get_returns_every_value_or_the_default():
    for cls in (mapped_struct.StringIdMultiMapper, mapped_struct.ApproxStringIdMultiMapper):
        m = cls.build([("a", 1), (b"a", 2), ("b", 3)])
        assert sorted(m.get("a")) == [1, 2] and m.get(b"b") == [3]
        assert m.get("zz") is None and m.get("zz", []) == []
        assert sorted(m.copy().get(bytearray(b"a"))) == [1, 2]


def test_subclass_overriding_get_keeps_its_override():
    class Upper(mapped_struct.StringIdMapper):
        def get(self, key, default=None):
            return super().get(key.upper(), default)

    class UpperMapping(StructNameMapping):
        def get(self, key, default=None):
            return super().get(key.upper(), default)

    assert Upper.build([("A", 1)]).get("a") == 1
    assert UpperMapping.build([("A", make(5))]).get("a").a == 5
    multi = StructNameMultiMapping.build([("k", make(1)), (b"k", make(2))])
    assert [v.a for v in multi.get("k")] == [1, 2] and multi.get("zz") is None


def test_copy_index_data_id_column_is_writable_and_the_original_unchanged():
    for cls in (mapped_struct.NumericIdMapper, mapped_struct.NumericId32Mapper,
                mapped_struct.ApproxStringIdMultiMapper):
        rv = cls.build([(k, 2 * k) for k in range(50)])
        rv2 = rv.copy()
        rv2._index_data[:, -1] += 1
        for k in range(50):
            want = 2 * k
            assert rv2.get(k) == ([want + 1] if cls.multi else want + 1)
            assert rv.get(k) == ([want] if cls.multi else want)
        assert rv2._index_data.shape == (50, 2)
        with pytest.raises(ValueError):  # a mapper not copied is read-only
            rv._index_data[:, -1] += 1
        with pytest.raises(NotImplementedError, match="key-hash column"):
            rv._index_data[:, 0]


@pytest.fixture
def set_tz(monkeypatch):
    import time

    def set_tz(tz):
        monkeypatch.setenv("TZ", tz)
        time.tzset()

    yield set_tz
    monkeypatch.undo()
    time.tzset()


def test_datetime_local_and_tz_packers_come_back_aware(set_tz):
    buf = bytearray(12)
    now = _dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    set_tz("GMT-3")  # POSIX: three hours east of UTC
    assert mapped_struct.mapped_datetime_local.pack_into(now, buf, 0) == 8
    set_tz("GMT")
    got = mapped_struct.mapped_datetime_local.unpack_from(buf, 0)  # aware, in the reader's local zone
    assert got.tzname() == "GMT" and got.utcoffset() == _dt.timedelta(0)
    assert got == now.replace(tzinfo=_dt.timezone(_dt.timedelta(hours=3)))

    east = now.replace(tzinfo=_dt.timezone(_dt.timedelta(hours=3)))
    assert mapped_struct.mapped_datetime_tz.pack_into(east, buf, 0) == 10  # + a 2-byte offset in minutes
    set_tz("GMT+2")
    got = mapped_struct.mapped_datetime_tz.unpack_from(buf, 0)  # keeps the offset it was written with
    assert got == east and got.tzname() == "UTC+3" and got.utcoffset() == _dt.timedelta(hours=3)
    odd = now.replace(tzinfo=_dt.timezone(-_dt.timedelta(hours=5, minutes=30)))
    mapped_struct.mapped_datetime_tz.pack_into(odd, buf, 0)
    assert mapped_struct.mapped_datetime_tz.unpack_from(buf, 0).tzname() == "UTC-6:30"  # sharedbuffers' naming
    mapped_struct.mapped_datetime_tz.pack_into(now, buf, 0)  # naive: taken as UTC
    got = mapped_struct.mapped_datetime_tz.unpack_from(buf, 0)
    assert got.tzname() == "UTC" and got.replace(tzinfo=None) == now
    mapped_struct.mapped_datetime_tz_local.pack_into(now, buf, 0)  # naive: taken as local (GMT+2 = UTC-2)
    got = mapped_struct.mapped_datetime_tz_local.unpack_from(buf, 0)
    assert got.utcoffset() == _dt.timedelta(hours=-2) and got.replace(tzinfo=None) == now


def test_proxied_ndarray_make_dtype_params_round_trips_through_numpy():
    make = mapped_struct.proxied_ndarray._make_dtype_params
    for d in ("i", [("a", "l"), ("b", "i")], [("a", "l"), ("b", [("c", "i")])], ">f8"):
        dtype = _np.dtype(d)
        assert _np.dtype(make(dtype)) == dtype
    assert make(_np.dtype("<u2")) == "<u2"
