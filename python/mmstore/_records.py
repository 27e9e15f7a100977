"""Typed records: schemas, record proxies, RecordArray and Mapping (the sharedbuffers face).

Declaring a schema::

    @mmstore.struct
    class Point:
        x: mmstore.int32
        y: float
        name: str
        tags: frozenset
        extra: object

    Point.__schema__.pack(Point(1, 2.0, "a", frozenset(), None))   # bytes
    Schema.from_fields({"x": mmstore.int32, "y": float})            # the dynamic form

Records are read through proxies: ``schema.unpack_from(buf, offset)``, ``array[i]`` and ``mapping[key]`` return
objects whose attributes are read straight from the stored bytes (fixed-width fields by offset, variable
fields decoded from one codec value each). ``.copy()`` / :func:`clone` give real objects.

The native parts (packing loops, proxies, lookups) live in python/bindings/records.cpp; the file layouts in
docs/format.md §8.
"""

from __future__ import annotations

import collections.abc as _abc
import dataclasses as _dc
import datetime as _dt
import decimal as _decimal
import os as _os
import sys as _sys
import typing as _typing
import zipfile as _zipfile

from . import _codec, _core
from ._errors import CorruptFileError, Error, SchemaMismatchError

__all__ = [
    "struct",
    "Schema",
    "RecordArray",
    "Mapping",
    "RecordProxy",
    "clone",
    "register_type",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
]


class FieldType:
    """A field type marker usable in annotations (``x: mmstore.int32``)."""

    __slots__ = ("name", "code", "dtype")

    def __init__(self, name: str, code: int, dtype: str | None = None) -> None:
        self.name, self.code, self.dtype = name, code, dtype

    def __repr__(self) -> str:
        return f"mmstore.{self.name}"


int8 = FieldType("int8", 1, "<i1")
int16 = FieldType("int16", 2, "<i2")
int32 = FieldType("int32", 3, "<i4")
int64 = FieldType("int64", 4, "<i8")
uint8 = FieldType("uint8", 5, "<u1")
uint16 = FieldType("uint16", 6, "<u2")
uint32 = FieldType("uint32", 7, "<u4")
uint64 = FieldType("uint64", 8, "<u8")
float32 = FieldType("float32", 9, "<f4")
float64 = FieldType("float64", 10, "<f8")
_bool = FieldType("bool", 11, "?")
_bytes = FieldType("bytes", 32)
_str = FieldType("str", 33)
_date = FieldType("date", 34)
_datetime = FieldType("datetime", 35)
_decimal_t = FieldType("Decimal", 36)
_tuple = FieldType("tuple", 37)
_list = FieldType("list", 38)
_dict = FieldType("dict", 39)
_frozenset = FieldType("frozenset", 40)
_ndarray = FieldType("ndarray", 41)
_object = FieldType("object", 42)
_RECORD = 43

_BY_CODE = {t.code: t for t in (int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64, _bool,
                                _bytes, _str, _date, _datetime, _decimal_t, _tuple, _list, _dict, _frozenset,
                                _ndarray, _object)}
_BY_PYTYPE = {
    int: int64, float: float64, bool: _bool, bytes: _bytes, str: _str, _dt.date: _date, _dt.datetime: _datetime,
    _decimal.Decimal: _decimal_t, tuple: _tuple, list: _list, dict: _dict, frozenset: _frozenset, set: _frozenset,
    object: _object, _typing.Any: _object,
}
_BY_NAME = {t.name: t for t in _BY_CODE.values()}


