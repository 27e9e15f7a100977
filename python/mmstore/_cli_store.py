"""The store commands of the ``mmstore`` command line: info, stats, verify, compact, dump, load and shm.

A target is a path (Dict, List, RecordArray, Mapping or a Pool save file: the kind is read from the file's
header, docs/format.md §1.1 and §7) or ``shm:NAME`` for a SharedDict segment. Every command prints one
human-readable result, or JSON with ``--json``; a bad target prints one line ``mmstore: <what, where>`` on
stderr and exits non-zero: 2 for a missing file or a usage problem, 3 for a corrupt or foreign file.

Dump format (JSON lines): a first line ``{"mmstore_dump": 1, "kind": ..., ...}`` describing the store, then
one line per entry (``{"k": key, "v": value}`` for Dict, Mapping and SharedDict, ``{"v": value}`` for List,
the record's fields for RecordArray). JSON carries None, bool, int, str and finite floats as themselves;
every other codec type is tagged ``{"$t": type, "v": ...}`` (bytes, tuple, list, dict, set, frozenset, date,
datetime, Decimal, float for nan/inf), and anything else (arrays, aware datetimes, records, pickles) is
``{"$t": "codec", "v": base64 of its mmstore encoding}``, so a dump/load round trip is exact.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal as _decimal
import json
import math
import os
import sys

from . import _core
from ._errors import CorruptFileError, Error

DUMP_VERSION = 1
_KINDS = {1: "Dict", 2: "List", 3: "Vector", 4: "RecordArray", 5: "Mapping"}


class CliError(Exception):
    """A usage problem or missing target: exit code 2, one line on stderr."""


# ---------------------------------------------------------------------------------------------------------
# Targets


def kind_of(target: str) -> str:
    """'Dict', 'List', 'Vector', 'RecordArray', 'Mapping', 'PoolFile' or 'SharedDict' (``shm:NAME``)."""
    if target.startswith("shm:"):
        return "SharedDict"
    try:
        with open(target, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        raise CliError(f"{target}: no such file (a SharedDict segment is named shm:NAME)") from None
    except IsADirectoryError:
        raise CliError(f"{target}: is a directory, not a store") from None
    except OSError as exc:
        raise CliError(f"{target}: cannot read: {exc.strerror}") from None
    if head[:8] == b"MMSPILL\0":
        return "PoolFile"
    if len(head) < 16 or head[:8] != b"MMSTORE\0":
        raise CorruptFileError(f"{target}: not an mmstore file (bad magic)", target)
    kind = int.from_bytes(head[12:16], "little")
    if kind not in _KINDS:
        raise CorruptFileError(f"{target}: unknown store kind {kind} in the header", target)
    return _KINDS[kind]


def open_target(target: str, kind: str, readonly: bool = True):
    import mmstore

    if kind == "Dict":
        return mmstore.Dict(target, create=False, readonly=readonly)
    if kind == "List":
        return mmstore.List(target, create=False, readonly=readonly)
    if kind == "RecordArray":
        return mmstore.RecordArray(target)
    if kind == "Mapping":
        return mmstore.Mapping(target)
    if kind == "SharedDict":
        name = target[4:]
        if name not in {s.name for s in mmstore.shared_dicts()}:
            raise CliError(f"{target}: no SharedDict segment named {name!r} (see: mmstore shm ls)")
        return mmstore.SharedDict(name, create=False)
    if kind == "PoolFile":
        return mmstore.load(target, verify=False)
    raise CliError(f"{target}: {kind} files (C++ mmstore::Vector) are not readable from Python")


def _header_version(target: str, kind: str) -> int | None:
    if kind == "SharedDict":
        return None
    with open(target, "rb") as f:
        return int.from_bytes(f.read(12)[8:12], "little")


def _dirty(target: str, kind: str) -> bool | None:
    """The LiveHeader dirty word (docs/format.md §1.3) of a mutable store; None for read-only images."""
    if kind not in ("Dict", "List"):
        return None
    with open(target, "rb") as f:
        f.seek(256)
        return int.from_bytes(f.read(8), "little") != 0


def _schema_desc(schema) -> dict | None:
    if schema is None:
        return None
    return {n: (t.name if hasattr(t, "code") else f"record {t.name}") for n, t in schema.fields.items()}


# ---------------------------------------------------------------------------------------------------------
# info / stats / verify / compact


def info(target: str) -> dict:
    kind = kind_of(target)
    out = {"target": target, "kind": kind}
    if kind != "SharedDict":
        out["format_version"] = _header_version(target, kind)
        out["file_bytes"] = os.path.getsize(target)
    if kind == "PoolFile":
        obj = open_target(target, kind)
        out["object_type"] = type(obj).__name__
        for attr in ("dtype", "shape", "nbytes"):
            if hasattr(obj, attr):
                v = getattr(obj, attr)
                out[attr] = str(v) if attr == "dtype" else (list(v) if attr == "shape" else int(v))
        return out
    store = open_target(target, kind)
    try:
        out["entries"] = len(store)
        if kind in ("RecordArray", "Mapping"):
            out["schema"] = _schema_desc(store.schema)
            out["schema_name"] = store.schema.name if store.schema is not None else None
            if kind == "Mapping":
                out.update(multi=store.multi, approximate=store.approximate, key_type=store.key_type.__name__)
            out["state"] = "read-only image"
        else:
            out["element_types"] = "any codec value (keys and values)" if kind != "List" else "any codec value"
            if kind == "SharedDict":
                seg = {s.name: s for s in __import__("mmstore").shared_dicts()}.get(target[4:])
                if seg is not None:
                    out.update(file_bytes=seg.size, creator_pid=seg.creator_pid)
            else:
                out["state"] = "dirty (open for writing, or not closed cleanly)" if _dirty(target, kind) else "clean"
    finally:
        _close(store)
    return out


def _close(store):
    close = getattr(store, "close", None)
    if close is not None:
        close()


def _image_stats(store, target: str) -> dict:
    from ._arrow import _sections

    sections = _sections(store)
    size = os.path.getsize(target)
    n = len(store)
    out = {"kind": type(store).__name__, "entries": n, "file_bytes": size,
           "bytes_per_entry": round(size / n, 2) if n else None}
    heap = sections.get(1)
    if heap is not None:
        out["heap_bytes"] = heap[1]
    names = store.schema.names if store.schema is not None else ("value",)
    cols = {}
    # per field: its column, presence bitmap and (str/bytes, format version 3) data sections
    for sid, (_off, length) in sorted(sections.items()):
        if 0x100 <= sid < 0x400 and sid % 0x100 < len(names):
            name = names[sid % 0x100]
            cols[name] = cols.get(name, 0) + length
    out["column_bytes"] = cols
    return out


def stats(target: str) -> dict:
    kind = kind_of(target)
    if kind == "PoolFile":
        return {**info(target), "kind": "PoolFile"}
    store = open_target(target, kind)
    try:
        if kind in ("RecordArray", "Mapping"):
            return _image_stats(store, target)
        return {"kind": kind, **store.stats()}
    finally:
        _close(store)


def verify(target: str, progress: bool | None = None, stream=None) -> dict:
    """Checks a store (exit 3 on failure). ``progress``: True draws a bar on ``stream`` (stderr), False none,
    None one when stderr is a terminal and the target is at least ``_BAR_MIN_BYTES``.

    The bar follows the read of the file: verify reads every byte, and on a large file reading it from disk
    is most of the time, so the file is read through in chunks first (each chunk advances the bar), then the
    native check runs over the now cached pages. A SharedDict segment is already in memory: its bar moves
    from 0 to 100% around the check."""
    stream = sys.stderr if stream is None else stream
    kind = kind_of(target)
    size = _target_bytes(target, kind)
    if progress is None:
        progress = stream.isatty() and size >= _BAR_MIN_BYTES
    bar = _Bar(f"verify {target}", size, stream) if progress else None
    try:
        if bar is not None and kind != "SharedDict":
            _read_through(target, bar.update)
        if kind == "PoolFile":
            import mmstore

            obj = mmstore.load(target, verify=True)  # checks the data hashes Pool.save wrote
            del obj
            result = {"target": target, "kind": kind, "ok": True, "entries": 1}
        else:
            store = open_target(target, kind)
            try:
                store.verify()
                result = {"target": target, "kind": kind, "ok": True, "entries": len(store)}
            finally:
                _close(store)
        if bar is not None:
            bar.update(size)
        return result
    finally:
        if bar is not None:
            bar.close()


_BAR_MIN_BYTES = 64 << 20  # automatic bar (terminal only) from this size: smaller files verify in a blink


def _target_bytes(target: str, kind: str) -> int:
    if kind == "SharedDict":
        seg = {s.name: s for s in __import__("mmstore").shared_dicts()}.get(target[4:])
        return seg.size if seg is not None else 0
    return os.path.getsize(target)


def _read_through(path: str, update) -> None:
    """Reads ``path`` sequentially (into the page cache), calling update(bytes read) after each chunk: about
    50 chunks per file, 64 KiB to 16 MiB each."""
    size = os.path.getsize(path)
    chunk = min(16 << 20, max(64 << 10, size // 50))
    buf = bytearray(chunk)
    done = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            done += n
            update(done)


class _Bar:
    """A text progress bar: ``verify PATH [######------]  45%  12.3/27.0 MiB``. On a terminal it is redrawn in
    place (``\r``) and ends with a newline; elsewhere (``--progress`` into a pipe or file) each update is
    one line. At most one update per percent."""

    WIDTH = 30

    def __init__(self, label: str, total: int, stream) -> None:
        self.label, self.total, self.stream = label, max(total, 1), stream
        self.tty = stream.isatty()
        self.shown = -1
        self.update(0)

    def update(self, done: int) -> None:
        pct = min(100, done * 100 // self.total)
        if pct == self.shown:
            return
        self.shown = pct
        fill = pct * self.WIDTH // 100
        line = (f"{self.label} [{'#' * fill}{'-' * (self.WIDTH - fill)}] {pct:3d}%  "
                f"{min(done, self.total) / 2**20:.1f}/{self.total / 2**20:.1f} MiB")
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def upgrade(target: str) -> dict:
    """Convert a format-2 Dict/List file (mmstore 0.2) in place (mmstore::upgrade, docs/format.md)."""
    if target.startswith("shm:"):
        raise CliError(f"{target}: SharedDict segments live only as long as their processes: nothing to upgrade")
    kind = kind_of(target)
    r = _core.upgrade(target)
    return {"kind": kind, **r}


def compact(target: str) -> dict:
    kind = kind_of(target)
    if kind in ("RecordArray", "Mapping", "PoolFile"):
        return {"kind": kind, "compacted": False, "file_bytes": os.path.getsize(target),
                "note": f"a {kind} file is written once at its minimal size: nothing to compact"}
    store = open_target(target, kind, readonly=False)
    try:
        store.compact()
        return {"kind": kind, "compacted": True, **store.stats()}
    finally:
        _close(store)


# ---------------------------------------------------------------------------------------------------------
# JSON tagging of codec values

def to_json(v):
    if v is None or v is True or v is False or type(v) in (int, str):
        return v
    t = type(v)
    if t is float:
        return v if math.isfinite(v) else {"$t": "float", "v": repr(v)}
    if t is bytes:
        return {"$t": "bytes", "v": base64.b64encode(v).decode()}
    if t is list:
        return [to_json(x) for x in v]
    if t is tuple:
        return {"$t": "tuple", "v": [to_json(x) for x in v]}
    if t is dict:
        return {"$t": "dict", "v": [[to_json(k), to_json(x)] for k, x in v.items()]}
    if t in (set, frozenset):
        return {"$t": t.__name__, "v": [to_json(x) for x in v]}
    if t is _dt.date:
        return {"$t": "date", "v": v.isoformat()}
    if t is _dt.datetime and v.tzinfo is None:
        return {"$t": "datetime", "v": v.isoformat(), "fold": v.fold}
    if t is _decimal.Decimal:
        return {"$t": "Decimal", "v": str(v)}
    from ._records import RecordProxy

    if isinstance(v, RecordProxy):
        return {"$t": "record", "v": {n: to_json(x) for n, x in zip(v._schema.names, v._values())}}
    return {"$t": "codec", "v": base64.b64encode(_core.encode(v)).decode()}


def from_json(v):
    if isinstance(v, list):
        return [from_json(x) for x in v]
    if not isinstance(v, dict):
        return v
    t, x = v.get("$t"), v.get("v")
    if t == "float":
        return float(x)
    if t == "bytes":
        return base64.b64decode(x)
    if t == "tuple":
        return tuple(from_json(i) for i in x)
    if t == "dict":
        return {from_json(k): from_json(i) for k, i in x}
    if t == "set":
        return {from_json(i) for i in x}
    if t == "frozenset":
        return frozenset(from_json(i) for i in x)
    if t == "date":
        return _dt.date.fromisoformat(x)
    if t == "datetime":
        return _dt.datetime.fromisoformat(x).replace(fold=v.get("fold", 0))
    if t == "Decimal":
        return _decimal.Decimal(x)
    if t == "record":
        return {n: from_json(i) for n, i in x.items()}
    if t == "codec":
        return _core.decode(base64.b64decode(x))
    raise ValueError(f"unknown tag {t!r} in a dump line")


# ---------------------------------------------------------------------------------------------------------
# dump / load

def dump(target: str, out, fmt: str = "jsonl") -> int:
    """Writes the store to ``out`` (a binary file); returns the number of entries."""
    kind = kind_of(target)
    if kind == "PoolFile":
        raise CliError(f"{target}: a Pool save file holds one object; read it with mmstore.load()")
    store = open_target(target, kind)
    try:
        if fmt == "arrow":
            if kind not in ("RecordArray", "Mapping"):
                raise CliError(f"{target}: --format arrow is for RecordArray and Mapping files, not {kind}")
            return _dump_arrow(store, out)
        head = {"mmstore_dump": DUMP_VERSION, "kind": kind}
        if kind in ("RecordArray", "Mapping"):
            head["schema"] = base64.b64encode(store.schema.blob).decode() if store.schema is not None else None
        if kind == "Mapping":
            if store.approximate:
                raise CliError(f"{target}: an approximate Mapping stores no keys and cannot be dumped")
            head.update(multi=store.multi, key_type=store.key_type.__name__)
        _line(out, head)
        n = 0
        if kind in ("Dict", "SharedDict", "Mapping"):
            for k, v in store.items():
                _line(out, {"k": to_json(k), "v": to_json(v)})
                n += 1
        elif kind == "List":
            for v in store:
                _line(out, {"v": to_json(v)})
                n += 1
        else:
            names = store.schema.names
            for r in store:
                _line(out, {nm: to_json(x) for nm, x in zip(names, r._values())})
                n += 1
        return n
    finally:
        _close(store)


def _line(out, obj) -> None:
    out.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")


def _dump_arrow(store, out) -> int:
    from ._arrow import _pa

    pa = _pa("mmstore dump --format arrow")
    table = store.to_arrow()
    meta = {b"mmstore.kind": type(store).__name__.encode()}
    if store.schema is not None:
        meta[b"mmstore.schema"] = store.schema.blob
    table = table.replace_schema_metadata(meta)
    with pa.ipc.new_file(out, table.schema) as w:
        w.write_table(table)
    return table.num_rows


def load(source: str, target: str) -> int:
    """Reads a dump (JSON lines or an Arrow file from ``dump --format arrow``) into a new store at ``target``."""
    import mmstore

    from ._records import Schema

    if target.startswith("shm:"):
        dest_kind = "SharedDict"
    elif os.path.exists(target):
        raise CliError(f"{target}: already exists (load writes a new store)")
    else:
        dest_kind = None
    with open(source, "rb") as f:
        magic = f.read(6)
    if magic == b"ARROW1":
        return _load_arrow(source, target)
    with open(source, "rb") as f:
        first = f.readline()
        try:
            head = json.loads(first)
        except ValueError:
            raise CorruptFileError(f"{source}: line 1 is not JSON: not an mmstore dump", source) from None
        if not isinstance(head, dict) or head.get("mmstore_dump") != DUMP_VERSION:
            raise CorruptFileError(f"{source}: line 1 is not an mmstore dump header", source)
        kind = head.get("kind")
        if dest_kind == "SharedDict" and kind not in ("Dict", "SharedDict"):
            raise CliError(f"{target}: a {kind} dump cannot be loaded into a SharedDict")

        def lines():
            for lineno, raw in enumerate(f, start=2):
                try:
                    yield json.loads(raw)
                except ValueError:
                    raise CorruptFileError(f"{source}: line {lineno} is not JSON", source) from None

        if kind in ("Dict", "SharedDict"):
            if dest_kind == "SharedDict":  # kept after this process exits: remove with mmstore shm rm
                store = mmstore.SharedDict(target[4:], create=True, auto_unlink=False)
            else:
                store = mmstore.Dict(target)
            with store:
                n = 0
                for e in lines():
                    store[from_json(e["k"])] = from_json(e["v"])
                    n += 1
            return n
        if kind == "List":
            with mmstore.List(target) as lst:
                lst.extend(from_json(e["v"]) for e in lines())
                return len(lst)
        if kind == "RecordArray":
            schema = Schema.from_blob(base64.b64decode(head["schema"]))
            rows = ({k: from_json(v) for k, v in e.items()} for e in lines())
            with mmstore.RecordArray.build(rows, target, schema=schema, progress=False) as arr:
                return len(arr)
        if kind == "Mapping":
            schema = Schema.from_blob(base64.b64decode(head["schema"])) if head.get("schema") else None
            key = {"str": str, "int": int}.get(head.get("key_type"), object)
            pairs = ((from_json(e["k"]), from_json(e["v"])) for e in lines())
            if schema is None:
                m = mmstore.Mapping.build(pairs, target, key=key, multi=head.get("multi", False), progress=False)
            else:
                m = mmstore.Mapping.build(pairs, target, key=key, schema=schema, multi=head.get("multi", False),
                                          progress=False)
            with m:
                return len(m)
        raise CorruptFileError(f"{source}: dump of unknown kind {kind!r}", source)


def _load_arrow(source: str, target: str) -> int:
    from ._arrow import _pa
    from ._records import Schema

    import mmstore

    pa = _pa("mmstore load of an Arrow file")
    with pa.memory_map(source) as src:
        table = pa.ipc.open_file(src).read_all()
    meta = table.schema.metadata or {}
    blob = meta.get(b"mmstore.schema")
    schema = Schema.from_blob(blob) if blob else None
    if meta.get(b"mmstore.kind") == b"Mapping":
        values = table.drop(["key"]) if schema is not None else None
        vals = (pa.StructArray.from_arrays([c.combine_chunks() for c in values.columns], names=values.column_names)
                if values is not None else table.column("value"))
        with mmstore.Mapping.from_arrow(table.column("key"), vals, target, schema=schema, progress=False) as m:
            return len(m)
    with mmstore.RecordArray.from_arrow(table, target, schema=schema, progress=False) as arr:
        return len(arr)


# ---------------------------------------------------------------------------------------------------------
# shm

def shm_ls() -> list[dict]:
    import mmstore

    return [s._asdict() for s in mmstore.shared_dicts()]


def shm_rm(name: str, force: bool = False) -> dict:
    import mmstore

    name = name[4:] if name.startswith("shm:") else name
    seg = {s.name: s for s in mmstore.shared_dicts()}.get(name)
    if seg is None:
        raise CliError(f"shm:{name}: no such SharedDict segment (see: mmstore shm ls)")
    if seg.in_use and not force:
        raise CliError(f"shm:{name}: in use by a running process (creator pid {seg.creator_pid}); "
                       f"--force removes it anyway")
    mmstore.SharedDict.unlink_by_name(name)
    return {"removed": [name]}


def shm_gc() -> dict:
    import mmstore

    removed = []
    for s in mmstore.shared_dicts():
        if not s.in_use:
            try:
                mmstore.SharedDict.unlink_by_name(s.name)
                removed.append(s.name)
            except Error:
                pass  # attached or removed meanwhile: it is no longer ours to collect
    return {"removed": removed}
