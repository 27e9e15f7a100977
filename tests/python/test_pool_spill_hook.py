"""mmstore.register_spill: a user type's own spill format (raw buffers, mapped back zero-copy) and
Pool(allow_pickle=False) (issue 14: MemPool.jl's per-type mmwrite/mmread)."""

from __future__ import annotations

import numpy as np
import pytest

import mmstore


class Frame:
    """A user type holding two arrays and a label: spills as two raw buffers and codec metadata."""

    def __init__(self, x, y, label):
        self.x, self.y, self.label = x, y, label


def _dump(f):
    return {"label": f.label, "dtypes": [f.x.dtype.str, f.y.dtype.str]}, [f.x, f.y]


def _load(meta, views):
    dx, dy = meta["dtypes"]
    return Frame(np.frombuffer(views[0], dx), np.frombuffer(views[1], dy), meta["label"])


@pytest.fixture(autouse=True)
def hook():
    mmstore.register_spill(Frame, _dump, _load, name="tests.Frame")
    yield
    mmstore._pool._SPILL_DUMP.pop(Frame, None)
    mmstore._pool._SPILL_LOAD.pop("tests.Frame", None)


def test_hooked_type_spills_raw_and_maps_back_zero_copy(tmp_path):
    with mmstore.Pool(max_memory="1MiB", spill_dir=tmp_path) as pool:
        ref = pool.put(Frame(np.arange(1000.0), np.arange(10, dtype="i4"), "f1"))
        pool.move_to_disk(ref)
        got = pool.get(ref)
        assert type(got) is Frame and got.label == "f1"
        np.testing.assert_array_equal(got.x, np.arange(1000.0))
        np.testing.assert_array_equal(got.y, np.arange(10, dtype="i4"))
        assert mmstore.is_mapped(got.x) and mmstore.is_mapped(got.y) and not got.x.flags.writeable


def test_hooked_type_spills_and_loads_with_allow_pickle_false(tmp_path):
    with mmstore.Pool(max_memory="1MiB", spill_dir=tmp_path, allow_pickle=False) as pool:
        ref = pool.put(Frame(np.ones(3), np.zeros(2), "ok"))
        pool.move_to_disk(ref)
        assert pool.get(ref).label == "ok"
        pool.save(ref, tmp_path / "frame.mms")
    assert mmstore.load(tmp_path / "frame.mms", allow_pickle=False).label == "ok"


def test_allow_pickle_false_still_refuses_plain_pickles(tmp_path):
    with mmstore.Pool(max_memory="1MiB", spill_dir=tmp_path, allow_pickle=False) as pool:
        ref = pool.put(complex(1, 2))
        with pytest.raises(mmstore.EncodeError, match="allow_pickle=False"):
            pool.move_to_disk(ref)
        assert pool.get(ref) == complex(1, 2)  # it stays in RAM
    with mmstore.Pool(spill_dir=tmp_path) as pool:  # a pickled spill file ...
        ref = pool.put(complex(1, 2))
        pool.save(ref, tmp_path / "p.mms")
    with pytest.raises(mmstore.EncodeError, match="allow_pickle=False"):  # ... is refused on load
        mmstore.load(tmp_path / "p.mms", allow_pickle=False)
    assert mmstore.load(tmp_path / "p.mms") == complex(1, 2)


class Sub(Frame):
    pass


def test_subclasses_are_not_hooked_and_a_missing_loader_is_a_clear_error(tmp_path):
    with mmstore.Pool(spill_dir=tmp_path) as pool:
        ref = pool.put(Frame(np.ones(1), np.ones(1), "a"))
        pool.save(ref, tmp_path / "f.mms")
        sub = pool.put(Sub(np.ones(1), np.ones(1), "s"))
        pool.move_to_disk(sub)
        assert type(pool.get(sub)) is Sub  # pickled, as any other object
    mmstore._pool._SPILL_LOAD.pop("tests.Frame")
    with pytest.raises(mmstore.EncodeError, match="tests.Frame"):
        mmstore.load(tmp_path / "f.mms")


def test_failing_dump_keeps_the_object_in_ram_and_bad_registrations_are_refused(tmp_path):
    class Bad:
        pass

    mmstore.register_spill(Bad, lambda o: 1 / 0, lambda m, v: None)
    try:
        with mmstore.Pool(spill_dir=tmp_path) as pool:
            b = Bad()
            ref = pool.put(b)
            with pytest.raises(mmstore.EncodeError, match="spill hook"):
                pool.move_to_disk(ref)
            assert pool.get(ref) is b
    finally:
        mmstore._pool._SPILL_DUMP.pop(Bad, None)
    with pytest.raises(TypeError):
        mmstore.register_spill("Frame", _dump, _load)
    with pytest.raises(TypeError):
        mmstore.register_spill(Frame, None, _load)
    with pytest.raises(ValueError):
        mmstore.register_spill(Frame, _dump, _load, name="")
