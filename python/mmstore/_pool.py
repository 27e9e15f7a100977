"""mmstore.Pool: a memory-limited object pool that spills to disk and restores by mapping (MemPool.jl).

Objects live in RAM until the bytes in RAM would exceed ``max_memory``; then the least recently used
objects (``policy="lru"``, or the most recently used with ``"mru"``) are written to *spill files* and their
RAM released. ``get`` of a spilled object maps its file read-only: numpy arrays, ``memoryview`` objects and
every out-of-band buffer of a pickled object come back as zero-copy read-only views of the mapping, so
restoring a 1 GiB array costs about what restoring a 1 MiB one does.

The spill format (docs/format.md, "Spill files") and its files are the engine's ``SpillStore``
(include/mmstore/containers/spill_store.hpp); this module decides what to spill and how Python objects
become buffers:

* an exact ``numpy.ndarray`` (C-contiguous, plain dtype) is one raw buffer plus dtype and shape, readable by
  C++ ``mmstore::Pool::load``; ``bytes`` likewise (restored as a copy: a ``bytes`` object owns its storage);
  a ``memoryview`` is one raw buffer restored as a read-only view;
* a type registered with :func:`register_spill` spills through its own ``dump`` (metadata + raw buffers)
  and comes back through its ``load`` given zero-copy views of the mapping -- the per-type hook that
  MemPool.jl's ``mmwrite``/``mmread`` are, and what numpy arrays get built in; no pickle is involved, so it
  works with ``allow_pickle=False``;
* anything else is pickled with protocol 5 and out-of-band buffers: the pickle stream is buffer 0 and every
  buffer pickle hands out (numpy arrays anywhere inside dicts, lists or custom objects, ``PickleBuffer``)
  is a page-aligned raw buffer of its own, restored as a view of the mapping.

Accounting: sizes are exact for numpy arrays, bytes, bytearray, memoryview and mmstore stores (their file
size), estimated for the rest (``sys.getsizeof`` plus a sampled recursive estimate for containers and
instance dictionaries); ``put(obj, size=...)`` wins. An object larger than ``max_memory`` goes straight to
disk and is never cached: ``get`` returns it mapped without counting it. Hence ``stats()["ram_bytes"] <=
max_memory`` after every call -- stronger than MemPool, whose ``get`` of such an object exceeds the limit.
An object that cannot be pickled is never spilled (it stays in RAM and is skipped by eviction).

Threads: every method holds one lock (spill writes run with the GIL released). Processes: a :class:`Ref`
pickles; another process reads it with :meth:`Ref.get` once it is on disk (``move_to_disk``/``copy_to_disk``
or evicted) or in shared memory (``share``). Files are removed by ``delete``, ``close``, garbage collection
of the pool, or -- after a crash -- by the next pool created in the same ``spill_dir``.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import tempfile
import threading
import weakref
from collections import OrderedDict

from . import _core
from ._core import decode, encode
from ._errors import ClosedError, CorruptFileError, DiskFullError, EncodeError, StoreNotFoundError

__all__ = ["Pool", "Ref", "load", "is_mapped", "sizeof", "parse_bytes", "register_spill"]


def _log():
    # logging is imported on first use: it is most of what `import mmstore` would otherwise cost.
    import logging

    return logging.getLogger("mmstore.pool")


_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_bytes(value) -> int:
    """``2**30``, ``"2GiB"``, ``"500 MB"``, ``"1.5e9"`` -> bytes (SI and binary units, case-insensitive)."""
    if isinstance(value, bool):
        raise TypeError("a byte size must be an int or a string like '2GiB', not bool")
    if isinstance(value, (int, float)):
        n = int(value)
    elif isinstance(value, str):
        m = _SIZE_RE.match(value)
        if not m or m.group(2).lower() not in _UNITS:
            raise ValueError(f"cannot parse byte size {value!r} (examples: 1048576, '512MiB', '2GB')")
        n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    else:
        raise TypeError(f"a byte size must be an int or a string like '2GiB', not {type(value).__name__}")
    if n < 0:
        raise ValueError(f"a byte size cannot be negative: {value!r}")
    return n


# ---------------------------------------------------------------------------------------------- sizes

_SAMPLE = 32  # containers larger than this are estimated from an evenly spaced sample


def _is_ndarray(obj) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.ndarray)


def sizeof(obj, _depth: int = 0) -> int:
    """Bytes ``obj`` holds in memory, as the pool counts them (exact for buffers, estimated otherwise)."""
    t = type(obj)
    if t is bytes or t is bytearray:
        return len(obj)
    if t is memoryview:
        return obj.nbytes
    if _is_ndarray(obj):
        n = int(obj.nbytes)
        if obj.dtype.hasobject and obj.size:
            n += _sampled(obj.ravel(), len(obj.ravel()), _depth)
        return n
    if t.__module__ == "mmstore._dict" or t.__module__ == "mmstore._list":
        try:
            return int(obj.stats()["file_bytes"])
        except Exception:  # a closed store
            return sys.getsizeof(obj)
    try:
        base = sys.getsizeof(obj)
    except Exception:
        base = 64
    if _depth >= 6:
        return base
    if t in (list, tuple, set, frozenset):
        return base + _sampled(obj if t in (list, tuple) else list(obj), len(obj), _depth)
    if t is dict:
        return base + _sampled(list(obj.keys()), len(obj), _depth) + _sampled(list(obj.values()), len(obj), _depth)
    if t is str or t is int or t is float:
        return base
    d = getattr(obj, "__dict__", None)
    if type(d) is dict:
        return base + sizeof(d, _depth + 1)
    return base


def _sampled(items, n: int, depth: int) -> int:
    if n <= _SAMPLE:
        return sum(sizeof(x, depth + 1) for x in items)
    step = n / _SAMPLE
    return int(sum(sizeof(items[int(i * step)], depth + 1) for i in range(_SAMPLE)) * step)


# ------------------------------------------------------------------------------------ spill encoding


# register_spill: exact type -> (name, dump); name -> load.
_SPILL_DUMP: dict = {}
_SPILL_LOAD: dict = {}


def register_spill(cls: type, dump, load, *, name: str | None = None) -> None:
    """Give ``cls`` its own spill format (the Pool's per-type hook; MemPool.jl's ``mmwrite``/``mmread``).

    * ``dump(obj) -> (meta, buffers)``: ``meta`` is any value mmstore's codec stores natively (None, numbers,
      str, bytes, tuples, lists, dicts ...; no pickle), ``buffers`` a list of objects exporting the buffer
      protocol (bytes, numpy arrays, memoryviews ...). Each buffer is written raw and page-aligned.
    * ``load(meta, views) -> obj``: ``views`` are read-only ``memoryview`` objects of the mapped spill file,
      one per buffer, valid as long as anything refers to them (the mapping stays open while a view lives):
      build the object on them to restore it zero-copy, as numpy arrays are.
    * ``name``: what the spill file records to find ``load`` again, in this or another process (default
      ``"module.QualName"`` of ``cls``); the reading process must have registered it too.

    Only objects whose type is exactly ``cls`` use the hook (a subclass registers itself). Hooked objects
    never go through pickle, so they spill and restore in a ``Pool(allow_pickle=False)``; registering again
    replaces the hook. ``dump`` raising makes the object unspillable (it stays in RAM, as an unpicklable one
    does)."""
    if not isinstance(cls, type):
        raise TypeError(f"register_spill: expected a type, got {type(cls).__name__}")
    if not callable(dump) or not callable(load):
        raise TypeError("register_spill: dump and load must be callable")
    name = name if name is not None else f"{cls.__module__}.{cls.__qualname__}"
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_spill: name must be a non-empty str, not {name!r}")
    _SPILL_DUMP[cls] = (name, dump)
    _SPILL_LOAD[name] = load


def _raw_bytes(buf):
    """The bytes of a buffer as a flat byte view (one copy only when it is not contiguous)."""
    mv = memoryview(buf)
    if not mv.c_contiguous:
        return mv.tobytes()
    return mv.cast("B") if mv.ndim != 1 or mv.format != "B" else mv


def _spill_parts(obj, allow_pickle: bool = True) -> tuple[bytes, list]:
    """(codec-encoded metadata, raw buffers) of ``obj``; see the module docstring."""
    t = type(obj)
    hook = _SPILL_DUMP.get(t)
    if hook is not None:
        name, dump = hook
        try:
            meta, bufs = dump(obj)
            raws = [_raw_bytes(b) for b in bufs]
            return encode({"kind": "custom", "type": name, "meta": meta}), raws
        except Exception as exc:
            raise EncodeError(f"cannot spill a value of type {t.__module__}.{t.__qualname__}: its spill hook "
                              f"{name!r} failed: {exc!r}") from exc
    if _is_ndarray(obj) and t.__module__ == "numpy":
        dt = obj.dtype
        if not dt.hasobject and dt.fields is None and obj.flags.c_contiguous and dt.str != "|V0":
            import numpy as np

            if np.dtype(dt.str) == dt:
                meta = {"kind": "ndarray", "dtype": dt.str, "shape": [int(d) for d in obj.shape]}
                return encode(meta), [obj.reshape(-1).view("u1") if obj.size else b""]
    if t is bytes:
        return encode({"kind": "bytes"}), [obj]
    if t is memoryview:
        meta = {"kind": "bytes", "memoryview": True, "format": obj.format, "shape": list(obj.shape)}
        return encode(meta), [obj if obj.c_contiguous else obj.tobytes()]
    if not allow_pickle:
        raise EncodeError(f"cannot spill a value of type {t.__module__}.{t.__qualname__}: it has no native spill "
                          "format or spill hook (mmstore.register_spill) and the pool has allow_pickle=False")
    buffers: list = []
    try:
        payload = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:
        raise EncodeError(f"cannot spill a value of type {t.__module__}.{t.__qualname__}: {exc}") from exc
    raws = []
    for pb in buffers:
        try:
            raws.append(pb.raw())
        except BufferError:  # non-contiguous: one copy, still out of band
            raws.append(memoryview(pb).tobytes())
    return encode({"kind": "pickle5"}), [payload, *raws]


def _restore(mapping, allow_pickle: bool = True) -> object:
    """The object of a mapped spill file; buffers are zero-copy views of the mapping (except ``bytes``)."""
    try:
        meta = decode(mapping.meta)
        kind = meta["kind"]
    except Exception as exc:
        raise CorruptFileError(f"{mapping.path}: spill metadata is not a valid record ({exc})", mapping.path) from exc
    whole = memoryview(mapping)
    views = [whole[o : o + n] for o, n in mapping.ranges]
    if kind == "ndarray":
        import numpy as np

        dtype = np.dtype(meta["dtype"])
        shape = tuple(meta["shape"])
        if len(views) != 1:
            raise CorruptFileError(f"{mapping.path}: an ndarray spill file has one buffer", mapping.path)
        if dtype.itemsize == 0 or len(views[0]) == 0:
            return np.empty(shape, dtype)
        return np.frombuffer(views[0], dtype=dtype).reshape(shape)
    if kind == "bytes":
        if meta.get("memoryview"):
            shape = meta["shape"]
            try:
                return views[0].cast(meta["format"], shape) if shape and all(shape) else views[0]
            except (TypeError, ValueError):
                return views[0]
        return bytes(views[0])
    if kind == "custom":
        load = _SPILL_LOAD.get(meta.get("type"))
        if load is None:
            raise EncodeError(f"{mapping.path}: spilled object of type {meta.get('type')!r} has no spill hook "
                              "registered in this process (mmstore.register_spill)")
        return load(meta.get("meta"), views)
    if kind == "pickle5":
        if not allow_pickle:
            raise EncodeError(f"{mapping.path}: refusing to unpickle a spilled object (allow_pickle=False)")
        return pickle.loads(views[0], buffers=views[1:])
    raise CorruptFileError(f"{mapping.path}: unknown spill object kind {kind!r}", mapping.path)


def load(path, verify: bool = True, allow_pickle: bool = True):
    """Read back a file written by :meth:`Pool.save` (or C++ ``mmstore::Pool::save``).

    Buffers are mapped, not read: arrays come back as read-only views of the file. ``verify`` checks the
    data checksums ``save`` wrote (one pass over the data); the header is always checked.
    ``allow_pickle=False`` refuses a pickled object (``EncodeError``): only arrays, bytes, memoryviews and
    types with a spill hook (:func:`register_spill`) load.
    """
    return _restore(_core._SpillMapping(os.fspath(path), verify), allow_pickle)


def is_mapped(obj) -> bool:
    """True when ``obj`` (a numpy array or memoryview) is a zero-copy view of an mmstore spill file."""
    seen = 0
    while obj is not None and seen < 64:
        if type(obj) is _core._SpillMapping:
            return True
        obj = obj.obj if type(obj) is memoryview else getattr(obj, "base", None)
        seen += 1
    return False


# ---------------------------------------------------------------------------------------------- refs

_live_pools: "weakref.WeakValueDictionary[str, Pool]" = weakref.WeakValueDictionary()


class Ref:
    """A handle to one object of a :class:`Pool`. Picklable; hashable; compares by (pool, id).

    ``ref.get()`` returns the object: through its pool in the owning process, and in any other process on
    the same machine from its shared-memory copy (:meth:`Pool.share`) or its spill file.
    """

    __slots__ = ("pool_id", "id", "size", "_dirs")

    def __init__(self, pool_id: str, id: int, size: int, dirs: tuple):
        self.pool_id = pool_id
        self.id = id
        self.size = size
        self._dirs = dirs

    def get(self):
        pool = _live_pools.get(self.pool_id)
        if pool is not None and not pool.closed:
            return pool.get(self)
        return _read_shared(self)

    def __reduce__(self):
        return (Ref, (self.pool_id, self.id, self.size, self._dirs))

    def __eq__(self, other):
        if type(other) is not Ref:
            return NotImplemented
        return self.id == other.id and self.pool_id == other.pool_id

    def __hash__(self):
        return hash((self.pool_id, self.id))

    def __repr__(self):
        return f"Ref({self.pool_id!r}, id={self.id}, size={self.size})"


def _file(directory: str, id: int) -> str:
    return f"{directory}/{id}.spill"


def _pool_of(ref: Ref) -> "Pool":
    """The live pool owning ``ref`` in this process (KeyError when it is not here)."""
    pool = _live_pools.get(ref.pool_id) if type(ref) is Ref else None
    if pool is None or pool.closed:
        raise KeyError(f"{ref!r} belongs to no open pool of this process")
    return pool


def _read_shared(ref: Ref):
    for d in ref._dirs[::-1]:  # shared memory first, then disk
        if not d:
            continue
        try:
            return _restore(_core._SpillMapping(_file(d, ref.id)))
        except StoreNotFoundError:
            continue
    raise KeyError(
        f"{ref!r} is not readable from this process: its pool has neither spilled nor shared it "
        "(call pool.copy_to_disk(ref) or pool.share(ref) in the owning process), or it was deleted"
    )


# ---------------------------------------------------------------------------------------------- pool

_MISSING = object()
_TRIM_AFTER = 4 << 20  # trim the heap once this many bytes were released by spills


class _Entry:
    __slots__ = ("obj", "size", "disk", "shm", "pinned")

    def __init__(self, obj, size: int):
        self.obj = obj  # _MISSING when not cached in RAM
        self.size = size
        self.disk = 0  # bytes of the spill file, 0 when none
        self.shm = 0  # bytes of the shared-memory copy, 0 when none
        self.pinned = False  # could not be pickled: never evicted


def _shm_parent() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class Pool:
    """A memory-limited object pool that spills least-recently-used objects to disk (module docstring).

    ``max_memory``: bytes or a string like ``"2GiB"``. ``spill_dir``: where the pool creates its private
    directory (default: the system temporary directory). ``policy``: ``"lru"`` or ``"mru"``.
    ``allow_pickle=False``: objects that would be pickled to spill (no native format, no
    :func:`register_spill` hook) are never spilled and stay in RAM, and no spilled pickle is read back.
    """

    def __init__(self, max_memory="2GiB", spill_dir=None, policy: str = "lru", *, allow_pickle: bool = True):
        self._allow_pickle = bool(allow_pickle)
        self._max = parse_bytes(max_memory)
        if policy not in ("lru", "mru"):
            raise ValueError(f"policy must be 'lru' or 'mru', not {policy!r}")
        self._lru = policy == "lru"
        parent = os.path.abspath(os.fspath(spill_dir) if spill_dir is not None else tempfile.gettempdir())
        os.makedirs(parent, mode=0o700, exist_ok=True)
        self._dir = _core._SpillDir(parent)
        shm = _shm_parent()
        self._shm_dir = _core._SpillDir(shm) if shm else None
        self._id = os.path.basename(self._dir.path)
        self._dirs = (self._dir.path, self._shm_dir.path if self._shm_dir else "")
        self._lock = threading.RLock()
        self._entries: dict[int, _Entry] = {}
        self._order: OrderedDict[int, None] = OrderedDict()  # cached ids, least recently used first
        self._ram = 0
        self._released = 0  # bytes released since the last heap trim
        self._next = 1
        self._hits = self._misses = self._spills = self._restores = 0
        self._closed = False
        self._finalizer = weakref.finalize(self, _close_dirs, self._dir, self._shm_dir)
        _live_pools[self._id] = self

    # -- properties

    @property
    def max_memory(self) -> int:
        """The RAM limit in bytes. Assigning a lower one spills until it holds."""
        return self._max

    @max_memory.setter
    def max_memory(self, value) -> None:
        n = parse_bytes(value)
        with self._lock:
            self._check()
            self._max = n
            self._make_room(0)

    @property
    def policy(self) -> str:
        return "lru" if self._lru else "mru"

    @property
    def directory(self) -> str:
        """This pool's private spill directory (removed by :meth:`close`)."""
        return self._dir.path

    @property
    def closed(self) -> bool:
        return self._closed

    # -- operations

    def put(self, obj, size=None) -> Ref:
        """Store ``obj`` and return its :class:`Ref`; spills other objects first if RAM would exceed the limit.

        Raises :class:`DiskFullError` when a needed spill fails for lack of space; the pool is then unchanged
        except for the objects already spilled, and ``obj`` is not stored.
        """
        return self._put(obj, size, strict=True)

    def _put(self, obj, size, strict: bool) -> Ref:
        sz = sizeof(obj) if size is None else parse_bytes(size)
        with self._lock:
            self._check()
            id = self._next
            e = _Entry(obj, sz)
            if sz > self._max:
                try:
                    self._write(id, e)  # too large to cache: straight to disk
                    e.obj = _MISSING
                except (EncodeError, OSError):
                    if strict:
                        raise
                    _log().error("mmstore pool %s: cannot spill a value larger than max_memory; keeping it in "
                                 "memory", self._id, exc_info=True)
                    self._order[id] = None
                    self._ram += sz
            else:
                try:
                    self._make_room(sz)
                except DiskFullError:
                    if strict:
                        raise
                    _log().error("mmstore pool %s: disk full while spilling; keeping data in memory", self._id)
                self._order[id] = None
                self._ram += sz
            self._entries[id] = e
            self._next += 1
            return Ref(self._id, id, sz, self._dirs)

    def get(self, ref: Ref):
        """The object of ``ref``; a spilled one is mapped back, cached and marked most recently used.

        ``KeyError`` for an unknown (or deleted) ref. A ref of another pool is read from its shared or
        spilled copy, as :meth:`Ref.get` does.
        """
        if type(ref) is not Ref:
            raise TypeError(f"expected an mmstore.Ref, got {type(ref).__name__}")
        if ref.pool_id != self._id:
            return _read_shared(ref)
        with self._lock:
            e = self._entry(ref)
            if e.obj is not _MISSING:
                self._hits += 1
                self._order.move_to_end(ref.id)
                return e.obj
            self._misses += 1
            obj = _restore(_core._SpillMapping(_file(self._dir.path, ref.id)), self._allow_pickle)
            self._restores += 1
            if e.size <= self._max:
                try:
                    self._make_room(e.size)
                except OSError:
                    return obj  # served mapped, uncached: the disk refused the spills that would make room
                e.obj = obj
                self._order[ref.id] = None
                self._ram += e.size
            return obj

    def delete(self, ref: Ref) -> None:
        """Free the object's RAM, spill file and shared copy. ``KeyError`` if unknown."""
        with self._lock:
            e = self._entry(ref)
            self._drop(ref.id, e)
            for d, n in ((self._dir.path, e.disk), (self._dirs[1], e.shm)):
                if n:
                    try:
                        os.unlink(_file(d, ref.id))
                    except FileNotFoundError:
                        pass
            del self._entries[ref.id]
            self._trim()

    def move_to_disk(self, ref: Ref) -> None:
        """Write the object to its spill file (if not there yet) and release its RAM."""
        with self._lock:
            e = self._entry(ref)
            if e.obj is not _MISSING:
                self._write(ref.id, e)
                self._drop(ref.id, e)
                self._trim()

    def copy_to_disk(self, ref: Ref) -> None:
        """Write the object to its spill file (if not there yet) and keep it in RAM."""
        with self._lock:
            e = self._entry(ref)
            if e.obj is not _MISSING:
                self._write(ref.id, e)

    def share(self, ref: Ref) -> Ref:
        """Place a copy in shared memory (``/dev/shm``) so other processes can ``get`` it; returns ``ref``."""
        with self._lock:
            e = self._entry(ref)
            if self._shm_dir is None:
                raise OSError("no shared memory directory (/dev/shm) on this system; use copy_to_disk")
            if not e.shm:
                meta, bufs = _spill_parts(self._object(ref.id, e), self._allow_pickle)
                e.shm = _core._spill_write(_file(self._shm_dir.path, ref.id), meta, bufs)
            return ref

    def save(self, ref: Ref, path) -> None:
        """Write the object to ``path`` as a standalone spill file (fsync'ed, data checksummed); see :func:`load`."""
        with self._lock:
            obj = self._object(ref.id, self._entry(ref))
        meta, bufs = _spill_parts(obj, self._allow_pickle)
        _core._spill_write(os.fspath(path), meta, bufs, sync=True, hash_data=True)

    def stats(self) -> dict:
        """Bytes in RAM and on disk, object counts, hits, misses, spills and restores."""
        with self._lock:
            disk = [e.disk for e in self._entries.values() if e.disk]
            return {
                "ram_bytes": self._ram,
                "disk_bytes": sum(disk),
                "shared_bytes": sum(e.shm for e in self._entries.values()),
                "count": len(self._entries),
                "ram_count": len(self._order),
                "disk_count": len(disk),
                "hits": self._hits,
                "misses": self._misses,
                "spills": self._spills,
                "restores": self._restores,
                "max_memory": self._max,
            }

    def close(self) -> None:
        """Drop every object and remove the pool's files. Idempotent; later operations raise ClosedError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._entries.clear()
            self._order.clear()
            self._ram = 0
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, ref) -> bool:
        return type(ref) is Ref and ref.pool_id == self._id and ref.id in self._entries

    def __reduce__(self):
        raise TypeError("a Pool cannot be pickled; pickle its Refs instead (Ref.get() reads shared or spilled objects)")

    def __repr__(self):
        state = "closed" if self._closed else f"{len(self._entries)} objects, {self._ram}/{self._max} bytes in RAM"
        return f"<mmstore.Pool {self.policy} {state} at {self._dir.path!r}>"

    # -- internals (called with the lock held)

    def _check(self):
        if self._closed:
            raise ClosedError("operation on a closed Pool", self._dirs[0])

    def _entry(self, ref: Ref) -> _Entry:
        self._check()
        if type(ref) is not Ref:
            raise TypeError(f"expected an mmstore.Ref, got {type(ref).__name__}")
        e = self._entries.get(ref.id) if ref.pool_id == self._id else None
        if e is None:
            raise KeyError(ref)
        return e

    def _object(self, id: int, e: _Entry):
        if e.obj is not _MISSING:
            return e.obj
        return _restore(_core._SpillMapping(_file(self._dir.path, id)), self._allow_pickle)

    def _write(self, id: int, e: _Entry) -> None:
        if e.disk:
            return
        try:
            meta, bufs = _spill_parts(e.obj, self._allow_pickle)
        except EncodeError:
            e.pinned = True
            raise
        e.disk = _core._spill_write(_file(self._dir.path, id), meta, bufs)
        self._spills += 1

    def _drop(self, id: int, e: _Entry) -> None:
        if e.obj is not _MISSING:
            e.obj = _MISSING
            del self._order[id]
            self._ram -= e.size
            self._released += e.size

    def _trim(self) -> None:
        # Give the heap blocks of released objects back to the OS (os::trim_heap explains why); batched so
        # that pools of small objects do not pay one call per eviction.
        if self._released >= _TRIM_AFTER:
            self._released = 0
            _core._trim_heap()

    def _victims(self):
        order = self._order if self._lru else reversed(self._order)
        return [id for id in order if not self._entries[id].pinned]

    def _make_room(self, need: int) -> None:
        if self._ram + need <= self._max:
            return
        try:
            for id in self._victims():
                e = self._entries[id]
                try:
                    self._write(id, e)
                except EncodeError as exc:
                    _log().warning("mmstore pool %s: object %d cannot be spilled and stays in RAM: %s", self._id, id,
                                   exc)
                    continue
                self._drop(id, e)
                if self._ram + need <= self._max:
                    return
        finally:
            self._trim()

    def _evict_one(self) -> int:
        """Spill the next victim; its size, or -1 when nothing could be spilled (for mmstore.dask)."""
        with self._lock:
            for id in self._victims():
                e = self._entries[id]
                try:
                    self._write(id, e)
                except EncodeError as exc:
                    _log().warning("mmstore pool %s: object %d cannot be spilled: %s", self._id, id, exc)
                    continue
                except OSError as exc:
                    _log().error("mmstore pool %s: spill failed, data kept in memory: %s", self._id, exc)
                    return -1
                self._drop(id, e)
                self._trim()
                return e.size
            return -1


def _close_dirs(*dirs) -> None:
    for d in dirs:
        if d is not None:
            d.close()
