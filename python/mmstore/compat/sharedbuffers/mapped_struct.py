"""sharedbuffers compatibility: the ``mapped_struct`` names existing code uses, over mmstore's typed records.

Change ``from sharedbuffers import mapped_struct`` to ``from mmstore.compat.sharedbuffers import
mapped_struct`` and keep the rest::

    class Item(object):
        __slot_types__ = {"a": int, "b": float, "s": str}
        __slots__ = tuple(__slot_types__)

    schema = mapped_struct.Schema.from_typed_slots(Item)
    mapped_struct.mapped_object.register_schema(Item, schema, "I")

    class ItemArray(mapped_struct.MappedArrayProxyBase):
        schema = schema

    class ItemMapping(mapped_struct.MappedMappingProxyBase):
        IdMapper = mapped_struct.StringIdMapper
        ValueArray = ItemArray

    with open(path, "w+b") as f:
        arr = ItemArray.build(items, destfile=f)        # or ItemArray.map_file(f) later

Everything here is a thin name mapping over :class:`mmstore.RecordArray`, :class:`mmstore.Mapping` and
:class:`mmstore.Schema`; the files are mmstore's format (docs/format.md §8), not sharedbuffers'.

Differences worth knowing (docs/compat.md has the list, with the tests of sharedbuffers' own suite still
failing and why): ``build`` copies the finished image into ``destfile`` at its current position; an
``idmap`` is accepted and unused (mmstore deduplicates equal values itself); ``proxy_into`` is ignored
(proxies are cheap); proxies are read-only; container fields decode on access; a fixed-width field set to
None reads as unset (one presence bit); string mappers key by bytes (a str is its UTF-8 bytes);
approximate mappers iterate by key hash. sharedbuffers' internals (its index arrays, hash, file versions)
have no equivalent.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import io as _io
import os as _os
import struct as _struct
import shutil as _shutil
import tempfile as _tempfile

from ... import _codec, _records
from ..._core import _hash64
from ..._core import decode as _decode
from ..._core import encode as _encode
from ..._records import Mapping, RecordArray, Schema as _Schema

__all__ = [
    "Schema", "mapped_object", "MappedArrayProxyBase", "MappedMappingProxyBase", "MappedMultiMappingProxyBase",
    "StringIdMapper", "StringId32Mapper", "NumericIdMapper", "NumericId32Mapper", "ObjectIdMapper",
    "StringIdMultiMapper", "StringId32MultiMapper", "NumericIdMultiMapper", "NumericId32MultiMapper",
    "ApproxStringIdMultiMapper", "ApproxStringId32MultiMapper", "ubyte", "byte", "ushort", "short", "uint8",
    "int8", "uint16", "int16", "int32", "uint32", "int64", "uint64", "float32", "float64",
    "bsearch", "sorted_contains", "index_merge", "cmp",
]

# Width-marked types, as sharedbuffers spells them (``__slot_types__ = {"x": mapped_struct.int32}``).
ubyte, byte, ushort, short = _records.uint8, _records.int8, _records.uint16, _records.int16
uint8, int8, uint16, int16 = ubyte, byte, ushort, short
int32, uint32, int64, uint64 = _records.int32, _records.uint32, _records.int64, _records.uint64
float32, float64 = _records.float32, _records.float64

def cmp(a, b) -> int:
    """Python 2's ``cmp`` (sharedbuffers exports it on Python 3): -1, 0 or 1."""
    return (a > b) - (a < b)


def _sortable(a, what):
    import numpy

    a = numpy.asarray(a)
    if a.dtype.kind not in "iuf":
        raise NotImplementedError(f"{what}: unsupported dtype {a.dtype} (integers and floats only)")
    return a


def bsearch(a, x) -> int:
    """Index of the first element of sorted 1-d array ``a`` not less than ``x`` (``len(a)`` when none):
    where ``x`` is if present. ``NotImplementedError`` for dtypes other than integers and floats."""
    import numpy

    a = _sortable(a, "bsearch")
    return int(numpy.searchsorted(a, x, side="left"))


def sorted_contains(a, x) -> bool:
    """Whether sorted 1-d array ``a`` contains ``x`` (binary search)."""
    i = bsearch(a, x)
    return i < len(a) and a[i] == x


def index_merge(a, b, dest) -> int:
    """Merge two (n, 2) index arrays sorted by column 0 into ``dest`` (rows kept in order, ``a`` first on
    ties); returns the number of rows written. ``ValueError`` for mismatched shapes or dtypes or a too small
    ``dest``; ``NotImplementedError`` when ``dest`` overlaps an input or for unsupported dtypes."""
    import numpy

    a, b = _sortable(a, "index_merge"), _sortable(b, "index_merge")
    if not isinstance(dest, numpy.ndarray):
        raise TypeError("index_merge: dest must be a numpy array")
    for name, arr in (("a", a), ("b", b), ("dest", dest)):
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(f"index_merge: {name} must have shape (n, 2), not {arr.shape}")
    if not (a.dtype == b.dtype == dest.dtype):
        raise ValueError(f"index_merge: dtypes differ ({a.dtype}, {b.dtype}, {dest.dtype})")
    n = len(a) + len(b)
    if len(dest) < n:
        raise ValueError(f"index_merge: dest holds {len(dest)} rows, {n} needed")
    if dest is a or dest is b or numpy.shares_memory(dest, a) or numpy.shares_memory(dest, b):
        raise NotImplementedError("index_merge: dest must not overlap its inputs (in-place merge)")
    if n:
        both = numpy.concatenate([a, b])
        dest[:n] = both[numpy.argsort(both[:, 0], kind="stable")]
    return n


# Types registered through mapped_object.register_schema: class -> Schema (nested fields may name them).
_REGISTERED: dict = {}


