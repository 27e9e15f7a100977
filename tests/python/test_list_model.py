"""mmstore.List against a plain ``list`` model: hypothesis state machine and a seeded differential run.

Every operation runs on both; the outcome (result, or exception type -- and message for IndexError and
slice errors, whose wording matches list's) must agree, and after every step the contents must be equal
element by element with exact types (``canon``). Values never contain nan: list methods compare with
``==`` and a decoded nan is a fresh object, so nan would make ``index``/``count`` disagree by design.
"""

from __future__ import annotations

import collections
import itertools
import random

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import mmstore
from conftest import canon, list_values

indices = st.integers(-14, 14)
slice_parts = st.one_of(st.none(), st.integers(-14, 14))
steps = st.one_of(st.none(), st.sampled_from([1, 1, 2, 3, -1, -2, -3, 5]))
vals = st.lists(list_values, max_size=6)

SORT_KEYS = {
    "natural": None,
    "type name (many ties: checks stability)": lambda v: type(v).__name__,
    "repr": repr,
    "constant (all ties)": lambda v: 0,
}


def _outcome(fn, target):
    try:
        return ("ok", canon(fn(target)))
    except (IndexError, ValueError) as exc:
        return (type(exc).__name__, str(exc))
    except TypeError as exc:
        return ("TypeError",)


class ListMachine(RuleBasedStateMachine):
    def __init__(self, directory):
        super().__init__()
        self.path = directory / f"m{next(_counter)}.mms"
        self.l = mmstore.List(self.path, create=True)
        self.model: list = []

    def both(self, fn, *, messages=True):
        got = _outcome(fn, self.l)
        exp = _outcome(fn, self.model)
        if not messages and got[0] != "ok":
            got, exp = got[:1], exp[:1]
        assert got == exp, f"store: {got!r}, list: {exp!r}"
        return got

    # -- growth ----------------------------------------------------------------------------------------
    @rule(v=list_values)
    def append(self, v):
        self.both(lambda x: x.append(v))

    @rule(vs=vals, as_iter=st.booleans())
    def extend(self, vs, as_iter):
        self.both(lambda x: x.extend(iter(vs) if as_iter else vs))

    @rule(i=st.one_of(indices, st.integers(-1000, 1000)), v=list_values)
    def insert(self, i, v):
        self.both(lambda x: x.insert(i, v))

    @rule(vs=vals)
    def iadd(self, vs):
        before = self.l
        self.l += vs
        self.model += vs
        assert self.l is before

    @rule(n=st.integers(-2, 3))
    def imul(self, n):
        if len(self.model) * n > 60:
            n = 1
        before = self.l
        self.l *= n
        self.model *= n
        assert self.l is before

    # -- removal ---------------------------------------------------------------------------------------
    @rule(i=st.one_of(st.none(), indices))
    def pop(self, i):
        self.both(lambda x: x.pop() if i is None else x.pop(i))

    @rule(i=indices)
    def del_index(self, i):
        def f(x):
            del x[i]

        self.both(f)

    @rule(a=slice_parts, b=slice_parts, s=st.one_of(steps, st.just(0)))
    def del_slice(self, a, b, s):
        def f(x):
            del x[a:b:s]

        self.both(f)

    @rule(v=list_values, pick_existing=st.booleans(), data=st.data())
    def remove(self, v, pick_existing, data):
        if pick_existing and self.model:
            v = data.draw(st.sampled_from(self.model))
        # list says "list.remove(x): x not in list", the store "<x> is not in list": compare types only.
        self.both(lambda x: x.remove(v), messages=False)

    @rule()
    def clear(self):
        self.both(lambda x: x.clear())

    # -- replacement -----------------------------------------------------------------------------------
    @rule(i=indices, v=list_values)
    def setitem(self, i, v):
        def f(x):
            x[i] = v

        self.both(f)

    @rule(a=slice_parts, b=slice_parts, vs=vals)
    def set_simple_slice(self, a, b, vs):
        def f(x):
            x[a:b] = vs

        self.both(f)

    @rule(a=slice_parts, b=slice_parts, s=st.sampled_from([2, 3, -1, -2, -3, 0]), data=st.data(),
          exact=st.booleans())
    def set_extended_slice(self, a, b, s, data, exact):
        n = len(range(*slice(a, b, s).indices(len(self.model)))) if s else 0
        size = n if exact else data.draw(st.integers(0, 6))
        vs = data.draw(st.lists(list_values, min_size=size, max_size=size))

        def f(x):
            x[a:b:s] = vs

        self.both(f)

    @rule()
    def reverse(self):
        self.both(lambda x: x.reverse())

    @rule(key=st.sampled_from(sorted(SORT_KEYS)), rev=st.booleans())
    def sort(self, key, rev):
        fn = SORT_KEYS[key]
        before = collections.Counter(canon(v) for v in self.model)
        try:
            expected = sorted(self.model, key=fn, reverse=rev)
        except TypeError:
            expected = None
        if expected is None:
            # Mixed types that do not compare: both refuse. list may be left partly sorted, so resync the
            # model to the store and check only that no element was lost or duplicated.
            try:
                self.l.sort(key=fn, reverse=rev)
            except TypeError:
                pass
            else:
                raise AssertionError("store sorted values that list refuses to compare")
            self.model = list(self.l)
            assert collections.Counter(canon(v) for v in self.model) == before
        else:
            self.l.sort(key=fn, reverse=rev)
            self.model = expected

    # -- queries -----------------------------------------------------------------------------------------
    @rule(i=indices)
    def getitem(self, i):
        self.both(lambda x: x[i])

    @rule(a=slice_parts, b=slice_parts, s=st.one_of(steps, st.just(0)))
    def getslice(self, a, b, s):
        self.both(lambda x: x[a:b:s])

    @rule(v=list_values, data=st.data(), start=st.one_of(st.none(), indices), stop=st.one_of(st.none(), indices))
    def index_and_count(self, v, data, start, stop):
        if self.model and data.draw(st.booleans()):
            v = data.draw(st.sampled_from(self.model))
        self.both(lambda x: x.index(v))
        if start is not None:
            self.both(lambda x: x.index(v, start) if stop is None else x.index(v, start, stop))
        self.both(lambda x: x.count(v))
        self.both(lambda x: v in x)

    @rule(other=st.lists(list_values, max_size=4), data=st.data())
    def ordering(self, other, data):
        if self.model and data.draw(st.booleans()):
            other = self.model[: data.draw(st.integers(0, len(self.model)))] + other
        for op in ("__lt__", "__le__", "__gt__", "__ge__"):
            self.both(lambda x, op=op: getattr(x, op)(other))
        self.both(lambda x: x < other)
        self.both(lambda x: x >= other)

    @rule()
    def reopen(self):
        self.l.close()
        assert self.l.closed
        self.l = mmstore.List(self.path, create=False)

    # -- invariants --------------------------------------------------------------------------------------
    @invariant()
    def contents_match(self):
        assert len(self.l) == len(self.model)
        assert [canon(v) for v in self.l] == [canon(v) for v in self.model]

    @invariant()
    def reversed_and_negative_indices_match(self):
        assert [canon(v) for v in reversed(self.l)] == [canon(v) for v in reversed(self.model)]
        if self.model:
            assert canon(self.l[-1]) == canon(self.model[-1])
            assert canon(self.l[-len(self.model)]) == canon(self.model[0])

    @invariant()
    def equality(self):
        assert self.l == self.model
        assert not (self.l != self.model)
        assert self.l != self.model + ["extra"]

    def teardown(self):
        self.l.close()


