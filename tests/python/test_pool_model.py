"""Differential test of mmstore.Pool against a plain dict model, with a tiny memory limit.

Random sequences of put/get/delete/move_to_disk/copy_to_disk (and limit changes) must give the model's
results, and the bytes in RAM never exceed the limit after any operation. (The issue allows an exception
for a get of an object larger than the limit; mmstore serves such an object mapped from disk without
caching it, so the limit holds there too -- see mmstore/_pool.py.)
"""

from __future__ import annotations

import random
import tempfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmstore

LIMIT = 4096


def make_value(kind: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    if kind == 0:
        return bytes(rng.integers(0, 256, n, dtype=np.uint8))
    if kind == 1:
        return rng.random(max(n // 8, 0))
    if kind == 2:
        return {"a": rng.integers(0, 100, max(n // 16, 1)), "meta": [seed, "x" * (n % 7)]}
    return [seed, str(seed) * (n % 50), (1.5, None)]


def same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 3), st.integers(0, 6000), st.integers(0, 2**20), st.booleans()),
        st.tuples(st.sampled_from(["get", "delete", "move", "copy"]), st.integers(0, 10**6)),
        st.tuples(st.just("limit"), st.integers(0, 2 * LIMIT)),
    ),
    max_size=60,
)


def run(ops_list, policy: str, spill_dir: str) -> dict:
    limit = LIMIT
    with mmstore.Pool(max_memory=limit, spill_dir=spill_dir, policy=policy) as pool:
        model: dict = {}
        refs: list = []
        for op in ops_list:
            name = op[0]
            if name == "put":
                _, kind, n, seed, explicit = op
                v = make_value(kind, n, seed)
                ref = pool.put(v, size=n if explicit else None)
                model[ref] = v
                refs.append(ref)
            elif name == "limit":
                limit = op[1]
                pool.max_memory = limit
            elif refs:
                ref = refs[op[1] % len(refs)]
                if ref not in model:
                    try:
                        getattr(pool, {"get": "get", "delete": "delete", "move": "move_to_disk", "copy": "copy_to_disk"}[name])(ref)
                    except KeyError:
                        pass
                    else:
                        raise AssertionError(f"{name} of a deleted ref did not raise KeyError")
                elif name == "get":
                    assert same(pool.get(ref), model[ref])
                elif name == "delete":
                    pool.delete(ref)
                    del model[ref]
                elif name == "move":
                    pool.move_to_disk(ref)
                else:
                    pool.copy_to_disk(ref)
            s = pool.stats()
            assert s["ram_bytes"] <= limit, (op, s)
            assert s["count"] == len(model)
        for ref, v in model.items():
            assert same(pool.get(ref), v)
        return pool.stats()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, policy=st.sampled_from(["lru", "mru"]))
def test_random_operations_match_a_dict_model(ops, policy):
    with tempfile.TemporaryDirectory() as d:
        run(ops, policy, d)


def test_long_seeded_sequence_matches_the_model(tmp_path):
    rng = random.Random(5)
    seq = []
    for _ in range(3000):
        r = rng.random()
        if r < 0.35:
            seq.append(("put", rng.randrange(4), rng.choice([rng.randrange(800), rng.randrange(6000)]), rng.randrange(2**20), rng.random() < 0.3))
        elif r < 0.98:
            seq.append((rng.choice(["get", "get", "delete", "move", "copy"]), rng.randrange(10**6)))
        else:
            seq.append(("limit", rng.randrange(2 * LIMIT)))
    for policy in ("lru", "mru"):
        s = run(seq, policy, str(tmp_path))
        assert s["spills"] > 100 and s["restores"] > 100 and s["hits"] > 5