def _typecode_number(typecode) -> int:
    """sharedbuffers type codes are one byte (char); mmstore's are 32-bit numbers: 0x53420000 + byte."""
    if isinstance(typecode, str):
        typecode = typecode.encode("latin-1")
    if isinstance(typecode, bytes):
        if len(typecode) != 1:
            raise ValueError("a sharedbuffers typecode is a single byte")
        typecode = typecode[0]
    return 0x53420000 + int(typecode)


# A hidden variable field of compat schemas with fixed-width fields: an int whose bit i is set when field i
# was None. mmstore's fixed fields have one presence bit (None and unset are one state there); sharedbuffers
# tells them apart, and the records binding reads this mask for it (set_missing_raises).
_NONE_FIELD = "_sb_none_"


def _constructor(cls):
    def construct(**fields):
        obj = cls.__new__(cls)
        for k, v in fields.items():
            if k != _NONE_FIELD:
                setattr(obj, k, v)
        return obj

    return construct


def _fixed_indexes(native) -> tuple:
    return tuple(i for i, t in enumerate(native.fields.values())
                 if isinstance(t, _records.FieldType) and t.dtype is not None)


def _arm(native) -> None:
    """Unset fields of ``native``'s proxies raise AttributeError; fixed fields set to None read as None."""
    names = native.names
    native._native.set_missing_raises(True, names.index(_NONE_FIELD) if _NONE_FIELD in names else -1)
    native._sb_fixed = tuple((i, names[i]) for i in _fixed_indexes(native)) if _NONE_FIELD in names else ()
    native._sb_decimal = tuple(n for n, t in native.fields.items() if t is _records._decimal_t)


class _Overlay:
    """``obj`` with some attributes replaced, for the native packer (it reads attributes)."""

    __slots__ = ("_o", "_over")

    def __init__(self, o, over: dict) -> None:
        self._o = o
        self._over = over

    def __getattr__(self, name):
        over = self._over
        return over[name] if name in over else getattr(self._o, name)


_ABSENT = object()


def _masked(native, obj):
    """``obj`` as the native packer should see it: with the hidden None mask when a fixed field is None, and
    floats in Decimal fields cast to Decimal (as sharedbuffers casts them)."""
    fixed, decs = getattr(native, "_sb_fixed", ()), getattr(native, "_sb_decimal", ())
    if not fixed and not decs:
        return obj
    get = obj.get if isinstance(obj, dict) else lambda n, d=_ABSENT: getattr(obj, n, d)
    over = {}
    mask = sum(1 << i for i, n in fixed if get(n, _ABSENT) is None)
    if mask:
        over[_NONE_FIELD] = mask
    for n in decs:
        v = get(n, _ABSENT)
        if type(v) is float:
            over[n] = _decimal.Decimal(repr(v))
    if not over:
        return obj
    return {**obj, **over} if isinstance(obj, dict) else _Overlay(obj, over)


# -- sharedbuffers' container type names ------------------------------------------------------------------
#
# sharedbuffers' mapped_* / proxied_* classes name field types in __slot_types__ (choosing between decoding a
# field and proxying it lazily) and pack single values with pack_into / unpack_from. Here each is a subclass
# of the builtin type it stands for: as a field type it means that builtin (mmstore decodes container fields
# on access, docs/design.md), and its pack_into / unpack_from store one codec value with a u32 length prefix.

_U32 = _struct.Struct("<I")


class _PackedValue:
    __slots__ = ()
    _builtin: type = object

    @classmethod
    def pack_into(cls, obj, buf, offset, idmap=None, implicit_offset=0) -> int:
        data = _encode(obj)
        return _put(buf, offset, _U32.pack(len(data)) + data)

    @classmethod
    def unpack_from(cls, buf, offset=0, idmap=None):
        mv = memoryview(buf)
        if offset < 0 or offset + 4 > len(mv):
            raise IndexError(f"unpack_from: offset {offset} is beyond the end of a {len(mv)}-byte buffer")
        (n,) = _U32.unpack_from(mv, offset)
        if offset + 4 + n > len(mv):
            raise IndexError(f"unpack_from: a {n}-byte value at offset {offset} runs past the end of the buffer")
        return _decode(bytes(mv[offset + 4:offset + 4 + n]))


def _packed(name, base):
    ns = {"_builtin": base}
    if base in (tuple, list, dict, frozenset, bytes, str):
        ns["__slots__"] = ()
    return type(name, (base, _PackedValue), ns)


mapped_tuple = _packed("mapped_tuple", tuple)
mapped_list = _packed("mapped_list", list)
mapped_dict = _packed("mapped_dict", dict)
mapped_frozenset = _packed("mapped_frozenset", frozenset)
mapped_bytes = _packed("mapped_bytes", bytes)
mapped_unicode = _packed("mapped_unicode", str)
_I64 = _struct.Struct("<q")
_U64 = _struct.Struct("<Q")
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_US = _dt.timedelta(microseconds=1)


def _put(buf, offset, data: bytes) -> int:
    """Writes ``data`` at ``offset``. A ``bytearray`` grows as needed (as sharedbuffers' packers let it);
    a fixed buffer (memoryview, mmap) too small for it raises ``IndexError``."""
    end = offset + len(data)
    if offset < 0 or (end > len(buf) and not isinstance(buf, bytearray)):
        raise IndexError(f"buffer too small: {len(data)} bytes at offset {offset} of a {len(buf)}-byte buffer")
    if offset > len(buf):
        buf.extend(bytes(offset - len(buf)))
    buf[offset:end] = data
    return end