def _field_type(annotation, owner_name: str, field: str):
    """(code, nested Schema or None) of an annotation."""
    if isinstance(annotation, str):  # from __future__ import annotations
        if annotation in _BY_NAME:
            t = _BY_NAME[annotation]
            return t.code, None
        try:
            annotation = eval(annotation, vars(_sys.modules.get(owner_name, _sys)), {})  # noqa: S307
        except Exception as exc:
            raise TypeError(f"field '{field}': cannot resolve annotation {annotation!r}") from exc
    if isinstance(annotation, FieldType):
        return annotation.code, None
    if isinstance(annotation, Schema):
        return _RECORD, annotation
    schema = getattr(annotation, "__schema__", None)
    if isinstance(schema, Schema):
        return _RECORD, schema
    origin = _typing.get_origin(annotation)
    if origin is _typing.Union:
        args = [a for a in _typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _field_type(args[0], owner_name, field)
        return _object.code, None
    if origin is not None:
        annotation = origin
    if annotation in _BY_PYTYPE:
        return _BY_PYTYPE[annotation].code, None
    if getattr(annotation, "__name__", "") == "ndarray":
        return _ndarray.code, None
    raise TypeError(f"field '{field}': unsupported field type {annotation!r}")


def _coerce(code: int, value):
    """Called by the packer when a value is not of its field's exact type: convert or raise TypeError."""
    t = _BY_CODE.get(code)
    try:
        if code == _tuple.code and isinstance(value, _abc.Iterable) and not isinstance(value, (str, bytes)):
            return tuple(value)
        if code == _list.code and isinstance(value, _abc.Iterable) and not isinstance(value, (str, bytes)):
            return list(value)
        if code == _frozenset.code and isinstance(value, _abc.Iterable) and not isinstance(value, (str, bytes)):
            return frozenset(value)
        if code == _dict.code and isinstance(value, _abc.Mapping):
            return dict(value)
        if code == _bytes.code and isinstance(value, (bytearray, memoryview)):
            return bytes(value)
        if code == _str.code and isinstance(value, str):
            return str(value)
        if code == _decimal_t.code and isinstance(value, (int, str, _decimal.Decimal)):
            return _decimal.Decimal(value)
        if code == _date.code and type(value) is not _dt.datetime and isinstance(value, _dt.date):
            return _dt.date(value.year, value.month, value.day)
        if code == _datetime.code and isinstance(value, _dt.datetime):
            return _dt.datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                                value.microsecond, value.tzinfo, fold=value.fold)
        if code == _ndarray.code:
            import numpy as np

            return np.asarray(value)
    except (TypeError, ValueError, _decimal.InvalidOperation) as exc:
        raise TypeError(f"cannot store {type(value).__name__} in a {t.name if t else code} field: {exc}") from exc
    raise TypeError(f"a {t.name if t else code} field cannot hold a value of type {type(value).__name__}")


# ---------------------------------------------------------------------------------------------------------
# Proxies


