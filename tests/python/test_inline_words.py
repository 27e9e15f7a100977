"""Inline words (docs/format.md §3): strs of exactly 7 ASCII characters are stored inline (kind 5, 7 bits a
character) and must round-trip exactly through every read path, as keys and as values, next to their
neighbours in length and in character range (6 and 8 characters, non-ASCII 7-character strs, which stay
records). A model dict/list is the oracle."""

import os
import string

from hypothesis import given, settings, strategies as st

import mmstore

ASCII7 = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), min_size=7, max_size=7)
NEAR = st.one_of(ASCII7, st.text(min_size=6, max_size=8), st.binary(min_size=6, max_size=8),
                 st.integers(min_value=-(2**50), max_value=2**50))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(NEAR, NEAR, max_size=40))
def test_dict_of_seven_character_strs_matches_the_model(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("w") / "d.mms"
    with mmstore.Dict(path) as d:
        d.update(model)
        assert dict(d.items()) == model
    with mmstore.Dict(path) as d:  # reopened: reads from the file
        assert len(d) == len(model)
        for k, v in model.items():
            assert d[k] == v and type(d[k]) is type(v)
            assert k in d
        assert dict(d.items()) == model
        assert d.get_many(list(model)) == list(model.values())
        d.verify()


@settings(max_examples=60, deadline=None)
@given(st.lists(NEAR, max_size=60))
def test_list_of_seven_character_strs_matches_the_model(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("w") / "l.mml"
    with mmstore.List(path) as lst:
        lst.extend(model[: len(model) // 2])
        for x in model[len(model) // 2:]:
            lst.append(x)
    with mmstore.List(path) as lst:
        assert list(lst) == model
        assert [lst[i] for i in range(len(model))] == model
        lst.verify()


def test_seven_character_ascii_values_take_no_record(tmp_path):
    # 20,000 values of 7 ASCII characters cost no arena space beyond the list's own slots, unlike the same
    # number of 8-character values (a record each): the inline form is used, not only decoded correctly.
    def size(fmt):
        p = tmp_path / f"{len(fmt % 0)}.mml"
        with mmstore.List(p) as lst:
            lst.extend(fmt % i for i in range(20_000))
        return os.stat(p).st_size

    seven, eight = size("v%06d"), size("v%07d")
    assert seven < eight / 2, (seven, eight)


def test_every_printable_seven_character_str_round_trips(tmp_path):
    chars = string.printable + "\x00\x7f"
    keys = [chars[i:i + 7] for i in range(len(chars) - 6)]
    with mmstore.Dict(tmp_path / "p.mms") as d:
        for i, k in enumerate(keys):
            d[k] = k[::-1]
        assert all(d[k] == k[::-1] for k in keys)
        assert sorted(d) == sorted(keys)
