"""mmstore's XXH3-64 (include/mmstore/storage/xxh3.hpp) against the reference library, PyPI `xxhash`.

The hash is part of the file format (header checksums, key hashes: docs/format.md), so it must equal
XXH3_64bits_withSeed bit for bit. mmstore._core._hash64(data, seed=0) exposes the C++ one-shot function.
"""

from __future__ import annotations

import random

import pytest

from mmstore import _core

xxhash = pytest.importorskip("xxhash")

SEEDS = [0, 1, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15]


def _data(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def test_every_length_to_4096_matches_reference():
    rng = random.Random(20240601)
    buf = _data(rng, 4096)
    for n in range(4097):
        for seed in (0, rng.getrandbits(64)):
            assert _core._hash64(buf[:n], seed) == xxhash.xxh3_64_intdigest(buf[:n], seed), (n, seed)


def test_random_lengths_to_1mib_match_reference():
    rng = random.Random(7)
    buf = _data(rng, 1 << 20)
    for _ in range(200):
        n = rng.randrange((1 << 20) + 1)
        start = rng.randrange(len(buf) - n + 1)  # odd offsets too: unaligned input
        seed = rng.choice([0, rng.getrandbits(64)])
        chunk = buf[start:start + n]
        assert _core._hash64(chunk, seed) == xxhash.xxh3_64_intdigest(chunk, seed), (n, seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_many_seeds_match_reference_at_every_branch(seed):
    # Each branch of the specification and its edges: 0, 1-3, 4-8, 9-16, 17-128, 129-240, long (stripe and
    # 1024-byte block edges).
    rng = random.Random(seed)
    lengths = [0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 32, 33, 64, 65, 96, 97, 127, 128, 129, 239, 240, 241,
               255, 256, 257, 1023, 1024, 1025, 1087, 1088, 1089, 4095, 4096, 4097, 65536, 100003]
    for n in lengths:
        data = _data(rng, n)
        assert _core._hash64(data, seed) == xxhash.xxh3_64_intdigest(data, seed), n


def test_thousand_random_seeds_match_reference():
    rng = random.Random(99)
    for _ in range(1000):
        seed = rng.getrandbits(64)
        data = _data(rng, rng.choice([rng.randrange(17), rng.randrange(241), rng.randrange(5000)]))
        assert _core._hash64(data, seed) == xxhash.xxh3_64_intdigest(data, seed), (len(data), seed)


def test_default_seed_is_the_format_hash():
    data = b"mmstore"
    assert _core._hash64(data) == _core._hash64(data, 0) == xxhash.xxh3_64_intdigest(data)
    assert _core._hash64(b"") == 0x2D06800538D394C2


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_seed_outside_u64_is_rejected(seed):
    with pytest.raises(TypeError):
        _core._hash64(b"x", seed)


def test_data_must_be_bytes():
    with pytest.raises(TypeError):
        _core._hash64("text")
