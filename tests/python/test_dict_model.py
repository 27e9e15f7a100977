"""mmstore.Dict against a model: hypothesis rule-based state machine and a seeded differential run.

The model is a plain ``dict`` keyed by ``model_key(key)`` (type-exact: ``1``, ``1.0`` and ``True`` are three
keys, ``-0.0`` and ``0.0`` two, as the store specifies) holding ``(key, value)``. Python dicts keep insertion
order and keep a key's position when it is overwritten, which is exactly what the store promises, and
``popitem()`` is LIFO in both.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

import mmstore
from conftest import assert_same, canon, has_nan, keys, model_key, values

_MISSING = object()


class DictMachine(RuleBasedStateMachine):
    def __init__(self, directory):
        super().__init__()
        self.path = directory / f"m{next(_counter)}.mms"
        self.d = mmstore.Dict(self.path, create=True)
        self.model: dict = {}  # model_key -> (key, value)

    # -- helpers ---------------------------------------------------------------------------------------
    def _existing(self, data):
        mk = data.draw(st.sampled_from(sorted(self.model, key=repr)), label="existing key")
        return self.model[mk][0]

    def _put(self, k, v):
        mk = model_key(k)
        if mk in self.model:
            self.model[mk] = (self.model[mk][0], v)  # dict keeps the first key object and its position
        else:
            self.model[mk] = (k, v)

    # -- rules -------------------------------------------------------------------------------------------
    @rule(k=keys, v=values)
    def set_new_or_any(self, k, v):
        self.d[k] = v
        self._put(k, v)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), v=values)
    def overwrite_existing(self, data, v):
        k = self._existing(data)
        self.d[k] = v
        self._put(k, v)

    @rule(k=keys)
    def get_any(self, k):
        got = self.d.get(k, _MISSING)
        exp = self.model.get(model_key(k), (None, _MISSING))[1]
        if exp is _MISSING:
            assert got is _MISSING
            with pytest.raises(KeyError):
                self.d[k]
            assert k not in self.d
            assert self.d.get(k) is None
        else:
            assert_same(got, exp)
            assert_same(self.d[k], exp)
            assert k in self.d

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete_existing(self, data):
        k = self._existing(data)
        del self.d[k]
        del self.model[model_key(k)]
        assert k not in self.d

    @rule(k=keys)
    def delete_any(self, k):
        mk = model_key(k)
        if mk in self.model:
            del self.d[k]
            del self.model[mk]
        else:
            with pytest.raises(KeyError) as info:
                del self.d[k]
            assert_same(info.value.args[0], k)

    @rule(k=keys, with_default=st.booleans())
    def pop_any(self, k, with_default):
        mk = model_key(k)
        if mk in self.model:
            got = self.d.pop(k, "default") if with_default else self.d.pop(k)
            assert_same(got, self.model.pop(mk)[1])
        elif with_default:
            assert self.d.pop(k, "default") == "default"
        else:
            with pytest.raises(KeyError):
                self.d.pop(k)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def pop_existing(self, data):
        k = self._existing(data)
        assert_same(self.d.pop(k), self.model.pop(model_key(k))[1])

    @rule()
    def popitem(self):
        if not self.model:
            with pytest.raises(KeyError):
                self.d.popitem()
            return
        k, v = self.d.popitem()
        ek, ev = self.model.popitem()[1]  # LIFO, as dict
        assert_same(k, ek)
        assert_same(v, ev)

    @rule(k=keys, v=values)
    def setdefault(self, k, v):
        mk = model_key(k)
        got = self.d.setdefault(k, v)
        if mk in self.model:
            assert_same(got, self.model[mk][1])
        else:
            assert_same(got, v)
            self.model[mk] = (k, v)

    @rule(k=keys)
    def setdefault_without_default_stores_none(self, k):
        mk = model_key(k)
        got = self.d.setdefault(k)
        if mk not in self.model:
            self.model[mk] = (k, None)
        assert_same(got, self.model[mk][1])

    @rule(pairs=st.lists(st.tuples(keys, values), max_size=8), form=st.sampled_from(["pairs", "dict", "iter"]))
    def update(self, pairs, form):
        if form == "pairs":
            self.d.update(pairs)
        elif form == "iter":
            self.d.update(iter(pairs))
        else:
            # A plain dict merges 1 / 1.0 / True itself; model what the dict actually holds.
            src = dict(pairs)
            self.d.update(src)
            pairs = list(src.items())
        for k, v in pairs:
            self._put(k, v)

    @rule(a=values, b=values)
    def update_kwargs(self, a, b):
        self.d.update(alpha=a, beta=b)
        self._put("alpha", a)
        self._put("beta", b)

    @rule()
    def clear(self):
        self.d.clear()
        self.model.clear()

    @rule(check=st.booleans())
    def reopen(self, check):
        self.d.close()
        assert self.d.closed
        self.d = mmstore.Dict(self.path, create=False)
        if check:
            self.d.verify()

    # -- invariants --------------------------------------------------------------------------------------
    @invariant()
    def length_matches(self):
        assert len(self.d) == len(self.model)
        assert bool(self.d) == bool(self.model)

    @invariant()
    def iteration_follows_insertion_order(self):
        exp_keys = [k for k, _ in self.model.values()]
        assert [canon(k) for k in self.d] == [canon(k) for k in exp_keys]
        assert [canon(k) for k in self.d.keys()] == [canon(k) for k in exp_keys]
        assert [canon(v) for v in self.d.values()] == [canon(v) for _, v in self.model.values()]
        assert [canon(kv) for kv in self.d.items()] == [canon(kv) for kv in self.model.values()]
        assert [canon(k) for k in reversed(self.d)] == [canon(k) for k in reversed(exp_keys)]

    @invariant()
    def every_key_is_contained(self):
        for k, _ in self.model.values():
            assert k in self.d
            assert k in self.d.keys()

    @invariant()
    def equals_plain_dict_when_representable(self):
        plain = {k: v for k, v in self.model.values()}
        if len(plain) != len(self.model) or any(has_nan(v) or has_nan(k) for k, v in self.model.values()):
            return  # 1 / 1.0 / True collapse in a dict, and nan != nan: == cannot be the oracle here
        assert self.d == plain
        assert not (self.d != plain)
        assert self.d != {**plain, "__extra__": 0}
        if plain:
            k0 = next(iter(plain))
            assert self.d != {**plain, k0: ("changed", plain[k0])}

    def teardown(self):
        self.d.close()


_counter = itertools.count()


def test_dict_behaves_like_model_dict(tmp_path):
    run_state_machine_as_test(
        lambda: DictMachine(tmp_path),
        settings=settings(
            max_examples=100,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )


# -- seeded differential run ---------------------------------------------------------------------------------


def _random_key(rng: random.Random, pool: int):
    kind = rng.randrange(6)
    i = rng.randrange(pool)
    if kind == 0:
        return i
    if kind == 1:
        return f"k{i}"  # inline (≤ 7 bytes) for small i
    if kind == 2:
        return f"a long key number {i} " + "x" * (i % 13)  # record form
    if kind == 3:
        return i.to_bytes(3, "little")
    if kind == 4:
        return (i % 97, f"t{i}")
    return float(i) + 0.5


def _random_value(rng: random.Random):
    kind = rng.randrange(7)
    if kind == 0:
        return rng.randrange(-(2**70), 2**70)
    if kind == 1:
        return "v" * rng.randrange(0, 40)
    if kind == 2:
        return rng.randbytes(rng.randrange(0, 30))
    if kind == 3:
        return [rng.random(), None, True]
    if kind == 4:
        return {"n": rng.randrange(1000)}
    if kind == 5:
        return None
    return rng.random()


def test_seeded_random_operations_match_dict_through_many_rehashes(tmp_path):
    rng = random.Random(20240611)
    path = tmp_path / "diff.mms"
    d = mmstore.Dict(path)
    model: dict = {}
    capacity0 = d.stats()["capacity"]
    pool = 6000
    for step in range(20_000):
        op = rng.random()
        k = _random_key(rng, pool)
        if op < 0.55:
            v = _random_value(rng)
            d[k] = v
            model[k] = v
        elif op < 0.70:
            if k in model:
                del d[k]
                del model[k]
            else:
                with pytest.raises(KeyError):
                    del d[k]
        elif op < 0.80:
            assert_same(d.get(k, "missing"), model.get(k, "missing"))
        elif op < 0.85:
            assert_same(d.pop(k, "missing"), model.pop(k, "missing"))
        elif op < 0.88:
            v = _random_value(rng)
            assert_same(d.setdefault(k, v), model.setdefault(k, v))
        elif op < 0.90:
            if model:
                assert_same(d.popitem(), model.popitem())
        elif op < 0.995:
            assert (k in d) == (k in model)
        else:
            d.close()
            d = mmstore.Dict(path, create=False)
        if step % 5000 == 4999:
            assert len(d) == len(model)
            assert [canon(kv) for kv in d.items()] == [canon(kv) for kv in model.items()]
            d.verify()
    assert len(d) == len(model)
    assert [canon(kv) for kv in d.items()] == [canon(kv) for kv in model.items()]
    # The table grew from its initial capacity through several doublings.
    assert d.stats()["capacity"] >= capacity0 * 2**5
    d.verify()
    d.close()
    with mmstore.Dict(path, readonly=True) as r:
        assert [canon(kv) for kv in r.items()] == [canon(kv) for kv in model.items()]
