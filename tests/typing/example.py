"""A small program that uses every public class of mmstore, type-checked with ``mypy --strict`` in CI
(scripts/test.sh): it fails when the package's annotations or stubs (py.typed, _core.pyi) stop describing
the API. It also runs: ``python tests/typing/example.py`` (in a temporary directory)."""

from __future__ import annotations

import os
import tempfile

import mmstore


@mmstore.struct
class Item:
    x: int  # mmstore.int32 etc. choose a fixed width, but are not types to a type checker
    name: str


def main(directory: str) -> None:
    with mmstore.Dict(os.path.join(directory, "d.mms")) as d:
        d["a"] = 1
        keys: mmstore.DictKeys = d.keys()
        values: mmstore.DictValues = d.values()
        items: mmstore.DictItems = d.items()
        assert list(keys) == ["a"] and list(values) == [1] and list(items) == [("a", 1)]
        lock: mmstore.StoreLock = d.lock
        with lock:
            d.update_many({"b": 2})
        stats: dict[str, object] = d.stats()
        assert stats

    with mmstore.List(os.path.join(directory, "l.mms")) as lst:
        lst.extend(range(3))
        assert lst[0] == 0 and len(lst) == 3

    shared = mmstore.SharedDict(recurse=True)
    try:
        shared["n"] = {"k": 1}
        nested = shared["n"]
        assert isinstance(nested, mmstore.NestedDict)
        infos: list[mmstore.SharedDictInfo] = mmstore.shared_dicts()
        assert any(i.name == shared.name for i in infos)
    finally:
        shared.close()

    with mmstore.Pool(max_memory=1 << 20) as pool:
        ref: mmstore.Ref = pool.put(b"payload")
        assert pool.get(ref) == b"payload"
        assert not mmstore.is_mapped(b"")

    arr = mmstore.RecordArray.build([Item(1, "a")], os.path.join(directory, "a.mms"), schema=Item)
    schema: mmstore.Schema = arr.schema
    assert schema.names == ("x", "name") and len(arr) == 1
    m = mmstore.Mapping.build({"k": Item(2, "b")}, os.path.join(directory, "m.mms"), key=str, schema=Item)
    assert "k" in m
    proxy: mmstore.RecordProxy = arr[0]
    assert proxy is not None and len(arr[0:1]) == 1

    data: bytes = mmstore.encode((1, "x"))
    assert mmstore.decode(data) == (1, "x")
    assert isinstance(mmstore.__version__, str) and mmstore.FORMAT_VERSION >= 1
    try:
        mmstore.Dict(os.path.join(directory, "missing.mms"), create=False)
    except mmstore.StoreNotFoundError as e:
        err: mmstore.Error = e
        assert err


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        main(tmp)