_counter = itertools.count()


def test_list_behaves_like_model_list(tmp_path):
    run_state_machine_as_test(
        lambda: ListMachine(tmp_path),
        settings=settings(
            max_examples=100,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )


def test_seeded_random_operations_match_list(tmp_path):
    rng = random.Random(7)
    path = tmp_path / "diff.mms"
    l = mmstore.List(path)
    model: list = []

    def value():
        k = rng.randrange(5)
        if k == 0:
            return rng.randrange(-(2**70), 2**70)
        if k == 1:
            return "s" * rng.randrange(20)
        if k == 2:
            return (rng.randrange(10), None)
        if k == 3:
            return rng.randrange(100)
        return rng.randbytes(rng.randrange(12))

    for step in range(20_000):
        op = rng.random()
        n = len(model)
        if op < 0.40:
            v = value()
            l.append(v)
            model.append(v)
        elif op < 0.50:
            i = rng.randrange(-n - 3, n + 4)
            v = value()
            l.insert(i, v)
            model.insert(i, v)
        elif op < 0.62 and n:
            i = rng.randrange(-n, n)
            assert canon(l.pop(i)) == canon(model.pop(i))
        elif op < 0.70 and n:
            i = rng.randrange(-n, n)
            v = value()
            l[i] = v
            model[i] = v
        elif op < 0.75:
            a = rng.randrange(-n - 2, n + 3)
            b = a + rng.randrange(-1, 4)  # a narrow window: the list keeps growing overall
            vs = [value() for _ in range(rng.randrange(4))]
            l[a:b] = vs
            model[a:b] = vs
        elif op < 0.78:
            a = rng.randrange(-n - 2, n + 3)
            s = rng.choice([2, 3, -1, -2, 7])
            b = a + s * rng.randrange(0, 6)
            del l[a:b:s]
            del model[a:b:s]
        elif op < 0.90 and n:
            i = rng.randrange(-n, n)
            assert canon(l[i]) == canon(model[i])
        elif op < 0.905:
            l.reverse()
            model.reverse()
        elif op < 0.907:
            key = (lambda v: type(v).__name__) if rng.random() < 0.5 else repr
            rev = rng.random() < 0.5
            l.sort(key=key, reverse=rev)
            model.sort(key=key, reverse=rev)
        elif op < 0.909:
            l.close()
            l = mmstore.List(path, create=False)
        if step % 4000 == 3999:
            assert [canon(v) for v in l] == [canon(v) for v in model]
            l.verify()
    assert len(l) == len(model) > 1000
    assert [canon(v) for v in l] == [canon(v) for v in model]
    l.verify()
    l.close()
    with mmstore.List(path, readonly=True) as r:
        assert [canon(v) for v in r] == [canon(v) for v in model]