class _ProxyMixin:
    """Python-level behaviour shared by every record proxy class (the fields are C descriptors)."""

    __slots__ = ()
    _schema: Schema

    def copy(self):
        """The record as a real object of its struct class (nested records and containers copied too)."""
        return self._schema._make(self._values())

    def _asdict(self) -> dict:
        return dict(zip(self._schema.names, self._values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={v!r}" for n, v in zip(self._schema.names, self._values()))
        return f"{self._schema.name}Proxy({inner})"

    def __eq__(self, other):
        if isinstance(other, RecordProxy):
            return other._schema == self._schema and other._values() == self._values()
        if isinstance(other, self._schema.factory):
            return self._values() == tuple(getattr(other, n, None) for n in self._schema.names)
        return NotImplemented

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    __hash__ = None  # records hold mutable containers; hash their .copy() fields if needed

    def __reduce__(self):
        return (_unpickle_record, (self._schema.blob, self._row()))

    def __setattr__(self, name, value):
        raise AttributeError("record proxies are read-only (use .copy() for a mutable object)")


RecordProxy = _core.RecordProxy


def _unpickle_record(blob: bytes, row: bytes):
    return Schema.from_blob(blob).unpack_from(row)


def clone(value):
    """A real Python object for a proxy (recursively); other values are returned as they are."""
    if isinstance(value, RecordProxy):
        return value.copy()
    return value


# ---------------------------------------------------------------------------------------------------------
# Schema

_TYPES_BY_CODE: dict[int, Schema] = {}  # registered record types (object fields may hold them)


class Schema:
    """An ordered set of typed fields; packs objects and reads packed records through proxies."""

    def __init__(self, fields, name: str = "Record", type_code: int = 0, factory=None, construct=None) -> None:
        """``fields``: iterable of (name, type) where type is an annotation-style type (see :func:`struct`).

        ``factory``: the class whose instances this schema describes (``.copy()`` builds one; proxies compare
        equal to its instances); ``construct(**fields)`` builds one when its constructor does not take the
        fields as keywords."""
        specs = []
        for fname, ftype in fields:
            if not isinstance(fname, str) or not fname.isidentifier():
                raise ValueError(f"field name {fname!r} is not an identifier")
            code, nested = (ftype, None) if isinstance(ftype, int) else _field_type(ftype, "", fname)
            specs.append((fname, code, nested))
        if not (0 <= type_code < 2**32):
            raise ValueError("type_code must fit 32 bits")
        self.name = name
        self.type_code = type_code
        self._specs = tuple(specs)
        self.names = tuple(s[0] for s in specs)
        self.blob = _core.encode(self._value())
        try:
            self._native = _core._SchemaNative(self.blob)
        except Error as exc:
            raise ValueError(str(exc)) from exc
        for i, (_, code, nested) in enumerate(specs):
            if code == _RECORD:
                self._native.set_nested(i, nested._native)
        self.factory = factory if factory is not None else _dc.make_dataclass(
            name if name.isidentifier() else "Record", [(n, _typing.Any, _dc.field(default=None)) for n in self.names])
        # _ProxyMixin's methods are copied in, not inherited: nanobind before 3.0 (the one Python 3.9 gets)
        # refuses a mixin beside a native base.
        ns = {k: v for k, v in vars(_ProxyMixin).items() if k not in ("__slots__", "__dict__", "__weakref__", "__qualname__", "__annotations__")}
        ns.update({"__slots__": (), "_schema": self})
        for i, n in enumerate(self.names):
            ns[n] = _core._Field(self._native, i)
        self._construct = construct if construct is not None else self.factory
        self.proxy_class = type(f"{name}Proxy", (_core.RecordProxy,), ns)
        self._native.bind(self.proxy_class, _coerce, self.factory)

    def _value(self):
        return ("mmstore.schema", 1, self.name, self.type_code,
                tuple((n, c, nested._value() if nested is not None else None) for n, c, nested in self._specs))

    @classmethod
    def from_fields(cls, fields: dict, name: str = "Record", type_code: int = 0) -> Schema:
        """The dynamic form: ``Schema.from_fields({"x": mmstore.int32, "name": str})``."""
        return cls(list(fields.items()), name=name, type_code=type_code)

    @classmethod
    def from_blob(cls, blob: bytes) -> Schema:
        """The schema stored in a file (a codec value, decoded without pickle). A declared struct (or an
        earlier schema) with the same encoding is reused, so proxies copy to its class."""
        blob = bytes(blob)
        known = _BY_BLOB.get(blob)
        if known is not None:
            return known
        try:
            value = _core.decode(blob, False)
        except Error as exc:
            raise CorruptFileError(f"corrupt stored schema: {exc}") from exc
        return cls._from_value(value)

    @classmethod
    def _from_value(cls, value) -> Schema:
        if (not isinstance(value, tuple) or len(value) != 5 or value[0] != "mmstore.schema" or value[1] != 1
                or not isinstance(value[4], tuple)):
            raise CorruptFileError("corrupt stored schema")
        _, _, name, code, fields = value
        known = _BY_BLOB.get(_core.encode(value))
        if known is not None:
            return known
        specs = []
        for f in fields:
            fname, fcode, nested = f
            specs.append((fname, cls._from_value(nested) if fcode == _RECORD else fcode))
        schema = cls(specs, name=name, type_code=code)
        _BY_BLOB.setdefault(schema.blob, schema)
        return schema

    # -- fields
    @property
    def fields(self) -> dict:
        """{name: type} with FieldType markers, or nested Schemas for record fields."""
        return {n: (nested if c == _RECORD else _BY_CODE[c]) for n, c, nested in self._specs}

    def __len__(self) -> int:
        return len(self._specs)

    def __eq__(self, other) -> bool:
        return isinstance(other, Schema) and other.blob == self.blob

    def __hash__(self) -> int:
        return hash(self.blob)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}: {t!r}" if not isinstance(t, Schema) else f"{n}: {t.name}" for n, t in self.fields.items())
        return f"Schema({self.name}; {inner})"

    def __reduce__(self):
        return (Schema.from_blob, (self.blob,))

    # -- packing
    def pack(self, obj) -> bytes:
        """The packed record of ``obj``: an instance of the schema's class (or a record proxy, or another
        object with some of the fields as attributes), a mapping of field names, or a sequence of one value
        per field in order; missing fields are None. Anything else -- a number, a str, a mapping with a key
        that is no field, a sequence of the wrong length -- raises ``TypeError``."""
        return self._native.pack(obj)

    def pack_into(self, obj, buf, offset: int = 0) -> int:
        """Packs ``obj`` into the writable buffer at ``offset``; returns the number of bytes written."""
        return self._native.pack_into(obj, buf, offset)

    def unpack_from(self, buf, offset: int = 0, *, allow_pickle: bool = True):
        """A proxy reading the record packed at ``offset`` of ``buf`` (which it keeps alive)."""
        return self._native.unpack_from(buf, offset, allow_pickle)

    def _make(self, values):
        kwargs = {}
        for n, v in zip(self.names, values):
            kwargs[n] = v.copy() if isinstance(v, RecordProxy) else v
        return self._construct(**kwargs)


# Schemas by encoding: declared structs first (the latest declaration wins), then schemas read from files.
_BY_BLOB: dict[bytes, Schema] = {}


def _as_schema(value, where: str, param: str = "schema", optional: bool = True) -> Schema | None:
    """A :class:`Schema` from what a ``schema`` argument accepts: a Schema, an ``@mmstore.struct`` class (or one
    of its instances), or None where optional. Anything else is a TypeError naming the parameter."""
    if isinstance(value, Schema):
        return value
    if value is None and optional:
        return None
    found = getattr(value if isinstance(value, type) else type(value), "__schema__", None)
    if isinstance(found, Schema):
        return found
    raise TypeError(f"{where}: {param} must be a Schema or an @mmstore.struct class, not "
                    f"{value.__name__ if isinstance(value, type) else type(value).__name__}")


def register_type(cls_or_schema, type_code: int | None = None):
    """Registers a record type under a stable code, so that ``object`` fields (and any mmstore value) can
    hold its instances: they are stored as packed records (codec tag 0x1C) and read back as proxies."""
    schema = _as_schema(cls_or_schema, "register_type", "cls_or_schema", optional=False)
    code = schema.type_code if type_code is None else type_code
    if code != schema.type_code:
        raise ValueError("type_code differs from the schema's own code")
    if not code:
        raise ValueError("register_type needs a nonzero type_code")
    other = _TYPES_BY_CODE.get(code)
    if other is not None and other != schema:
        raise ValueError(f"type code {code} is already registered for {other.name}")
    _TYPES_BY_CODE[code] = schema
    _codec.register_record_type(schema.factory, code, schema.pack)
    _codec.register_record_type(schema.proxy_class, code, schema.pack)
    _codec.register_record_code(code, lambda row, s=schema: s.unpack_from(row))
    return cls_or_schema


if _typing.TYPE_CHECKING:
    from typing_extensions import dataclass_transform as _dataclass_transform
else:  # type checkers only: it tells them that @struct makes a dataclass (its __init__, its fields)
    def _dataclass_transform(**kwargs):
        return lambda f: f


@_dataclass_transform()
def struct(cls=None, *, name: str | None = None, type_code: int = 0):
    """Class decorator: a dataclass whose annotated fields form ``cls.__schema__``.

    Every field defaults to None (fields may be missing). ``type_code`` (a stable nonzero number) registers
    the type so ``object`` fields can hold it."""

    def wrap(c):
        hints = c.__dict__.get("__annotations__", {})
        fields = []
        for fname, ann in hints.items():
            code, nested = _field_type(ann, c.__module__, fname)
            fields.append((fname, code if nested is None else nested))
            if fname not in c.__dict__:
                setattr(c, fname, None)
        if not _dc.is_dataclass(c):
            c = _dc.dataclass(c)
        schema = Schema(fields, name=name or c.__name__, type_code=type_code, factory=c)
        c.__schema__ = schema
        _BY_BLOB[schema.blob] = schema
        if type_code:
            register_type(schema)
        return c

    return wrap if cls is None else wrap(cls)


# ---------------------------------------------------------------------------------------------------------
# Progress bars


def _progress(progress, total, desc):
    """(callback(count) or None, close(count)) for a build: ``progress`` False (none), a callable, True or
    None (a bar when stderr is a terminal: tqdm if installed, else rich; neither is a dependency)."""
    if progress is False or progress is None and not _sys.stderr.isatty():
        return None, lambda n: None
    if callable(progress) and progress is not True:
        return progress, lambda n: progress(n)
    try:
        from tqdm import tqdm
    except ImportError:
        return _rich_progress(total, desc)
    bar = tqdm(total=total, desc=desc, unit=" items", unit_scale=True, file=_sys.stderr)
    state = [0]

    def update(n):
        bar.update(n - state[0])
        state[0] = n

    def close(n):
        update(n)
        bar.close()

    return update, close


def _rich_progress(total, desc):
    try:
        from rich.progress import Progress
    except ImportError:
        return None, lambda n: None
    bar = Progress(transient=True)
    bar.start()
    task = bar.add_task(desc, total=total)

    def close(n):
        bar.update(task, completed=n)
        bar.stop()

    return (lambda n: bar.update(task, completed=n)), close


def _total(iterable):
    try:
        return len(iterable)
    except TypeError:
        return None


# ---------------------------------------------------------------------------------------------------------
# RecordArray


def _zip_member(path, member: str):
    """(offset, length) of an uncompressed member of a zip file."""
    with _zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
        if info.compress_type != _zipfile.ZIP_STORED:
            raise ValueError(f"zip member {member!r} is compressed; store it with ZIP_STORED to map it")
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            head = f.read(30)
        if len(head) != 30 or head[:4] != b"PK\x03\x04":
            raise CorruptFileError(f"{path}: bad local header of zip member {member!r}")
        name_len = int.from_bytes(head[26:28], "little")
        extra_len = int.from_bytes(head[28:30], "little")
        return info.header_offset + 30 + name_len + extra_len, info.file_size


def _bind(native, schema):
    schema = _as_schema(schema, type(native).__name__)
    stored = native.schema_blob()
    if schema is None:
        schema = Schema.from_blob(stored)
    elif schema.blob != stored:
        raise SchemaMismatchError(f"{native.path}: the file's schema {Schema.from_blob(stored)!r} differs from "
                                  f"the expected {schema!r}", native.path)
    native.bind(schema._native)
    return schema


class RecordArray(_core._ArrayNative):
    """A read-only array of typed records in a file (or buffer): ``len``, indexing (negative too), slicing
    and iteration return proxies; :meth:`column` gives zero-copy numpy views of fixed-width fields.

    Open with ``RecordArray(path)``, :meth:`open`, :meth:`from_buffer` or :meth:`open_zip`; build with
    :meth:`build`. Proxies and column views keep the mapping alive after :meth:`close`."""

    def __new__(cls, path=None, *, buffer=None, offset: int = 0, length: int = 0, schema: Schema | type | None = None,
                allow_pickle: bool = True):
        if buffer is None:
            self = super().__new__(cls, path=path, offset=offset, length=length, allow_pickle=allow_pickle)
        else:
            self = super().__new__(cls, buffer=buffer, allow_pickle=allow_pickle)
        self._schema = _bind(self, schema)
        return self

    def __init__(self, *args, **kwargs) -> None:
        pass

    @classmethod
    def open(cls, path, *, schema: Schema | type | None = None, allow_pickle: bool = True) -> RecordArray:
        return cls(path, schema=schema, allow_pickle=allow_pickle)

    @classmethod
    def from_buffer(cls, buffer, *, schema: Schema | type | None = None, allow_pickle: bool = True) -> RecordArray:
        """Reads a file image in any buffer (bytes, mmap, memoryview), which it keeps alive."""
        return cls(buffer=buffer, schema=schema, allow_pickle=allow_pickle)

    @classmethod
    def open_zip(cls, zip_path, member: str, *, schema: Schema | type | None = None, allow_pickle: bool = True):
        """Maps an uncompressed (ZIP_STORED) member of a zip file in place."""
        offset, length = _zip_member(zip_path, member)
        return cls(zip_path, offset=offset, length=length, schema=schema, allow_pickle=allow_pickle)

    @classmethod
    def build(cls, iterable, path, *, schema: Schema | type | None = None, dedup: bool = True,
              dedup_budget: int = 64 << 20, progress=None, mode: int = 0o600) -> RecordArray:
        """Writes every record of ``iterable`` (each as for :meth:`Schema.pack`: instances, mappings of field
        names or sequences of field values) to ``path`` and opens it. A wrong-shaped item raises
        ``TypeError`` naming its index, and no file is written. Streams with bounded memory; the file appears complete or not at all.

        ``schema`` defaults to ``type(first item).__schema__``; ``dedup`` writes identical variable values
        once (cache bounded by ``dedup_budget`` bytes; str and bytes fields are stored in Arrow's layout, one
        copy per record, docs/format.md §8.1); ``progress`` False/True/None (a tqdm bar on a
        terminal)/callable(count)."""
        schema = _as_schema(schema, "RecordArray.build")
        path = _os.fspath(path)
        it = iter(iterable)
        first = []
        if schema is None:
            for x in it:
                first.append(x)
                break
            if not first:
                raise ValueError("RecordArray.build: schema= is required for an empty iterable")
            schema = getattr(type(first[0]), "__schema__", None)
            if not isinstance(schema, Schema):
                raise TypeError("RecordArray.build: pass schema= (the items are not @mmstore.struct instances)")
        update, close = _progress(progress, _total(iterable), "RecordArray.build")
        builder = _core._ArrayBuilder(path, schema._native, dedup, dedup_budget, mode)
        try:
            n = builder.add_many(first, None) if first else 0
            n += builder.add_many(it, update)
            builder.finish()
        except BaseException:
            builder.abort()
            raise
        finally:
            builder = None
        close(n)
        return cls(path, schema=schema)

    @property
    def schema(self) -> Schema:
        return self._schema

    def values(self, name: str):
        """Field ``name`` of every record as a read-only sequence: ``vals[i]`` reads record i's field straight
        from the mapping, without making a record proxy (the fastest random access to one field, like
        ``table.column(name)[i]`` in Arrow; ``arr[i].name`` reads the same value). Supports ``len()``,
        iteration, negative indices and slices; reads raise ``ClosedError`` once the array is closed, as
        ``arr[i]`` does."""
        return _core._FieldValues(self, self._field_index(name))

    def column(self, name: str):
        """Zero-copy numpy view of a fixed-width field (read-only). Missing/None values read as 0; see
        :meth:`present` for the mask."""
        import numpy as np

        i = self._field_index(name)
        off, width, _ = self.column_info(i)
        dtype = np.dtype(self._schema.fields[name].dtype)
        return np.frombuffer(self, dtype=dtype, count=len(self), offset=off)

    def present(self, name: str):
        """Boolean numpy array: True where the fixed-width field has a value (not None/missing)."""
        import numpy as np

        i = self._field_index(name)
        _, _, poff = self.column_info(i)
        n = len(self)
        if poff < 0:
            return np.ones(n, dtype=bool)
        bits = np.frombuffer(self, dtype=np.uint8, count=(n + 7) // 8, offset=poff)
        return np.unpackbits(bits, bitorder="little")[:n].astype(bool)

    def _field_index(self, name: str) -> int:
        try:
            return self._schema.names.index(name)
        except ValueError:
            raise KeyError(f"no field named {name!r}") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self)} records"
        return f"<mmstore.RecordArray {self.path!r} {self._schema.name} {state}>"

    def __reduce__(self):
        if self.path == "<buffer>":
            raise TypeError("a RecordArray opened from a buffer cannot be pickled")
        return (RecordArray, (self.path,))

    def index(self, value, start=0, stop=None):
        for i in range(*slice(start, stop).indices(len(self))):
            if self[i] == value:
                return i
        raise ValueError("record not in RecordArray")

    def count(self, value) -> int:
        return sum(1 for r in self if r == value)

    def __contains__(self, value) -> bool:
        return any(r == value for r in self)

    def __reversed__(self):
        for i in range(len(self) - 1, -1, -1):
            yield self[i]

    # -- Arrow, pandas and numpy (python/mmstore/_arrow.py; pyarrow and pandas are optional extras) --------
    def to_arrow(self, columns: _typing.Any = None) -> _typing.Any:
        """A ``pyarrow.Table``: fixed-width columns are zero-copy views of the file (the table keeps the
        mapping alive); str and bytes columns are copied into Arrow's layout. Needs ``mmstore[arrow]``."""
        from . import _arrow

        return _arrow.to_arrow(self, columns)

    def to_numpy(self) -> _typing.Any:
        """A structured numpy array: a zero-copy view when every field is fixed-width and of one width."""
        from . import _arrow

        return _arrow.to_numpy(self)

    def to_pandas(self, start: int = 0, stop: int | None = None, columns: _typing.Any = None) -> _typing.Any:
        """A ``pandas.DataFrame`` of records [start, stop). Needs ``mmstore[pandas]``."""
        from . import _arrow

        return _arrow.to_pandas(self, start, stop, columns)

    @staticmethod
    def from_arrow(data: _typing.Any, path: _typing.Any, *, schema: _typing.Any = None, name: str = "Record", **build_kwargs: _typing.Any) -> _typing.Any:
        """Build from a pyarrow Table, RecordBatch, reader or iterable of batches, one batch at a time."""
        from . import _arrow

        return _arrow.from_arrow(data, path, schema=schema, name=name, **build_kwargs)

    @staticmethod
    def from_pandas(df: _typing.Any, path: _typing.Any, *, schema: _typing.Any = None, name: str = "Record", **build_kwargs: _typing.Any) -> _typing.Any:
        """Build from a pandas DataFrame, one batch at a time."""
        from . import _arrow

        return _arrow.from_pandas(df, path, schema=schema, name=name, **build_kwargs)


