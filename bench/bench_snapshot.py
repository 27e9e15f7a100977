"""Snapshot reads vs plain reads, and the cost of snapshots to writers (issue 11).

Prints, per run (interleaved, so machine noise hits both sides alike), the median of --runs of:
  plain get       d[k] for every key, no snapshot open
  snapshot get    s[k] inside `with d.snapshot() as s:`, with no writes since it opened
  snapshot get*   s[k] after every key was overwritten once since the snapshot opened (each read then
                  also finds the key's version chain)
  plain set       d[k] = v, no snapshot open (what every writer pays: compare with --plain-only on the base)
  set, snap open  d[k] = v while a snapshot is open (each write records its before-image)
and the ratios. `--plain-only` prints only the plain get/set figures, to run the same script with an
older build's interpreter and compare (the "no slower than before" check).

    build/venv/bin/python bench/bench_snapshot.py --n 100000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import mmstore


def timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--plain-only", action="store_true")
    a = ap.parse_args()
    n = a.n
    keys = [f"key-{i:08d}" for i in range(n)]  # 12 characters: a record key in every build
    has_snap = hasattr(mmstore.Dict, "snapshot") and not a.plain_only
    res: dict[str, list[float]] = {}

    def add(name, secs):
        res.setdefault(name, []).append(n / secs)

    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
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
            if not has_snap:
                continue
            with d.snapshot() as s:
                def snap_get():
                    for k in keys:
                        s[k]
                add("snapshot get", timed(snap_get))

                def snap_set():
                    for k in keys:
                        d[k] = 3
                add("set, snap open", timed(snap_set))
                add("snapshot get*", timed(snap_get))
            d[keys[0]] = 1  # frees the version records
    print(f"mmstore {getattr(mmstore, '__version__', '?')}, n={n}, medians of {a.runs} (ops/s)")
    med = {k: statistics.median(v) for k, v in res.items()}
    for k, v in med.items():
        print(f"  {k:16s} {v:12,.0f}")
    if "snapshot get" in med:
        print(f"  snapshot get / plain get   {med['snapshot get'] / med['plain get']:.2f}x")
        print(f"  snapshot get* / plain get  {med['snapshot get*'] / med['plain get']:.2f}x")
        print(f"  set with snapshot / plain  {med['set, snap open'] / med['plain set']:.2f}x")


if __name__ == "__main__":
    main()
