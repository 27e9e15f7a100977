"""Arrow, pandas and numpy interop of the typed-records face (RecordArray and Mapping).

What it provides, and what each conversion costs:

* ``RecordArray.to_arrow()`` -- a ``pyarrow.Table``. Fixed-width columns (ints, floats, bool) are **zero-copy**:
  their Arrow data buffer is the column section of the mapping and their validity bitmap is the presence
  bitmap section (same bit order as Arrow's), so no byte is copied and the table keeps the mapping alive
  (``close()`` then raises ``BufferError`` until the table is gone, as ``mmap.close()`` does). ``str`` and
  ``bytes`` columns are zero-copy too in files of records format version 3 (mmstore 0.3 on): they are stored
  in Arrow's layout (offsets, bytes and presence bitmap sections, docs/format.md §8.1) and become ``string``
  / ``binary`` arrays (``large_string`` / ``large_binary`` past 2 GiB of bytes) over those sections. Files
  of version 2 keep them as codec values in the heap; there they are gathered by numpy in one vectorised
  pass (O(total bytes), no Python object per value). Other variable types (date, list, dict, ...) are decoded
  value by value.
* ``RecordArray.to_numpy()`` -- a structured numpy array. When every field is fixed-width and of one width
  (the column sections are evenly strided then) it is a zero-copy view; mixed widths are copied into a new
  structured array. Variable-width fields raise ``TypeError`` (use ``to_arrow`` or ``to_pandas``).
* ``RecordArray.to_pandas()`` -- a DataFrame: fixed columns without missing values are numpy views of the
  mapping (read-only), with missing values pandas' nullable arrays, the others object columns.
* ``RecordArray.from_arrow(data, path)`` / ``from_pandas(df, path)`` -- builds one batch at a time (each batch
  is turned into rows and streamed to the builder), so memory stays within one batch plus the builder's own
  budget; a column type no field type can hold raises ``TypeError`` naming the column and its type.
* ``Mapping.to_arrow()`` -- ``key`` plus the value's fields (or one ``value`` column) per entry, in hash order;
  ``Mapping.from_arrow(keys, values, path)`` builds from two Arrow columns.

pyarrow and pandas stay optional: the ImportError names the extra to install (``mmstore[arrow]``,
``mmstore[pandas]``). Not thread-safe beyond what the store is: conversions only read the mapping.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import os as _os
import struct as _struct

from . import _records
from ._records import Mapping, RecordArray, Schema

__all__ = ["to_arrow", "to_pandas", "to_numpy", "from_arrow", "from_pandas", "mapping_to_arrow",
           "mapping_from_arrow"]

_HEAP = 1            # section id of the variable-value heap (docs/format.md §8.1)
_COLUMN = 0x100      # + field index: column sections
_PRESENCE = 0x200    # + field index: presence bitmaps
_BATCH_ROWS = 65_536  # rows per batch when a source has no batches of its own: bounds memory, amortises calls
_GATHER_ROWS = 16_384  # rows per chunk of a string gather: index arrays of a few hundred KiB stay in cache


def _require(module: str, extra: str, what: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise ImportError(f"{what} needs {module}, which is not installed: pip install 'mmstore[{extra}]'") from exc


def _pa(what: str):
    _require("pyarrow", "arrow", what)
    import pyarrow

    return pyarrow


def _np():
    import numpy

    return numpy


# ---------------------------------------------------------------------------------------------------------
# Reading the image's section table (docs/format.md §8.1) to find the heap


def _sections(store) -> dict[int, tuple[int, int]]:
    """{section id: (offset, length)} read from the image the store exports (offsets within that buffer)."""
    with memoryview(store) as mv:
        table_off, nsections = _struct.unpack_from("<QI", mv, 64 + 24)
        out = {}
        for i in range(nsections):
            sid, _w, off, length = _struct.unpack_from("<IIQQ", mv, table_off + 32 * i)
            out[sid] = (off, length)
    return out


def _fixed(arr: RecordArray, name: str):
    """(numpy view of the values, numpy view of the presence bitmap bytes or None) of a fixed-width field."""
    np = _np()
    i = arr._field_index(name)
    off, _width, poff = arr.column_info(i)
    n = len(arr)
    values = np.frombuffer(arr, dtype=np.dtype(arr.schema.fields[name].dtype), count=n, offset=off)
    bits = None if poff < 0 else np.frombuffer(arr, dtype=np.uint8, count=(n + 7) // 8, offset=poff)
    return values, bits


def _var_offsets(arr: RecordArray, name: str):
    """The u64 heap offsets of a variable-width field (its column section, docs/format.md §8.1)."""
    np = _np()
    sid = _COLUMN + arr._field_index(name)
    off, length = _sections(arr)[sid]
    if length < 8 * len(arr):
        raise _records.CorruptFileError(f"{arr.path}: the column of field {name!r} is shorter than its records")
    return np.frombuffer(arr, dtype="<u8", count=len(arr), offset=off)


def _string_buffers(arr: RecordArray, name: str, start: int = 0, stop: int | None = None):
    """(offsets, data, validity) of a str or bytes field, rows start:stop: numpy views of the mapping for a
    version-3 file (offsets int32 or int64, validity the presence bitmap bytes or None; start must be 0 or a
    multiple of 8 for the bitmap to line up, else validity is a bool array), else _gather_strings's copy
    (validity a bool array or None)."""
    np = _np()
    info = arr.var_column_info(arr._field_index(name))
    if info is None:
        is_str = arr.schema.fields[name] is _records._str
        return _gather_strings(arr, name, 0x20 if is_str else 0x40, 0x10 if is_str else 0x11, start, stop)
    off, width, doff, dlen, poff = info
    n = len(arr)
    start, stop, _ = slice(start, stop).indices(n)
    stop = max(start, stop)
    offsets = np.frombuffer(arr, dtype="<i4" if width == 4 else "<i8", count=n + 1, offset=off)[start:stop + 1]
    data = np.frombuffer(arr, dtype=np.uint8, count=dlen, offset=doff)
    valid = None
    if poff >= 0:
        bits = np.frombuffer(arr, dtype=np.uint8, count=(n + 7) // 8, offset=poff)
        valid = bits if start == 0 else np.unpackbits(bits, bitorder="little")[start:stop].astype(bool)
    return offsets, data, valid


def _gather_strings(arr: RecordArray, name: str, short_base: int, long_tag: int, start: int = 0,
                    stop: int | None = None):
    """(offsets int64, data uint8, valid bool or None) of a str (0x20/0x10) or bytes (0x40/0x11) column
    (rows start:stop), gathered from the heap with numpy. CorruptFileError for a tag that is not a
    str/bytes/None."""
    np = _np()
    heap_off, heap_len = _sections(arr)[_HEAP]
    heap = np.frombuffer(arr, dtype=np.uint8, count=heap_len, offset=heap_off)
    offs = _var_offsets(arr, name)[start:stop].astype(np.int64)
    if len(offs) and (offs.max() >= heap_len):
        raise _records.CorruptFileError(f"{arr.path}: field {name!r} points past the heap")
    tags = heap[offs]
    short = (tags >= short_base) & (tags < short_base + 32)
    long_ = tags == long_tag
    none = tags == 0
    if not (short | long_ | none).all():
        bad = int(np.argmax(~(short | long_ | none)))
        raise _records.CorruptFileError(f"{arr.path}: field {name!r} of record {bad} holds codec tag "
                                        f"0x{int(tags[bad]):02x}, not a {'str' if short_base == 0x20 else 'bytes'}")
    lens = np.where(short, tags.astype(np.int64) - short_base, 0)
    starts = offs + 1
    if long_.any():
        lo = offs[long_]
        if (lo + 5 > heap_len).any():
            raise _records.CorruptFileError(f"{arr.path}: field {name!r}: a length runs past the heap")
        b = heap[(lo[:, None] + np.arange(1, 5)).ravel()].reshape(-1, 4).astype(np.int64)
        lens[long_] = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16) | (b[:, 3] << 24)
        starts[long_] = lo + 5
    if len(offs) and (starts + lens > heap_len).any():
        raise _records.CorruptFileError(f"{arr.path}: field {name!r}: a value runs past the heap")
    n = len(offs)
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens, out=out_offsets[1:])
    total = int(out_offsets[-1])
    valid = None if not none.any() else ~none
    if n and short.all():
        width = int(lens[0])
        lo = int(offs[0])
        if (lens == width).all() and lo + n * (width + 1) <= heap_len and (
                n == 1 or (np.diff(offs) == width + 1).all()):
            # the common case of a column built in row order: equal-length short values back to back, so
            # the bytes are every row of a (n, 1 + width) block without its tag column: one strided copy
            block = heap[lo:lo + n * (width + 1)].reshape(n, width + 1)
            return out_offsets, np.ascontiguousarray(block[:, 1:]).reshape(-1), valid
    data = np.empty(total, dtype=np.uint8)
    # general case, in chunks of rows so the index arrays stay small (a byte's heap position is its run's
    # start shifted by its rank in the run)
    for c in range(0, n, _GATHER_ROWS):
        o = out_offsets[c:c + _GATHER_ROWS + 1]
        ln = lens[c:c + _GATHER_ROWS]
        base, cnt = int(o[0]), int(o[-1] - o[0])
        pos = np.repeat(starts[c:c + _GATHER_ROWS] - (o[:-1] - base), ln) + np.arange(cnt, dtype=np.int64)
        data[base:base + cnt] = heap[pos]
    return out_offsets, data, valid


# ---------------------------------------------------------------------------------------------------------
# Type mapping between field types and Arrow types

def _arrow_type(pa, ftype):
    name = ftype.name if not isinstance(ftype, Schema) else "record"
    simple = {
        "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(), "uint8": pa.uint8(),
        "uint16": pa.uint16(), "uint32": pa.uint32(), "uint64": pa.uint64(), "float32": pa.float32(),
        "float64": pa.float64(), "bool": pa.bool_(), "str": pa.string(), "bytes": pa.binary(),
        "date": pa.date32(),
    }
    return simple.get(name)  # None: let pyarrow infer from the values


def _field_for_arrow(pa, name: str, t, where: str):
    """The mmstore field type of Arrow type ``t`` (column ``name``), or TypeError."""
    types = pa.types
    table = [
        (types.is_int8, _records.int8), (types.is_int16, _records.int16), (types.is_int32, _records.int32),
        (types.is_int64, _records.int64), (types.is_uint8, _records.uint8), (types.is_uint16, _records.uint16),
        (types.is_uint32, _records.uint32), (types.is_uint64, _records.uint64),
        (types.is_float32, _records.float32), (types.is_float64, _records.float64), (types.is_boolean, bool),
        (types.is_string, str), (types.is_large_string, str), (types.is_binary, bytes),
        (types.is_large_binary, bytes), (types.is_fixed_size_binary, bytes), (types.is_date32, _dt.date),
        (types.is_date64, _dt.date), (types.is_timestamp, _dt.datetime), (types.is_decimal, _decimal.Decimal),
        (types.is_list, list), (types.is_large_list, list), (types.is_struct, dict),
    ]
    if types.is_dictionary(t):
        return _field_for_arrow(pa, name, t.value_type, where)
    for pred, ftype in table:
        if pred(t):
            return ftype
    raise TypeError(f"{where}: column {name!r} has Arrow type {t}, which no mmstore field type holds "
                    f"(ints, floats, bool, string, binary, date, timestamp, decimal, list and struct map; "
                    f"cast the column first)")


def schema_from_arrow(arrow_schema, name: str = "Record", where: str = "from_arrow") -> Schema:
    """The mmstore Schema for an Arrow schema (TypeError for a column type it cannot hold)."""
    pa = _pa(where)
    fields = []
    for f in arrow_schema:
        if not f.name.isidentifier():
            raise ValueError(f"{where}: column name {f.name!r} is not an identifier (rename it to use it as a field)")
        fields.append((f.name, _field_for_arrow(pa, f.name, f.type, where)))
    return Schema(fields, name=name)


# ---------------------------------------------------------------------------------------------------------
# RecordArray -> Arrow / numpy / pandas

def _column_to_arrow(pa, arr: RecordArray, name: str, ftype):
    np = _np()
    n = len(arr)
    if getattr(ftype, "dtype", None) is not None:
        values, bits = _fixed(arr, name)
        validity = None if bits is None else pa.py_buffer(bits)
        if ftype.name == "bool":  # Arrow packs booleans into bits: one pass over the bytes
            packed = np.packbits(values.view(np.uint8) != 0, bitorder="little")
            return pa.Array.from_buffers(pa.bool_(), n, [validity, pa.py_buffer(packed)])
        return pa.Array.from_buffers(_arrow_type(pa, ftype), n, [validity, pa.py_buffer(values)])
    if ftype is _records._str or ftype is _records._bytes:
        is_str = ftype is _records._str
        offsets, data, valid = _string_buffers(arr, name)
        if valid is not None and valid.dtype == bool:
            valid = np.packbits(valid, bitorder="little")
        validity = None if valid is None else pa.py_buffer(valid)
        if offsets.dtype.itemsize == 4:
            t = pa.string() if is_str else pa.binary()
        elif offsets[-1] < 2**31:
            t = pa.string() if is_str else pa.binary()
            offsets = offsets.astype(np.int32)
        else:
            t = pa.large_string() if is_str else pa.large_binary()
        return pa.Array.from_buffers(t, n, [validity, pa.py_buffer(offsets), pa.py_buffer(data)])
    values = [_plain(getattr(r, name)) for r in arr]
    try:
        return pa.array(values, type=_arrow_type(pa, ftype))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise TypeError(f"to_arrow: the values of field {name!r} of {arr.path} do not form one Arrow type "
                        f"({exc})") from None


def _plain(v):
    """Record proxies become dicts (Arrow structs); other values pass through."""
    if isinstance(v, _records.RecordProxy):
        return {k: _plain(x) for k, x in v._asdict().items()}
    if isinstance(v, frozenset):
        return sorted(v, key=repr)
    return v


def to_arrow(arr: RecordArray, columns=None):
    """The records as a ``pyarrow.Table`` (see the module docstring for what is zero-copy). ``columns``: the
    field names to include (default all), as ``pyarrow.feather.read_table(columns=)``: converting only the
    fixed-width columns costs no copy at all."""
    pa = _pa("RecordArray.to_arrow")
    fields = arr.schema.fields
    names = list(arr.schema.names) if columns is None else list(columns)
    for n in names:
        if n not in fields:
            raise KeyError(f"to_arrow: {arr.path} has no field {n!r} (fields: {', '.join(fields)})")
    cols = [_column_to_arrow(pa, arr, n, fields[n]) for n in names]
    return pa.Table.from_arrays(cols, names=names)


def to_numpy(arr: RecordArray):
    """A structured numpy array of every field: a zero-copy view when all fields are fixed-width of one
    width, else a copy. Missing values read as 0 (see ``present``). TypeError for variable-width fields."""
    np = _np()
    fields = arr.schema.fields
    var = [n for n, t in fields.items() if getattr(t, "dtype", None) is None]
    if var:
        raise TypeError(f"RecordArray.to_numpy: field(s) {', '.join(map(repr, var))} of {arr.path} are not "
                        f"fixed-width; use to_arrow() or to_pandas()")
    n = len(arr)
    infos = [arr.column_info(arr._field_index(name)) for name in fields]
    widths = {w for _, w, _ in infos}
    dtypes = [np.dtype(t.dtype) for t in fields.values()]
    if len(widths) == 1 and n > 0:
        w = widths.pop()
        base = min(off for off, _, _ in infos)
        dt = np.dtype({"names": list(fields), "formats": dtypes, "offsets": [off - base for off, _, _ in infos],
                       "itemsize": max(off for off, _, _ in infos) - base + w})
        return np.ndarray(shape=(n,), dtype=dt, buffer=memoryview(arr).toreadonly()[base:], strides=(w,))
    out = np.zeros(n, dtype=[(name, d) for name, d in zip(fields, dtypes)])
    for name in fields:
        out[name] = arr.column(name)
    return out


def to_pandas(arr: RecordArray, start: int = 0, stop: int | None = None, columns=None):
    """The records ``start:stop`` as a ``pandas.DataFrame`` (fixed columns without missing values are
    read-only views of the mapping); ``columns``: the fields to include (default all)."""
    pd = _require("pandas", "pandas", "RecordArray.to_pandas")
    np = _np()
    start, stop, _ = slice(start, stop).indices(len(arr))
    stop = max(start, stop)
    fields = arr.schema.fields
    names = list(fields) if columns is None else list(columns)
    for name in names:
        if name not in fields:
            raise KeyError(f"to_pandas: {arr.path} has no field {name!r} (fields: {', '.join(fields)})")
    data = {}
    for name, t in ((n, fields[n]) for n in names):
        if getattr(t, "dtype", None) is not None:
            values, bits = _fixed(arr, name)
            values = values[start:stop]
            if bits is None:
                data[name] = values
            else:
                mask = ~np.unpackbits(bits, bitorder="little")[start:stop].astype(bool)
                if t.name == "bool":
                    data[name] = pd.arrays.BooleanArray(values.astype(bool), mask)
                elif t.name.startswith("float"):
                    data[name] = pd.arrays.FloatingArray(values.copy(), mask)
                else:
                    data[name] = pd.arrays.IntegerArray(values.copy(), mask)
        elif t is _records._str:
            offsets, raw, valid = _string_buffers(arr, name, start, stop)
            o = offsets.tolist()
            buf = raw[o[0]:o[-1]].tobytes() if o else b""
            col = [buf[o[i] - o[0]:o[i + 1] - o[0]].decode() for i in range(stop - start)]
            if valid is not None:
                if valid.dtype != bool:
                    valid = np.unpackbits(valid, bitorder="little")[:stop - start].astype(bool)
                col = [c if v else None for c, v in zip(col, valid)]
            data[name] = _objects(np, col)
        else:
            data[name] = _objects(np, [_plain(getattr(arr[i], name)) for i in range(start, stop)])
    return pd.DataFrame(data, copy=False)


def _objects(np, values: list):
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


# ---------------------------------------------------------------------------------------------------------
# Arrow / pandas -> RecordArray

def _batches(pa, data, where: str):
    """(arrow schema, iterator of RecordBatches) of a Table, RecordBatch, RecordBatchReader or iterable of
    batches, without materialising more than one batch."""
    if isinstance(data, pa.Table):
        return data.schema, iter(data.to_batches(max_chunksize=_BATCH_ROWS))
    if isinstance(data, pa.RecordBatch):
        return data.schema, iter([data])
    if isinstance(data, pa.RecordBatchReader):
        return data.schema, iter(data)
    try:
        it = iter(data)
    except TypeError:
        raise TypeError(f"{where}: expected a pyarrow Table, RecordBatch, RecordBatchReader or an iterable of "
                        f"RecordBatches, not {type(data).__name__}") from None
    for first in it:
        if not isinstance(first, pa.RecordBatch):
            raise TypeError(f"{where}: the iterable yields {type(first).__name__}, not pyarrow.RecordBatch")

        def chain(first=first):
            yield first
            for b in it:
                if b.schema != first.schema:
                    raise ValueError(f"{where}: a batch's schema {b.schema} differs from the first batch's "
                                     f"{first.schema}")
                yield b

        return first.schema, chain()
    raise ValueError(f"{where}: no batches (pass a Table or a RecordBatchReader to build an empty array)")


def _rows(batches):
    for b in batches:
        yield from b.to_pylist()


def from_arrow(data, path, *, schema: Schema | None = None, name: str = "Record", **build_kwargs) -> RecordArray:
    """Builds a RecordArray at ``path`` from Arrow data, one batch at a time."""
    pa = _pa("RecordArray.from_arrow")
    arrow_schema, batches = _batches(pa, data, "RecordArray.from_arrow")
    if schema is None:
        schema = schema_from_arrow(arrow_schema, name=name, where="RecordArray.from_arrow")
    return RecordArray.build(_rows(batches), _os.fspath(path), schema=schema, **build_kwargs)


def from_pandas(df, path, *, schema: Schema | None = None, name: str = "Record", **build_kwargs) -> RecordArray:
    """Builds a RecordArray at ``path`` from a DataFrame (through Arrow, ``_BATCH_ROWS`` rows at a time)."""
    pd = _require("pandas", "pandas", "RecordArray.from_pandas")
    pa = _require("pyarrow", "pandas", "RecordArray.from_pandas") and _pa("RecordArray.from_pandas")
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"RecordArray.from_pandas: expected a pandas.DataFrame, not {type(df).__name__}")
    if schema is None:
        arrow_schema = pa.Schema.from_pandas(df.head(0) if len(df) == 0 else df.iloc[:1], preserve_index=False)
        schema = schema_from_arrow(arrow_schema, name=name, where="RecordArray.from_pandas")

    def rows():
        for start in range(0, len(df), _BATCH_ROWS):
            batch = pa.RecordBatch.from_pandas(df.iloc[start:start + _BATCH_ROWS], preserve_index=False)
            yield from batch.to_pylist()

    return RecordArray.build(rows(), _os.fspath(path), schema=schema, **build_kwargs)


# ---------------------------------------------------------------------------------------------------------
# Mapping <-> Arrow

def mapping_to_arrow(m: Mapping):
    """Every entry as a row: ``key`` then the value's fields (or ``value`` for plain values), in hash order."""
    pa = _pa("Mapping.to_arrow")
    if m.approximate:
        raise TypeError(f"Mapping.to_arrow: {m.path} is an approximate mapping, which stores no keys")
    keys, values = [], []
    for k, v in m.items():
        keys.append(k)
        values.append(v)
    cols, names = [pa.array(keys)], ["key"]
    if m.schema is None:
        cols.append(pa.array([_plain(v) for v in values]))
        names.append("value")
    else:
        for fname, t in m.schema.fields.items():
            cols.append(pa.array([_plain(getattr(v, fname)) for v in values], type=_arrow_type(pa, t)))
            names.append(fname)
    return pa.Table.from_arrays(cols, names=names)