_abc.Sequence.register(RecordArray)


# ---------------------------------------------------------------------------------------------------------
# Mapping

_KEY_KINDS = {object: 0, None: 0, str: 1, int: 2}

class Mapping(_core._MappingNative):
    """A read-only mapping from keys to records (or plain values) in a file, built once.

    ``m[key]``, ``key in m``, ``get``, ``get_all(key[, default])`` (every value of a multi-map, as a list;
    ``[]`` or ``default`` for a missing key), ``keys``/``values``/``items``
    (in hash order). Approximate maps store key hashes only: they are smaller and faster, cannot list their
    keys, and a lookup may return the value of a different key whose 64-bit hash collides (about 2**-64 per
    pair of keys; a key never stored can also match with that probability)."""

    def __new__(cls, path=None, *, buffer=None, offset: int = 0, length: int = 0, schema: Schema | type | None = None,
                allow_pickle: bool = True):
        if buffer is None:
            self = super().__new__(cls, path=path, offset=offset, length=length, allow_pickle=allow_pickle)
        else:
            self = super().__new__(cls, buffer=buffer, allow_pickle=allow_pickle)
        info = self.info()
        self.multi = info["multi"]
        self.approximate = info["approximate"]
        self._plain = info["plain_values"]
        self.key_type = {0: object, 1: str, 2: int}.get(info["key_kind"], object)
        self._schema = _bind(self, None if self._plain else schema)
        return self

    def __init__(self, *args, **kwargs) -> None:
        pass

    @classmethod
    def open(cls, path, *, schema: Schema | type | None = None, allow_pickle: bool = True) -> Mapping:
        return cls(path, schema=schema, allow_pickle=allow_pickle)

    @classmethod
    def from_buffer(cls, buffer, *, schema: Schema | type | None = None, allow_pickle: bool = True) -> Mapping:
        return cls(buffer=buffer, schema=schema, allow_pickle=allow_pickle)

    @classmethod
    def open_zip(cls, zip_path, member: str, *, schema: Schema | type | None = None, allow_pickle: bool = True):
        offset, length = _zip_member(zip_path, member)
        return cls(zip_path, offset=offset, length=length, schema=schema, allow_pickle=allow_pickle)

    @classmethod
    def build(cls, items, path, *, key=object, schema: Schema | type | None = None, value=object, multi: bool = False,
              approximate: bool = False, dedup: bool = True, dedup_budget: int = 64 << 20,
              memory_budget: int = 256 << 20, progress=None, mode: int = 0o600) -> Mapping:
        """Writes ``items`` ((key, value) pairs, or a mapping) to ``path`` and opens it.

        ``key``: str, int or object (the key type, checked). Values are records of ``schema`` or, without a
        schema, plain values of type ``value`` (object: any codec value). A repeated key keeps its last value
        unless ``multi``. The build runs within ``memory_budget`` bytes whatever the input size (entries are
        partitioned by hash into temporary files next to ``path``)."""
        schema = _as_schema(schema, "Mapping.build")
        path = _os.fspath(path)
        if key not in _KEY_KINDS:
            raise TypeError("key must be str, int or object")
        plain = schema is None
        if plain:
            code, nested = _field_type(value, "", "value")
            schema = _plain_schema(code if nested is None else nested)
        if isinstance(items, _abc.Mapping):
            items = items.items()
        update, close = _progress(progress, _total(items), "Mapping.build")
        builder = _core._MappingBuilder(path, schema._native, _KEY_KINDS[key], multi, approximate, plain, dedup,
                                        dedup_budget, memory_budget, mode)
        try:
            n = builder.add_many(iter(items), update)
            builder.finish()
        except BaseException:
            builder.abort()
            raise
        finally:
            builder = None
        close(n)
        return cls(path, schema=None if plain else schema)

    @property
    def schema(self) -> Schema | None:
        """The value schema (None for plain values)."""
        return None if self._plain else self._schema

    def keys(self):
        if self.approximate:
            raise TypeError("an approximate mapping stores no keys")
        prev = _MISSING
        for e in range(len(self)):
            k = self.entry_key(e)
            if not (type(k) is type(prev) and k == prev):
                yield k
            prev = k

    __iter__ = keys

    def values(self):
        for e in range(len(self)):
            yield self.entry_value(e)

    def items(self):
        """(key, value) per entry (every value of a multi-map), in hash order."""
        for e in range(len(self)):
            yield self.entry_key(e), self.entry_value(e)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        kind = "multi-map" if self.multi else "map"
        state = "closed" if self.closed else f"{len(self)} entries"
        return f"<mmstore.Mapping {self.path!r} {'approximate ' if self.approximate else ''}{kind} {state}>"

    def __reduce__(self):
        if self.path == "<buffer>":
            raise TypeError("a Mapping opened from a buffer cannot be pickled")
        return (Mapping, (self.path,))

    def __eq__(self, other):
        return self is other

    __hash__ = object.__hash__

    @staticmethod
    def merge(a: Mapping, b: Mapping, out, *, dedup: bool = True, mode: int = 0o600) -> Mapping:
        """Writes the union of ``a`` and ``b`` to ``out`` (``b`` wins for keys in both; multi-maps keep every
        value) and opens it."""
        out = _os.fspath(out)
        _core._merge_mappings(a, b, out, dedup, mode)
        return Mapping(out, schema=a.schema)

    # -- Arrow (python/mmstore/_arrow.py) ----------------------------------------------------------------
    def to_arrow(self) -> _typing.Any:
        """A ``pyarrow.Table``: a ``key`` column, then the value's fields (or one ``value`` column)."""
        from . import _arrow

        return _arrow.mapping_to_arrow(self)

    @staticmethod
    def from_arrow(keys: _typing.Any, values: _typing.Any, path: _typing.Any, *, schema: _typing.Any = None, **build_kwargs: _typing.Any) -> _typing.Any:
        """Build a Mapping from two Arrow columns (a struct column of values becomes records)."""
        from . import _arrow

        return _arrow.mapping_from_arrow(keys, values, path, schema=schema, **build_kwargs)


_MISSING = object()
_PLAIN: dict = {}


def _plain_schema(code_or_schema) -> Schema:
    key = code_or_schema.blob if isinstance(code_or_schema, Schema) else code_or_schema
    s = _PLAIN.get(key)
    if s is None:
        s = _PLAIN[key] = Schema([("value", code_or_schema)], name="Value")
        _BY_BLOB.setdefault(s.blob, s)
    return s


def merge(a: Mapping, b: Mapping, out, **kwargs) -> Mapping:
    """Module-level alias of :meth:`Mapping.merge`."""
    return Mapping.merge(a, b, out, **kwargs)


_abc.Mapping.register(Mapping)
