"""Codec extension types: the parts of the value encoding that are not on the hot path.

The native core encodes None, bool, int, float, str, bytes, tuple, list, dict, set and frozenset itself
and calls :func:`encode_ext` / :func:`decode_ext` for everything else: ``datetime.date``,
``datetime.datetime`` (naive, UTC, fixed offset, ``zoneinfo``), ``decimal.Decimal``, numpy arrays, and
the pickle fallback. The byte layouts are specified in docs/format.md and implemented identically in
C++ (src/codec/value.cpp); tests check both directions.

Only exact types get a native encoding: subclasses (an ``IntEnum``, a ``pandas.Timestamp``) round-trip
through pickle so that their type survives. A ``memoryview`` is stored as the ``bytes`` it shows (C order)
and reads back as ``bytes``: a view cannot outlive the buffer it was taken from.

A store opened with ``pickler=`` / ``unpickler=`` (:class:`Serializer`) puts what its pickler returns in
the pickle payload instead of ``pickle.dumps``'s output, and reads payloads back through its unpickler; the
core passes that Serializer in place of ``allow_pickle`` (python/bindings/codec.hpp, CodecFlags).
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import pickle as _pickle
import struct as _struct

from ._errors import CorruptFileError, EncodeError

TAG_DATE = 0x17
TAG_DATETIME = 0x18
TAG_DECIMAL = 0x19
TAG_NDARRAY = 0x1A
TAG_PICKLE = 0x1B
TAG_RECORD = 0x1C

# Registered record types (mmstore._records.register_type): class -> (type code, pack), code -> unpack(row).
_RECORD_TYPES: dict = {}
_RECORD_CODES: dict = {}


def register_record_type(cls, code: int, pack) -> None:
    _RECORD_TYPES[cls] = (code, pack)


def register_record_code(code: int, unpack) -> None:
    _RECORD_CODES[code] = unpack

TZ_NAIVE, TZ_FIXED, TZ_UTC, TZ_ZONE = 0, 1, 2, 3

_U32 = _struct.Struct("<I")
_U64 = _struct.Struct("<Q")
_I64 = _struct.Struct("<q")
_DATE = _struct.Struct("<iBB")
_DATETIME = _struct.Struct("<iBBBBBBIB")


class Serializer:
    """A store's own replacement for pickle (``Dict(path, pickler=..., unpickler=...)``).

    ``pickler`` turns an object into bytes: an object with a ``pickle(obj)`` method (pyrsistence's protocol),
    or a ``dumps(obj)`` method, or a callable. ``unpickler`` is the inverse: ``unpickle(data)``,
    ``loads(data)`` or a callable. Either may be ``None`` for ``pickle`` itself. They are used only for
    values without a native encoding (the codec's pickle payload); native values stay readable from C++.
    Calls are made with the GIL held, one at a time per thread; a store shared by threads shares them.
    """

    __slots__ = ("dumps", "loads", "pickler", "unpickler")

    def __init__(self, pickler=None, unpickler=None) -> None:
        self.pickler, self.unpickler = pickler, unpickler
        self.dumps = _method(pickler, ("pickle", "dumps"), lambda o: _pickle.dumps(o, protocol=5), "pickler")
        self.loads = _method(unpickler, ("unpickle", "loads"), _pickle.loads, "unpickler")

    def __repr__(self) -> str:
        return f"mmstore.Serializer(pickler={self.pickler!r}, unpickler={self.unpickler!r})"


def _method(obj, names, default, what):
    if obj is None:
        return default
    for n in names:
        m = getattr(obj, n, None)
        if callable(m):
            return m
    if callable(obj):
        return obj
    raise TypeError(f"{what}= must have a {names[0]}() or {names[1]}() method or be callable, not "
                    f"{type(obj).__qualname__}")


def _short_str(s: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) <= 31:
        return bytes([0x20 + len(b)]) + b
    return b"\x10" + _U32.pack(len(b)) + b


def _encode_tz(value: _dt.datetime) -> bytes | None:
    tz = value.tzinfo
    if tz is None:
        return bytes([TZ_NAIVE])
    if tz is _dt.timezone.utc:
        return bytes([TZ_UTC])
    if type(tz) is _dt.timezone:
        off = tz.utcoffset(None)
        us = (off.days * 86400 + off.seconds) * 1_000_000 + off.microseconds
        return bytes([TZ_FIXED]) + _I64.pack(us) + _short_str(tz.tzname(None))
    try:
        import zoneinfo
    except ImportError:  # pragma: no cover - Python < 3.9
        return None
    if type(tz) is zoneinfo.ZoneInfo and tz.key:
        return bytes([TZ_ZONE]) + _short_str(tz.key)
    return None


def _is_ndarray(obj) -> bool:
    t = type(obj)
    return t.__name__ == "ndarray" and t.__module__ == "numpy"


def encode_ext(obj, key: bool, allow_pickle: bool) -> bytes:
    """Encoding of ``obj`` (tag included) for the types the native core does not handle. ``allow_pickle``
    is a bool, or the store's :class:`Serializer` (which implies pickling is allowed)."""
    t = type(obj)
    if t is memoryview:
        if key:
            try:
                hash(obj)  # only read-only views are hashable, as for dict
            except ValueError as exc:
                raise TypeError(f"unhashable key: {exc}") from None
        data = obj.tobytes()
        n = len(data)
        return (bytes([0x40 + n]) if n <= 31 else b"\x11" + _U32.pack(n)) + data
    if t is _dt.date:
        return bytes([TAG_DATE]) + _DATE.pack(obj.year, obj.month, obj.day)
    if t is _dt.datetime:
        tz = _encode_tz(obj)
        if tz is not None:
            return (
                bytes([TAG_DATETIME])
                + _DATETIME.pack(obj.year, obj.month, obj.day, obj.hour, obj.minute, obj.second, obj.fold,
                                 obj.microsecond, tz[0])
                + tz[1:]
            )
    elif t is _decimal.Decimal:
        text = str(obj).encode("ascii")
        return bytes([TAG_DECIMAL]) + _U32.pack(len(text)) + text
    elif _is_ndarray(obj) and not obj.dtype.hasobject and obj.dtype.fields is None:
        if key:
            raise TypeError("unhashable type: 'numpy.ndarray'")
        arr = obj if obj.flags.c_contiguous else obj.copy(order="C")  # ascontiguousarray makes 0-d 1-d
        dtype = arr.dtype.str.encode("ascii")
        head = bytearray([TAG_NDARRAY, len(dtype)]) + dtype + bytes([arr.ndim])
        for d in arr.shape:
            head += _U64.pack(d)
        head += _U64.pack(arr.nbytes)
        pad = (16 - (len(head) + 1) % 16) % 16
        head += bytes([pad]) + bytes(pad)
        return bytes(head) + arr.tobytes()
    rec = _RECORD_TYPES.get(t)
    if rec is not None:
        if key:
            raise TypeError(f"unhashable type: '{t.__name__}' (records cannot be keys)")
        code, pack = rec
        row = pack(obj)
        return bytes([TAG_RECORD]) + _U32.pack(code) + _U32.pack(len(row)) + row
    if key:
        hash(obj)  # unhashable keys raise TypeError, as for dict
    if not allow_pickle:
        raise EncodeError(
            f"cannot store a value of type {t.__module__}.{t.__qualname__}: it has no native mmstore encoding "
            "and pickling is disabled (allow_pickle=False)"
        )
    try:
        if allow_pickle is True:
            payload = _pickle.dumps(obj, protocol=5)
        else:
            payload = bytes(allow_pickle.dumps(obj))
    except Exception as exc:
        how = "pickle" if allow_pickle is True else "the store's pickler"
        raise EncodeError(f"cannot store a value of type {t.__qualname__} ({how} failed): {exc}") from exc
    return bytes([TAG_PICKLE]) + _U32.pack(len(payload)) + payload


def _read_str(data: bytes, pos: int) -> tuple[str, int]:
    tag = data[pos]
    if 0x20 <= tag < 0x40:
        n = tag - 0x20
        pos += 1
    elif tag == 0x10:
        (n,) = _U32.unpack_from(data, pos + 1)
        pos += 5
    else:
        raise CorruptFileError(f"corrupt value encoding: expected a str at byte {pos}")
    return data[pos : pos + n].decode("utf-8"), pos + n


def decode_ext(data: bytes, allow_pickle: bool):
    """Inverse of :func:`encode_ext`; ``data`` holds exactly one value (validated by the core)."""
    tag = data[0]
    try:
        if tag == TAG_DATE:
            return _dt.date(*_DATE.unpack_from(data, 1))
        if tag == TAG_DATETIME:
            y, mo, d, h, mi, s, fold, us, tzkind = _DATETIME.unpack_from(data, 1)
            pos = 1 + _DATETIME.size
            tz = None
            if tzkind == TZ_UTC:
                tz = _dt.timezone.utc
            elif tzkind == TZ_FIXED:
                (off,) = _I64.unpack_from(data, pos)
                name, pos = _read_str(data, pos + 8)
                delta = _dt.timedelta(microseconds=off)
                tz = _dt.timezone(delta, name) if name != _dt.timezone(delta).tzname(None) else _dt.timezone(delta)
            elif tzkind == TZ_ZONE:
                import zoneinfo

                key, pos = _read_str(data, pos)
                tz = zoneinfo.ZoneInfo(key)
            return _dt.datetime(y, mo, d, h, mi, s, us, tzinfo=tz, fold=fold)
        if tag == TAG_DECIMAL:
            (n,) = _U32.unpack_from(data, 1)
            return _decimal.Decimal(data[5 : 5 + n].decode("ascii"))
        if tag == TAG_NDARRAY:
            import numpy as np

            dl = data[1]
            dtype = np.dtype(data[2 : 2 + dl].decode("ascii"))
            pos = 2 + dl
            nd = data[pos]
            pos += 1
            shape = tuple(_U64.unpack_from(data, pos + 8 * i)[0] for i in range(nd))
            pos += 8 * nd
            (nbytes,) = _U64.unpack_from(data, pos)
            pos += 8
            pos += 1 + data[pos]
            arr = np.frombuffer(bytearray(data[pos : pos + nbytes]), dtype=dtype)
            return arr.reshape(shape)
        if tag == TAG_RECORD:
            (code,) = _U32.unpack_from(data, 1)
            unpack = _RECORD_CODES.get(code)
            if unpack is None:
                from ._errors import SchemaMismatchError

                raise SchemaMismatchError(
                    f"stored record of type code {code} is not registered in this process "
                    "(declare its @mmstore.struct(type_code=...) before reading)")
            return unpack(bytes(data[9:]))
        if tag == TAG_PICKLE:
            if not allow_pickle:
                raise EncodeError("refusing to unpickle a stored value: this handle has allow_pickle=False")
            (n,) = _U32.unpack_from(data, 1)
            try:
                if allow_pickle is True:
                    return _pickle.loads(data[5 : 5 + n])
                return allow_pickle.loads(data[5 : 5 + n])
            except (_pickle.UnpicklingError, EOFError) as exc:
                raise CorruptFileError(f"corrupt pickle payload: {exc}") from exc
    except (ValueError, TypeError, LookupError, ArithmeticError, _struct.error, UnicodeDecodeError) as exc:
        if isinstance(exc, EncodeError):
            raise
        raise CorruptFileError(f"corrupt value encoding (tag 0x{tag:02x}): {exc}") from exc
    raise CorruptFileError(f"corrupt value encoding: unknown tag 0x{tag:02x}")
