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
    s = SomeStruct(a=3, s="blah", fset=frozenset([1, 3]), o=3)  # unset slots read as None
    data = s.__schema__.pack(s)
    assert isinstance(data, bytearray)
    buf = bytearray(1000)
    end = s.__schema__.pack_into(s, buf, 10)
    assert end == 10 + len(data)
    p = s.__schema__.unpack_from(buf, 10)
    assert (p.a, p.s, p.fset, p.o, p.b) == (3, "blah", frozenset([1, 3]), 3, None)
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
        assert sorted(m.keys()) == ["a", "b"]
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