class _FixedDateTime(_PackedValue):
    """Single datetimes as sharedbuffers packs them: 8 bytes, microseconds since the epoch (UTC). A naive
    datetime is taken as local time (``_naive_utc``: as UTC). They come back naive in the reader's local time
    zone (``mapped_datetime``), aware in UTC (``mapped_datetime_utc``) or aware in the reader's local time
    zone (``mapped_datetime_local``), as sharedbuffers' do."""

    __slots__ = ()
    _naive_utc = False
    _aware_local = False

    @classmethod
    def _utc(cls, obj) -> _dt.datetime:
        if obj.tzinfo is None:
            return obj.replace(tzinfo=_dt.timezone.utc) if cls._naive_utc else obj.astimezone()
        return obj

    @classmethod
    def pack_into(cls, obj, buf, offset, idmap=None, implicit_offset=0) -> int:
        return _put(buf, offset, _I64.pack((cls._utc(obj) - _EPOCH) // _US))

    @classmethod
    def _read(cls, buf, offset) -> _dt.datetime:
        (us,) = _I64.unpack_from(buf, offset)
        return _EPOCH + _dt.timedelta(microseconds=us)

    @classmethod
    def unpack_from(cls, buf, offset=0, idmap=None):
        utc = cls._read(buf, offset)
        if cls._naive_utc:
            return utc
        local = utc.astimezone()  # the time zone in effect now (TZ and time.tzset() are honoured)
        return local if cls._aware_local else local.replace(tzinfo=None)


_I64_I16 = _struct.Struct("<qh")
_OFFSET_TZ: dict = {}


def _offset_tz(minutes: int) -> _dt.tzinfo:
    """The fixed-offset zone sharedbuffers gives back: named "UTC+3", "UTC-6:30"... ("UTC" for no offset)."""
    tz = _OFFSET_TZ.get(minutes)
    if tz is None:
        if minutes:
            name = "UTC%+d" % (minutes // 60) + (":%02d" % (minutes % 60) if minutes % 60 else "")
            tz = _dt.timezone(_dt.timedelta(minutes=minutes), name)
        else:
            tz = _dt.timezone.utc
        tz = _OFFSET_TZ.setdefault(minutes, tz)
    return tz


class _FixedDateTimeTZ(_FixedDateTime):
    """Single datetimes with their UTC offset (``mapped_datetime_tz``): 8 bytes of microseconds since the epoch
    and a 2-byte offset in minutes; they come back aware, at the offset they were written with. A naive one is
    taken as UTC (``mapped_datetime_tz_local``: as local time)."""

    __slots__ = ()
    _naive_utc = True

    @classmethod
    def pack_into(cls, obj, buf, offset, idmap=None, implicit_offset=0) -> int:
        obj = cls._utc(obj)
        minutes = int(obj.utcoffset().total_seconds() // 60)
        return _put(buf, offset, _I64_I16.pack((obj - _EPOCH) // _US, minutes))

    @classmethod
    def unpack_from(cls, buf, offset=0, idmap=None):
        us, minutes = _I64_I16.unpack_from(buf, offset)
        return (_EPOCH + _dt.timedelta(microseconds=us)).astimezone(_offset_tz(minutes))


class _FixedDate(_PackedValue):
    """Single dates: 8 bytes, the proleptic Gregorian ordinal (independent of the time zone)."""

    __slots__ = ()

    @classmethod
    def pack_into(cls, obj, buf, offset, idmap=None, implicit_offset=0) -> int:
        return _put(buf, offset, _I64.pack(obj.toordinal()))

    @classmethod
    def unpack_from(cls, buf, offset=0, idmap=None):
        return _dt.date.fromordinal(_I64.unpack_from(buf, offset)[0])


class _RawBuffer(_PackedValue):
    """Single buffers: a u64 length and the raw bytes; unpacked as a read-only view of ``buf``."""

    __slots__ = ()

    @classmethod
    def pack_into(cls, obj, buf, offset, idmap=None, implicit_offset=0) -> int:
        data = memoryview(obj).cast("B") if memoryview(obj).c_contiguous else memoryview(obj).tobytes()
        return _put(buf, offset, _U64.pack(len(data)) + bytes(data))

    @classmethod
    def unpack_from(cls, buf, offset=0, idmap=None):
        (n,) = _U64.unpack_from(buf, offset)
        return memoryview(buf)[offset + 8:offset + 8 + n].toreadonly()


mapped_date = type("mapped_date", (_dt.date, _FixedDate), {"_builtin": _dt.date})
mapped_datetime = type("mapped_datetime", (_dt.datetime, _FixedDateTime), {"_builtin": _dt.datetime})
mapped_datetime_utc = type("mapped_datetime_utc", (_dt.datetime, _FixedDateTime),
                           {"_builtin": _dt.datetime, "_naive_utc": True})
mapped_datetime_local = type("mapped_datetime_local", (_dt.datetime, _FixedDateTime),
                             {"_builtin": _dt.datetime, "_aware_local": True})
mapped_datetime_tz = type("mapped_datetime_tz", (_dt.datetime, _FixedDateTimeTZ), {"_builtin": _dt.datetime})
mapped_datetime_tz_local = type("mapped_datetime_tz_local", (_dt.datetime, _FixedDateTimeTZ),
                                {"_builtin": _dt.datetime, "_naive_utc": False})
mapped_decimal = _packed("mapped_decimal", _decimal.Decimal)
class _ProxiedSeq(tuple):
    """What ``proxied_list`` / ``proxied_tuple`` ``unpack_from`` return, as sharedbuffers' proxies behave: a
    read-only sequence (item assignment raises ``TypeError``) equal to any list or tuple with the same items,
    ordered against other sequences only (``NotImplementedError`` otherwise), ``iter(mask=)``, and a compact
    repr naming the packer."""

    __slots__ = ()
    _name = "proxied_list"
    _brackets = "[]"

    def _cmp_items(self, other):
        if isinstance(other, (list, tuple)):
            return tuple(self), tuple(other)
        raise NotImplementedError(f"cannot compare {self._name} with {type(other).__name__}")

    def __eq__(self, other):
        return isinstance(other, (list, tuple)) and tuple(self) == tuple(other)

    def __ne__(self, other):
        return not self == other

    __hash__ = tuple.__hash__

    def __lt__(self, other):
        a, b = self._cmp_items(other)
        return a < b

    def __le__(self, other):
        a, b = self._cmp_items(other)
        return a <= b

    def __gt__(self, other):
        a, b = self._cmp_items(other)
        return a > b

    def __ge__(self, other):
        a, b = self._cmp_items(other)
        return a >= b

    def __getitem__(self, index):
        r = tuple.__getitem__(self, index)
        return type(self)(r) if isinstance(index, slice) else r

    def __setitem__(self, index, value):
        raise TypeError(f"{self._name} is read-only")

    def __delitem__(self, index):
        raise TypeError(f"{self._name} is read-only")

    def iter(self, mask=None, proxy_into=None):
        if mask is None:
            return iter(self)
        return (x for x, m in zip(self, mask) if m)

    iter_fast = iter

    def getter(self, proxy_into=None, fast=False):
        return self.__getitem__

    def __str__(self):
        o, c = self._brackets
        return o + ",".join(repr(x) for x in self) + ("," if c == ")" and len(self) == 1 else "") + c

    def __repr__(self):
        return f"{self._name}({self})"


class _ProxiedListView(_ProxiedSeq):
    __slots__ = ()


class _ProxiedTupleView(_ProxiedSeq):
    __slots__ = ()
    _name = "proxied_tuple"
    _brackets = "()"


def _proxied(name, base, view):
    def unpack_from(cls, buf, offset=0, idmap=None):
        return view(_PackedValue.unpack_from.__func__(cls, buf, offset, idmap))

    return type(name, (base, _PackedValue), {"__slots__": (), "_builtin": base,
                                              "unpack_from": classmethod(unpack_from)})


proxied_tuple = _proxied("proxied_tuple", tuple, _ProxiedTupleView)
proxied_list = _proxied("proxied_list", list, _ProxiedListView)
proxied_dict = _packed("proxied_dict", dict)
proxied_frozenset = _packed("proxied_frozenset", frozenset)
proxied_buffer = type("proxied_buffer", (bytes, _RawBuffer), {"__slots__": (), "_builtin": bytes})


def _dtype_params(cls, dtype):
    """``proxied_ndarray._make_dtype_params``: a plain description numpy turns back into ``dtype``, its type
    string or, for a structured dtype, a (name, description) pair per field."""
    if dtype.names:
        return [(name, _dtype_params(cls, dtype.fields[name][0])) for name in dtype.names]
    return dtype.str


def __getattr__(name):
    if name == "proxied_ndarray":  # numpy is imported only when asked for
        import numpy

        globals()[name] = cls = _packed("proxied_ndarray", numpy.ndarray)
        cls._make_dtype_params = classmethod(_dtype_params)
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _translate(t):
    if t in _REGISTERED:
        return _REGISTERED[t]._schema
    if isinstance(t, Schema):
        return t._schema
    if isinstance(t, type) and issubclass(t, _PackedValue):
        return t._builtin
    if t in (memoryview, bytearray):  # sharedbuffers' ``buffer`` slots hold bytes
        return bytes
    return t


class Schema:
    """A sharedbuffers-style schema over an mmstore :class:`mmstore.Schema` (``.native``)."""

    def __init__(self, native: _Schema, cls=None, user_data=None) -> None:
        _arm(native)  # hasattr(proxy, f) is False for an unset field
        self._schema = native
        self._cls = cls
        self.user_data = user_data

    @classmethod
    def from_typed_slots(cls, struct_class_or_slot_types, *p, user_data=None, **kw) -> Schema:
        if isinstance(struct_class_or_slot_types, dict):
            slot_types, klass = struct_class_or_slot_types, None
        else:
            klass = struct_class_or_slot_types
            slot_types = klass.__slot_types__
        fields = [(name, _translate(t)) for name, t in sorted(slot_types.items())]
        name = klass.__name__ if klass is not None else "Struct"
        if _fixed_indexes(_Schema(fields, name=name)):
            fields.append((_NONE_FIELD, object))
        native = _Schema(fields, name=name, factory=klass,
                         construct=_constructor(klass) if klass is not None else None)
        return cls(native, klass, user_data)

    def __reduce__(self):
        cls = self._cls
        if cls is not None and "<locals>" in getattr(cls, "__qualname__", ""):
            cls = None  # not importable: the unpickled schema reads the same bytes, with plain proxies
        return (_schema_from_blob, (self._schema.blob, cls, self.user_data))

    def set_proxy_bases(self, bases) -> None:
        """sharedbuffers lets proxies inherit behaviour from ``bases``; here unpacked proxies gain those
        classes' methods (a proxy class deriving from them), keeping their read-only field access."""
        native = self._schema
        proxy = type(native.proxy_class.__name__, (native.proxy_class, *tuple(bases)), {"__slots__": ()})
        native.proxy_class = proxy
        native._native.bind(proxy, _records._coerce, native.factory)

    @property
    def native(self) -> _Schema:
        return self._schema

    @property
    def slot_keys(self):
        return tuple(n for n in self._schema.names if n != _NONE_FIELD)

    def pack(self, obj, idmap=None, packer=None, padding=None, implicit_offset=0) -> bytearray:
        """``idmap`` (sharedbuffers' per-build dedup table) is accepted and unused: mmstore deduplicates
        equal values itself when building arrays and mappings."""
        return bytearray(self._schema.pack(_masked(self._schema, obj)))

    def pack_into(self, obj, buf, offset: int = 0, idmap=None, implicit_offset: int = 0) -> int:
        return offset + self._schema.pack_into(_masked(self._schema, obj), buf, offset)

    def unpack_from(self, buf, offset: int = 0, idmap=None, factory_class_new=None, proxy_into=None):
        return self._schema.unpack_from(buf, offset)

    def unpack(self, buf, idmap=None, factory_class_new=None, proxy_into=None):
        return self._schema.unpack_from(buf, 0)

    def compatible(self, other) -> bool:
        """True when ``other`` reads the same bytes the same way (equal mmstore schemas)."""
        return isinstance(other, Schema) and other._schema == self._schema

    @property
    def ProxyClass(self) -> type:
        return self._schema.proxy_class

    @property
    def Proxy(self):
        """sharedbuffers passes ``schema.Proxy()`` as ``proxy_into`` to reuse one proxy; mmstore proxies are
        cheap and ignore it, so this returns a placeholder factory."""
        return lambda *a, **k: None

    def __eq__(self, other) -> bool:
        return isinstance(other, Schema) and other._schema == self._schema

    __hash__ = object.__hash__


def _schema_from_blob(blob, cls, user_data):
    native = _Schema.from_blob(blob)
    if cls is not None:
        native = _Schema(list(native.fields.items()), name=native.name, type_code=native.type_code, factory=cls,
                         construct=_constructor(cls))
    return Schema(native, cls, user_data)


def _code_bytes(typecode) -> bytes:
    return bytes([_typecode_number(typecode) & 0xFF])


class _Packable:
    """What ``mapped_object.OBJ_PACKERS[code][2]`` holds for a registered schema (sharedbuffers'
    ``mapped_object_with_schema``): ``schema``, ``pack_into`` and ``unpack_from``."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    def pack_into(self, obj, buf, offset, idmap=None, implicit_offset=0):
        return self.schema.pack_into(obj, buf, offset)

    def unpack_from(self, buf, offset=0, idmap=None):
        return self.schema.unpack_from(buf, offset)


class mapped_object:
    """Registry of typed classes (``mapped_object.register_schema``), as in sharedbuffers: ``TYPE_CODES``
    maps each registered class to its one-byte code; ``PACKERS`` names the codes of the builtin scalar types
    (code -> mmstore field type) and ``OBJ_PACKERS`` those of the container types and registered schemas
    (code -> (pack_into, unpack_from, type)). A code already taken raises ``ValueError`` on registration."""

    TYPE_CODES: dict = {}
    PACKERS: dict = {
        b"B": _records.uint8, b"b": _records.int8, b"H": _records.uint16, b"h": _records.int16,
        b"I": _records.uint32, b"i": _records.int32, b"Q": _records.uint64, b"q": _records.int64,
        b"d": _records.float64, b"f": _records.float32, b"T": bool,
    }
    OBJ_PACKERS: dict = {}

    @classmethod
    def register_schema(cls, typ, schema: Schema, typecode):
        codeb = _code_bytes(typecode)
        if typ in cls.TYPE_CODES:
            if cls.TYPE_CODES[typ] != codeb or getattr(cls.OBJ_PACKERS.get(codeb, (0, 0, None))[2], "schema",
                                                       None) is not schema:
                raise ValueError(f"registering different types with the same typecode {codeb!r}: "
                                 f"{cls.TYPE_CODES[typ]!r} vs {typ!r}")
            return cls.OBJ_PACKERS[codeb][2]
        if codeb in cls.PACKERS:
            raise ValueError(f"registering type {typ!r} with typecode {codeb!r} conflicts with a builtin type")
        if codeb in cls.OBJ_PACKERS and getattr(cls.OBJ_PACKERS[codeb][2], "schema", None) is not schema:
            raise ValueError(f"registering type {typ!r} with typecode {codeb!r} conflicts with previously "
                             f"registered {cls.OBJ_PACKERS[codeb][2]!r}")
        code = _typecode_number(typecode)
        native = schema._schema
        if native.type_code != code:
            native = _Schema([(n, t if not isinstance(t, _Schema) else t) for n, t in native.fields.items()],
                             name=native.name, type_code=code, factory=typ, construct=_constructor(typ))
            _arm(native)
            schema._schema = native
        if _records._TYPES_BY_CODE.get(code) not in (None, native):
            _records._TYPES_BY_CODE.pop(code)  # sharedbuffers re-registers a code freed from its registry
        _records.register_type(native)
        # Instances nested in values (lists, object fields) pack through the codec's record hook: give it the
        # same None mask and casts as a top-level pack.
        _codec.register_record_type(native.factory, code, lambda o, n=native: n.pack(_masked(n, o)))
        _REGISTERED[typ] = schema
        packable = _Packable(schema)
        cls.TYPE_CODES[typ] = codeb
        cls.OBJ_PACKERS[codeb] = (packable.pack_into, packable.unpack_from, packable)
        return packable


def _builtin_obj_packers():
    import sys

    mod = sys.modules[__name__]
    for code, name in ((b"Z", "mapped_frozenset"), (b"t", "mapped_tuple"), (b"e", "mapped_list"),
                       (b"s", "mapped_bytes"), (b"u", "mapped_unicode"), (b"m", "mapped_dict"),
                       (b"r", "proxied_buffer"), (b"W", "proxied_tuple"), (b"E", "proxied_list"),
                       (b"v", "mapped_datetime"), (b"V", "mapped_date"), (b"F", "mapped_decimal"),
                       (b"M", "proxied_dict"), (b"z", "proxied_frozenset")):
        t = getattr(mod, name)
        mapped_object.OBJ_PACKERS[code] = (t.pack_into, t.unpack_from, t)


_builtin_obj_packers()


# ---------------------------------------------------------------------------------------------------------
# Files


def _fd_path(fileobj) -> str:
    return f"/proc/self/fd/{fileobj.fileno()}"


def _build_into(destfile, tempdir, write):
    """Runs ``write(path)`` on a temporary path, then places the image: copied into ``destfile`` at its
    position (returns (fileobj, offset)) or, without one, kept in an unlinked temporary file."""
    fd, tmp = _tempfile.mkstemp(dir=tempdir, prefix="mmstore-sb-")
    _os.close(fd)
    _os.unlink(tmp)
    try:
        write(tmp)
        if destfile is None:
            f = open(tmp, "rb")
            return f, 0
        if isinstance(destfile, (str, _os.PathLike)):
            _os.replace(tmp, destfile)
            return open(destfile, "rb"), 0
        offset = destfile.tell()
        with open(tmp, "rb") as src:
            _shutil.copyfileobj(src, destfile, 1 << 20)
        destfile.flush()
        return destfile, offset
    finally:
        if _os.path.exists(tmp):
            _os.unlink(tmp)


def _map(factory, fileobj, offset=0, size=None):
    if isinstance(fileobj, (str, _os.PathLike)):
        return factory(_os.fspath(fileobj), offset=offset, length=size or 0)
    try:
        fileobj.fileno()
    except (AttributeError, _io.UnsupportedOperation):
        # No descriptor (BytesIO, a zip member opened for reading): read the image into memory.
        fileobj.seek(offset)
        data = fileobj.read(size) if size else fileobj.read()
        return factory(buffer=data)
    return factory(_fd_path(fileobj), offset=offset, length=size or 0)


def _str_key(key):
    """sharedbuffers' string mappers key by bytes: a str is its UTF-8 bytes, so str and bytes are one key,
    and keys come back as bytes."""
    if isinstance(key, str):
        return key.encode("utf-8", "surrogateescape")
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    return key


def _same_key(key):
    return key


def _normalized(items, norm):
    """``items`` with their keys normalized for the native builder (``items`` itself when keys are kept)."""
    if norm is _same_key:
        return items
    # _str_key inlined for the common str key: sharedbuffers' suite builds string mappers of 10 million keys.
    return ((k.encode("utf-8", "surrogateescape") if type(k) is str else norm(k), v) for k, v in items)


def _multi_get(get_all):
    def get(key, default=None):
        return get_all(key, default)

    return get


def _fast_lookups(obj, mapping: Mapping, key, multi: bool, base: type) -> None:
    """Lookups of ``obj`` go straight to the native mapping: str keys are normalized in C++ (string mappers),
    and ``obj.get`` becomes the native ``get`` (a multi-map's ``get_all`` with a default) unless a subclass
    overrides it. sharedbuffers' suite does tens of millions of lookups; a Python wrapper around each one
    tripled their cost."""
    if key is _str_key:
        mapping._str_keys_as_bytes(True)
    if type(obj).get is base.get:
        obj.get = _multi_get(mapping.get_all) if multi else mapping.get


# sharedbuffers' base class of record proxies. mmstore's proxies are mmstore.RecordProxy instances; unlike
# sharedbuffers' they are not reused between items (``proxy_into`` is ignored), so ``x is previous`` is False.
BufferProxyObject = _records.RecordProxy


class MappedArrayProxyBase:
    """Subclass with ``schema = Schema.from_typed_slots(...)``; ``build`` / ``map_file`` / ``map_buffer``
    return an instance (a sequence of record proxies)."""

    schema: Schema | None = None
    # sharedbuffers' per-class file versions. mmstore files carry the engine's format version in their header
    # (a newer one is refused with UnsupportedVersionError); these class attributes do not change the file.
    _CURRENT_VERSION = 2
    _CURRENT_MINIMUM_READER_VERSION = 2

    def __init__(self, array: RecordArray) -> None:
        self._array = array

    @classmethod
    def build(cls, initializer, destfile=None, tempdir=None, idmap=None, return_mapper=True, read_only=True):
        native = cls.schema._schema
        f, off = _build_into(destfile, tempdir,
                             lambda p: RecordArray.build((_masked(native, x) for x in initializer), p, schema=native,
                                                         progress=False))
        return cls.map_file(f, off) if return_mapper else None

    @classmethod
    def _native_schema(cls):
        return cls.schema._schema if cls.schema is not None else None  # None: the schema stored in the file

    @classmethod
    def map_file(cls, fileobj, offset=0, size=None, read_only=True):
        return cls(_map(lambda *a, **k: RecordArray(*a, schema=cls._native_schema(), **k), fileobj, offset, size))

    @classmethod
    def map_buffer(cls, buf, offset=0):
        return cls(RecordArray.from_buffer(memoryview(buf)[offset:], schema=cls._native_schema()))

    def __getitem__(self, pos):
        return self._array[pos]

    def __len__(self) -> int:
        return len(self._array)

    def __iter__(self):
        return iter(self._array)

    def iter_fast(self, mask=None):
        if mask is None:
            return iter(self._array)
        return (x for x, m in zip(self._array, mask) if m)

    def getter(self, proxy_into=None, no_idmap=False):
        return self._array.__getitem__

    def clear_cache(self):
        pass

    @property
    def native(self) -> RecordArray:
        return self._array


class _Digest:
    __slots__ = ("_v",)

    def __init__(self, v: int) -> None:
        self._v = v

    def intdigest(self) -> int:
        return self._v


def _xxh(data) -> _Digest:
    """``id_mapper.xxh(id_mapper.encode(key)).intdigest()``: the 64-bit hash an approximate mapper stores for
    ``key`` (mmstore's key hash of the key's encoding, docs/format.md), which its ``iteritems`` yields."""
    return _Digest(_hash64(bytes(data)))


class _IdMapperBase:
    """Keys to integer ids (``build`` from (key, id) pairs)."""

    key_type: object = object
    multi = False
    approximate = False
    value_type = _records.uint64
    _key = staticmethod(_same_key)
    @staticmethod
    def xxh(data: Any) -> _Digest:
        return _xxh(data)

    def __init__(self, mapping: Mapping, buf=None) -> None:
        self._m = mapping
        self._buf = buf
        self._src = None
        _fast_lookups(self, mapping, self._key, self.multi, _IdMapperBase)

    @classmethod
    def encode(cls, key) -> bytes:
        """The bytes a key is hashed on (mmstore's codec encoding of the normalized key)."""
        return _encode(cls._key(key))

    @classmethod
    def _build_native(cls, items, path):
        return Mapping.build(_normalized(items, cls._key), path, key=cls.key_type, value=cls.value_type,
                             multi=cls.multi, approximate=cls.approximate, progress=False)

    @classmethod
    def build(cls, initializer, destfile=None, tempdir=None, return_mapper=True, read_only=True,
              discard_duplicates=False, discard_duplicate_keys=False, **kw):
        """``discard_duplicates`` / ``discard_duplicate_keys`` are accepted: repeated (key, id) pairs are
        stored once by mmstore's value dedup, and a non-multi mapper keeps one id per key anyway."""
        if hasattr(initializer, "items") and callable(initializer.items):
            initializer = initializer.items()
        f, off = _build_into(destfile, tempdir, lambda p: cls._build_native(initializer, p))
        return cls.map_file(f, off) if return_mapper else None

    @classmethod
    def merge(cls, parts, destfile=None, tempdir=None, **kw):
        """One mapper holding every (key, id) of ``parts`` (sharedbuffers' ``merge`` classmethod); a later
        part wins for a key in several unless the mapper is multi."""
        parts = list(parts)
        if not parts:
            return cls.build([], destfile=destfile, tempdir=tempdir)
        tmpdir = _tempfile.mkdtemp(dir=tempdir, prefix="mmstore-sb-merge-")
        try:
            acc = parts[0]._m
            for i, p in enumerate(parts[1:-1]):  # pairwise, natively (keys of approximate maps are hashes)
                acc = Mapping.merge(acc, p._m, _os.path.join(tmpdir, f"{i}.mms"))
            last = parts[-1]._m if len(parts) > 1 else None
            f, off = _build_into(destfile, tempdir,
                                 lambda path: Mapping.merge(acc, last, path) if last is not None
                                 else _shutil.copyfile(acc.path, path) if acc.path != "<buffer>"
                                 else cls._build_native(parts[0].iteritems(), path))
            return cls.map_file(f, off)
        finally:
            _shutil.rmtree(tmpdir, ignore_errors=True)

    @classmethod
    def map_file(cls, fileobj, offset=0, size=None, read_only=True):
        self = cls(_map(Mapping, fileobj, offset, size))
        self._src = (fileobj, offset, size)
        return self

    @classmethod
    def map_buffer(cls, buf, offset=0):
        return cls(Mapping.from_buffer(memoryview(buf)[offset:]), memoryview(buf)[offset:])

    @property
    def buf(self):
        """The bytes of the mapped image (read from its file when it was mapped from one)."""
        if self._buf is None:
            self._buf = _image_bytes(*self._src)
        return self._buf

    def copy(self):
        """An independent in-memory copy of the mapper (its own, writable buffer)."""
        return type(self).map_buffer(bytearray(self.buf))

    @property
    def _index_data(self):
        """sharedbuffers' (n, 2) index array as far as mmstore's index gives it: column -1 (or 1) is a numpy
        view of the ids in entry order, writable on a :meth:`copy` (``m.copy()._index_data[:, -1] += 1``
        changes the copy's ids), read-only otherwise. Column 0 (sharedbuffers' key hashes) has no equivalent:
        mmstore's index stores keys and hashes in another layout (docs/format.md §8.4)."""
        import numpy

        off, width, _ = self._m.column_info(0)
        buf = self._buf
        src = buf if isinstance(buf, memoryview) and not buf.readonly else self._m
        ids = numpy.frombuffer(src, dtype=numpy.dtype(f"<u{width}"), count=len(self._m), offset=off)
        return _IdColumn(ids)

    def __getitem__(self, key):
        if self.multi:
            vals = self._m.get_all(self._key(key))
            if not vals:
                raise KeyError(key)
            return vals
        return self._m[self._key(key)]

    def get(self, key, default=None):  # (instances use the native lookup directly: _fast_lookups)
        if self.multi:
            return self._m.get_all(self._key(key), default)
        return self._m.get(self._key(key), default)

    def get_iter(self, key):
        return iter(self._m.get_all(self._key(key)))

    def __contains__(self, key) -> bool:
        return self._key(key) in self._m

    def __len__(self) -> int:
        return len(self._m)

    def __iter__(self):
        return iter(self.iterkeys())

    def keys(self):
        return list(self.iterkeys())

    def iterkeys(self):
        if self.approximate:
            return (k for k, _ in self.iteritems())
        return self._m.keys()

    def values(self):
        return list(self._m.values())

    def itervalues(self):
        return self._m.values()

    def iteritems(self, make_sequential=False):
        return _items(self._m)

    def items(self):
        return list(self.iteritems())

    @property
    def native(self) -> Mapping:
        return self._m


class _IdColumn:
    """``mapper._index_data``: indexing ``[rows, -1]`` (or ``[rows, 1]``) reads and writes the ids."""

    __slots__ = ("_ids",)

    def __init__(self, ids) -> None:
        self._ids = ids

    def _rows(self, index):
        if isinstance(index, tuple) and len(index) == 2 and index[1] in (1, -1):
            return index[0]
        raise NotImplementedError("_index_data: only the id column ([:, -1]) exists in mmstore's index; "
                                  "sharedbuffers' key-hash column has no equivalent")

    def __getitem__(self, index):
        return self._ids[self._rows(index)]

    def __setitem__(self, index, value) -> None:
        self._ids[self._rows(index)] = value

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def shape(self) -> tuple:
        return (len(self._ids), 2)


def _items(m: Mapping):
    """(key, value) per entry; an approximate mapping yields its key hashes, as sharedbuffers' do."""
    if m.approximate:
        return ((m.entry_hash(e), m.entry_value(e)) for e in range(len(m)))
    return m.items()


def _image_bytes(fileobj, offset, size) -> bytes:
    if isinstance(fileobj, (str, _os.PathLike)):
        with open(fileobj, "rb") as f:
            f.seek(offset)
            return f.read(size) if size else f.read()
    return _os.pread(fileobj.fileno(), size or (_os.fstat(fileobj.fileno()).st_size - offset), offset)


class StringIdMapper(_IdMapperBase):
    key_type = object  # bytes keys (str keys are their UTF-8 bytes)
    _key = staticmethod(_str_key)


class StringId32Mapper(StringIdMapper):
    value_type = _records.uint32


class NumericIdMapper(_IdMapperBase):
    key_type = int


class NumericId32Mapper(NumericIdMapper):
    value_type = _records.uint32


class ObjectIdMapper(_IdMapperBase):
    key_type = object


class StringIdMultiMapper(StringIdMapper):
    multi = True


class StringId32MultiMapper(StringIdMultiMapper):
    value_type = _records.uint32


class NumericIdMultiMapper(NumericIdMapper):
    multi = True


class NumericId32MultiMapper(NumericIdMultiMapper):
    value_type = _records.uint32


class ApproxStringIdMultiMapper(StringIdMultiMapper):
    approximate = True


class ApproxStringId32MultiMapper(ApproxStringIdMultiMapper):
    value_type = _records.uint32


class MappedMappingProxyBase:
    """Subclass with ``IdMapper`` (one of the id mappers above) and ``ValueArray`` (a
    :class:`MappedArrayProxyBase` subclass): keys map to record proxies."""

    IdMapper: type = StringIdMapper
    ValueArray: type | None = None
    _multi = False

    def __init__(self, mapping: Mapping) -> None:
        self._m = mapping
        _fast_lookups(self, mapping, self.IdMapper._key, self._multi,
                      MappedMultiMappingProxyBase if self._multi else MappedMappingProxyBase)

    @property
    def id_mapper(self):
        """The key side of the mapping as an ``IdMapper`` (``xxh``/``encode`` name its key hash; lookups
        return the values, since mmstore stores them in the same image)."""
        return self.IdMapper(self._m)

    @classmethod
    def build(cls, initializer, destfile=None, tempdir=None, idmap=None, value_array_kwargs=None,
              id_mapper_kwargs=None, value_cache_size=1024):
        if hasattr(initializer, "items") and callable(initializer.items):
            initializer = initializer.items()
        idm = cls.IdMapper
        multi = cls._multi or idm.multi
        norm = idm._key

        native = cls.ValueArray.schema._schema

        def write(p):
            Mapping.build(((norm(k), _masked(native, v)) for k, v in initializer), p, key=idm.key_type,
                          schema=native, multi=multi, approximate=idm.approximate, progress=False)

        f, off = _build_into(destfile, tempdir, write)
        return cls.map_file(f, off)

    @classmethod
    def map_file(cls, fileobj, offset=0, size=None, read_only=True):
        return cls(_map(lambda *a, **k: Mapping(*a, schema=cls.ValueArray.schema._schema, **k), fileobj, offset,
                        size))

    @classmethod
    def map_buffer(cls, buf, offset=0):
        return cls(Mapping.from_buffer(memoryview(buf)[offset:], schema=cls.ValueArray.schema._schema))

    def __getitem__(self, key):
        return self._m[self.IdMapper._key(key)]

    def get(self, key, default=None):
        return self._m.get(self.IdMapper._key(key), default)

    def get_iter(self, key):
        return iter(self._m.get_all(self.IdMapper._key(key)))

    def __contains__(self, key) -> bool:
        return self.IdMapper._key(key) in self._m

    def __len__(self) -> int:
        return len(self._m)

    def __iter__(self):
        return iter(self.iterkeys())

    def keys(self):
        return list(self.iterkeys())

    def iterkeys(self):
        if self._m.approximate:
            return (k for k, _ in self.iteritems())
        return self._m.keys()

    def values(self):
        return list(self._m.values())

    def itervalues(self):
        return self._m.values()

    def iteritems(self, g_kw=None, idm_kw=None):
        return _items(self._m)

    def items(self):
        return list(self.iteritems())

    @property
    def native(self) -> Mapping:
        return self._m


class MappedMultiMappingProxyBase(MappedMappingProxyBase):
    """Multi-mapping: every value of a key, as a list."""

    _multi = True

    def __getitem__(self, key):
        vals = self._m.get_all(self.IdMapper._key(key))
        if not vals:
            raise KeyError(key)
        return vals

    def get(self, key, default=None):
        return self._m.get_all(self.IdMapper._key(key), default)


# The Python-2 name some sharedbuffers code still uses in __slot_types__.
unicode = str
