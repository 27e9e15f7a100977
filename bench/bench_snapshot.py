"""Snapshot reads vs plain reads, and the cost of snapshots to writers (issue 11).

Prints, per run (interleaved, so machine noise hits both sides alike), the median of --runs of:
  plain get       d[k] for every key, no snapshot open
  snapshot get    s[k] inside `with d.snapshot() as s:`, with no writes since it opened
  snapshot get*   s[k] after every key was overwritten once since the snapshot opened (each read then
                  also finds the key's version chain)
  plain set       d[k] = v, no snapshot open (what every writer pays: compare with --plain-only on the base)
  set, snap open  d[k] = v while a snapshot is open (each write records its before-image)
and the ratios. `--plain-only` prints only the plain get/set figures, to run the same script with an
older build's interpreter and compare (the "no slower than before" check). `--nested` runs all of it on a
nested dict of a SharedDict(recurse=True) instead of a Dict (`nd.snapshot()`). `--list` runs it on a List
of n ints (`l.snapshot()`), with random indices for keys. Every kind also reports `plain iterate` (`for x
in d`) and `snapshot iterate` (`for x in s`, no writes since it opened).

    build/venv/bin/python bench/bench_snapshot.py --n 100000 --runs 3
    PYTHONPATH=/work/ab/OLD build/venv/bin/python bench/bench_snapshot.py --nested --plain-only
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time

import mmstore


CLOCK = time.perf_counter


def timed(f) -> float:
    t0 = CLOCK()
    f()
    return CLOCK() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--plain-only", action="store_true")
    ap.add_argument("--nested", action="store_true", help="a SharedDict's nested dict instead of a Dict")
    ap.add_argument("--list", action="store_true", help="a List (random indices) instead of a Dict")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: this thread's CPU time (steadier on a loaded machine; the loops run in one thread)")
    a = ap.parse_args()
    global CLOCK
    CLOCK = time.thread_time if a.clock == "cpu" else time.perf_counter
    n = a.n
    keys = [f"key-{i:08d}" for i in range(n)]  # 12 characters: a record key in every build
    kind = mmstore.NestedDict if a.nested else mmstore.List if a.list else mmstore.Dict
    has_snap = hasattr(kind, "snapshot") and not a.plain_only
    res: dict[str, list[float]] = {}

    def add(name, secs):
        res.setdefault(name, []).append(n / secs)

    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        if a.nested:
            root = mmstore.SharedDict(recurse=True)
            root["n"] = {}
            d = root["n"]
        elif a.list:
            d = mmstore.List(os.path.join(tmp, "b.mms"))
            d.extend([1] * n)
            keys = list(range(n))
            random.Random(1).shuffle(keys)
        else:
            d = mmstore.Dict(os.path.join(tmp, "b.mms"))
        for k in keys:
            d[k] = 1
        for _ in range(a.runs):
            def plain_get():
                for k in keys:
                    d[k]
            add("plain get", timed(plain_get))

            def plain_set():
                for k in keys:
                    d[k] = 2
            add("plain set", timed(plain_set))
            def plain_iter():
                for _ in d:
                    pass
            add("plain iterate", timed(plain_iter))
            if not has_snap:
                continue
            with d.snapshot() as s:
                def snap_get():
                    for k in keys:
                        s[k]
                add("snapshot get", timed(snap_get))
                def snap_iter():
                    for _ in s:
                        pass
                add("snapshot iterate", timed(snap_iter))

                def snap_set():
                    for k in keys:
                        d[k] = 3
                add("set, snap open", timed(snap_set))
                add("snapshot get*", timed(snap_get))
            d[keys[0]] = 1  # frees the version records
        if a.nested:
            root.close()
            root.unlink()
    what = "nested dict" if a.nested else "List" if a.list else "Dict"
    print(f"mmstore {getattr(mmstore, '__version__', '?')}, {what}, n={n}, medians of {a.runs} (ops/s)")
    med = {k: statistics.median(v) for k, v in res.items()}
    for k, v in med.items():
        print(f"  {k:16s} {v:12,.0f}")
    if "snapshot get" in med:
        print(f"  snapshot get / plain get   {med['snapshot get'] / med['plain get']:.2f}x")
        print(f"  snapshot get* / plain get  {med['snapshot get*'] / med['plain get']:.2f}x")
        print(f"  set with snapshot / plain  {med['set, snap open'] / med['plain set']:.2f}x")
    if "snapshot iterate" in med:
        print(f"  snapshot iterate / plain   {med['snapshot iterate'] / med['plain iterate']:.2f}x")


if __name__ == "__main__":
    main()
