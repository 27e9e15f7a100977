"""bench/bench_list_txn.py -- the cost of List transactions (issue 11): commit is O(changes), not O(len).

Run:  PYTHONPATH=python python3 bench/bench_list_txn.py [--runs 3] [--small 1000] [--large 1000000]

Rows, each in microseconds per block (lower is better), the median of --runs runs, every run timing the
rows interleaved on lists of --small and --large int elements in files under a temporary directory:
  * txn: ``with l.transaction() as t:`` doing 2 read-modify-writes at random positions, an append and a pop
    (the length changes twice, the net length not) -- the list a reader sees changes at one instant;
  * lock: the same writes under ``with l.lock:`` (each one published by itself): what the transaction adds;
  * txn extend 1000: a transaction appending 1,000 ints (one store of the count publishes all of them),
    then one removing them, against ``l.extend`` of the same 1,000 (published one by one) and 1,000 pops;
    figures per block (two per rep).
The lists are grown past their final size before timing, so no row pays a one-time growth copy.
The large/small ratio of a row is what the list's size costs it: near 1 for O(changes), ~1000 for a copy.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import tempfile
import time

import mmstore

BLOCKS = 2_000


def txn_rmw(l, pos):
    for a, b in pos:
        with l.transaction() as t:
            t[a] = t[a] + 1
            t[b] = t[b] - 1
            t.append(0)
            t.pop()


def lock_rmw(l, pos):
    for a, b in pos:
        with l.lock:
            l[a] = l[a] + 1
            l[b] = l[b] - 1
            l.append(0)
            l.pop()


def txn_extend(l, chunk, reps):
    for _ in range(reps):
        with l.transaction() as t:
            t.extend(chunk)
        with l.transaction() as t:
            del t[len(t) - len(chunk):]


def plain_extend(l, chunk, reps):
    for _ in range(reps):
        l.extend(chunk)
        for _ in chunk:  # (del l[-1000:] would rebuild the whole block: O(len))
            l.pop()


def timed(fn, *args) -> float:
    gc.disable()
    try:
        t0 = time.perf_counter()
        fn(*args)
        return time.perf_counter() - t0
    finally:
        gc.enable()


def one_run(sizes, tmp, rng) -> dict:
    out = {}
    lists = {}
    for n in sizes:
        l = mmstore.List(os.path.join(tmp, f"l{n}-{rng.random()}.mms"))
        l.extend(range(n))
        l.extend(range(1_000))  # grown once outside the timed loops (a growth copies the block)
        del l[n:]
        lists[n] = l
    chunk = list(range(1_000))
    for n in sizes:
        l = lists[n]
        pos = [(rng.randrange(n), rng.randrange(n)) for _ in range(BLOCKS)]
        out[("txn", n)] = timed(txn_rmw, l, pos) / BLOCKS * 1e6
        out[("lock", n)] = timed(lock_rmw, l, pos) / BLOCKS * 1e6
        out[("txn extend 1000", n)] = timed(txn_extend, l, chunk, 50) / 100 * 1e6
        out[("extend 1000", n)] = timed(plain_extend, l, chunk, 50) / 100 * 1e6
    for l in lists.values():
        l.close()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--small", type=int, default=1_000)
    ap.add_argument("--large", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    sizes = (args.small, args.large)
    rng = random.Random(11)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):
            runs.append(one_run(sizes, tmp, rng))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"== List transactions, us per block, median of {args.runs} run(s)")
    print(f"{'row':<18}{'n=' + str(args.small):>14}{'n=' + str(args.large):>14}{'large/small':>13}")
    for row in ("txn", "lock", "txn extend 1000", "extend 1000"):
        a, b = med[(row, args.small)], med[(row, args.large)]
        print(f"{row:<18}{a:>14.2f}{b:>14.2f}{b / a:>12.2f}x")
    print(f"{'txn / lock':<18}{med[('txn', args.small)] / med[('lock', args.small)]:>13.2f}x"
          f"{med[('txn', args.large)] / med[('lock', args.large)]:>13.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
