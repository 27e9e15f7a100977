"""mmstore.compat.pyrsistence keeps pyrsistence's directory convention over the native containers."""

import pickle

import mmstore
from mmstore.compat.pyrsistence import EMDict, EMList


def test_emdict_creates_directory_and_reopens_with_same_name(tmp_path):
    where = tmp_path / "graph"
    with EMDict(where) as d:
        d["a"] = [1, 2]
    assert (where / "dict.mms").exists()
    with EMDict(where) as d:
        assert isinstance(d, mmstore.Dict)
        assert d["a"] == [1, 2]


def test_emlist_is_a_native_list_and_pickles_as_reopen(tmp_path):
    where = tmp_path / "seq"
    lst = EMList(where)
    lst.extend("abc")
    blob = pickle.dumps(lst)
    lst.close()
    again = pickle.loads(blob)
    assert isinstance(again, EMList) and again == ["a", "b", "c"]
    again.close()


# -- issue 14: pyrsistence's examples/em_graph_pickler.py -- a store's own pickler=/unpickler= --------------------

import io as _io
import pickle as _pickle

import pytest as _pytest


class _TaggedPickler:
    """pyrsistence's protocol: pickler.pickle(obj) -> bytes, unpickler.unpickle(data) -> obj."""

    def __init__(self):
        self.calls = 0

    def pickle(self, obj):
        self.calls += 1
        return b"TAG" + _pickle.dumps(obj)


class _TaggedUnpickler:
    def unpickle(self, data):
        assert bytes(data[:3]) == b"TAG"
        return _pickle.loads(data[3:])


def test_em_dict_takes_a_pickler_and_unpickler_for_non_native_values(tmp_path):
    from mmstore.compat.pyrsistence import EMDict, EMList

    pk = _TaggedPickler()
    d = EMDict(str(tmp_path / "d"), pickler=pk, unpickler=_TaggedUnpickler())
    d["c"] = complex(1, 2)
    d["n"] = [1, "native", complex(0, 1)]  # nested non-native values go through it too
    d["i"] = 7  # native values do not
    assert d["c"] == complex(1, 2) and d["n"] == [1, "native", complex(0, 1)] and d["i"] == 7
    assert pk.calls == 2 and d.pickler is pk and isinstance(d.unpickler, _TaggedUnpickler)
    d.close()
    lst = EMList(str(tmp_path / "l"), pickler=pk, unpickler=_TaggedUnpickler())
    lst.append(complex(3, 4))
    assert lst[0] == complex(3, 4)
    lst.close()


def test_values_written_by_a_custom_pickler_need_its_unpickler(tmp_path):
    import mmstore

    with mmstore.Dict(tmp_path / "x.mms", pickler=_TaggedPickler(), unpickler=_TaggedUnpickler()) as d:
        d["c"] = complex(1, 2)
    with mmstore.Dict(tmp_path / "x.mms") as d:  # plain pickle cannot read "TAG..." payloads
        with _pytest.raises(mmstore.CorruptFileError):
            d["c"]


def test_pickler_protocols_dumps_loads_and_callables(tmp_path):
    import mmstore

    with mmstore.Dict(tmp_path / "a.mms", pickler=_pickle, unpickler=_pickle) as d:  # dumps / loads
        d["c"] = complex(1, 1)
        assert d["c"] == complex(1, 1)
    with mmstore.Dict(tmp_path / "b.mms", pickler=lambda o: _pickle.dumps(o), unpickler=_pickle.loads) as d:
        d["c"] = complex(2, 2)
        assert d["c"] == complex(2, 2)
    with _pytest.raises(TypeError, match="pickler="):
        mmstore.Dict(tmp_path / "c.mms", pickler=42)


def test_allow_pickle_false_refuses_plain_pickles_and_a_pickler(tmp_path):
    import mmstore

    with mmstore.Dict(tmp_path / "p.mms") as d:
        d["c"] = complex(1, 2)  # a plain pickle
    with mmstore.Dict(tmp_path / "p.mms", allow_pickle=False) as d:
        with _pytest.raises(mmstore.EncodeError, match="allow_pickle=False"):
            d["c"]
        with _pytest.raises(mmstore.EncodeError, match="allow_pickle=False"):
            d["d"] = complex(1, 2)
    with _pytest.raises(ValueError, match="allow_pickle=False"):
        mmstore.Dict(tmp_path / "q.mms", allow_pickle=False, pickler=_TaggedPickler())


def test_a_failing_pickler_raises_encode_error_naming_it(tmp_path):
    import mmstore

    class Bad:
        def pickle(self, obj):
            raise RuntimeError("nope")

    with mmstore.Dict(tmp_path / "e.mms", pickler=Bad()) as d:
        with _pytest.raises(mmstore.EncodeError, match="pickler"):
            d["c"] = complex(1, 2)
        assert "c" not in d