def mapping_from_arrow(keys, values, path, *, schema: Schema | None = None, **build_kwargs) -> Mapping:
    """Builds a Mapping from two Arrow columns of equal length: ``keys`` (string or integer) and ``values``
    (a struct column becomes records, any other column plain values)."""
    pa = _pa("Mapping.from_arrow")
    where = "Mapping.from_arrow"
    keys = _as_chunked(pa, keys, where, "keys")
    values = _as_chunked(pa, values, where, "values")
    if len(keys) != len(values):
        raise ValueError(f"{where}: keys has {len(keys)} rows but values has {len(values)}")
    kt = keys.type
    if pa.types.is_string(kt) or pa.types.is_large_string(kt):
        key = str
    elif pa.types.is_integer(kt):
        key = int
    else:
        raise TypeError(f"{where}: the keys column has Arrow type {kt}; keys must be strings or integers")
    if keys.null_count:
        raise ValueError(f"{where}: the keys column has {keys.null_count} null(s); every entry needs a key")
    if schema is None and pa.types.is_struct(values.type):
        schema = schema_from_arrow(pa.schema(list(values.type)), name="Value", where=where)
    if schema is None:
        value = _field_for_arrow(pa, "values", values.type, where)
        return Mapping.build(_pairs(keys, values), _os.fspath(path), key=key, value=value, **build_kwargs)
    return Mapping.build(_pairs(keys, values), _os.fspath(path), key=key, schema=schema, **build_kwargs)


def _as_chunked(pa, col, where, what):
    if isinstance(col, pa.ChunkedArray):
        return col
    if isinstance(col, pa.Array):
        return pa.chunked_array([col])
    raise TypeError(f"{where}: {what} must be a pyarrow Array or ChunkedArray, not {type(col).__name__}")


def _pairs(keys, values):
    """(key, value) pairs, one slice of ``_BATCH_ROWS`` converted at a time."""
    for start in range(0, len(keys), _BATCH_ROWS):
        ks = keys.slice(start, _BATCH_ROWS).to_pylist()
        vs = values.slice(start, _BATCH_ROWS).to_pylist()
        yield from zip(ks, vs)
