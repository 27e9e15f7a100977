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
