"""RecordArray against pyarrow.feather (a memory-mapped, uncompressed Arrow IPC file), issue 12's targets.

Same run, same data: N records {a: int64, b: float64, s: str 'k%07d'}, medians of --runs runs.

    build        feather: Table.from_pylist(dicts) + write_feather; mmstore: RecordArray.build(dicts)
                 (and, for reference, RecordArray.from_arrow(table) and build from @struct objects)
    random s[i]  feather: col = table.column('s') on the mapped file, then col[i].as_py(); mmstore:
                 vals = arr.values('s'), then vals[i] (and, for reference, arr[i].s through a record proxy);
                 the three alternate every 2,000 reads, in rotating order
    sum of a     feather: read_table(memory_map=True) then pyarrow.compute.sum(column('a'));
                 mmstore: to_arrow() then the same sum (and to_arrow(columns=['a']), arr.column('a').sum());
                 each the median of 15 alternating repetitions
    size         bytes per record of each file

Targets (ratios printed as mmstore's advantage, > 1 is better): build >= 1.0, random reads >= 5, to_arrow+sum
>= 1/1.2, size >= 1.0.

    python bench/bench_arrow.py [--n 1000000] [--runs 3] [--json bench/results/bench_arrow.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

import mmstore


@mmstore.struct
class Rec:
    a: int
    b: float
    s: str


TARGETS = {"build": 1.0, "random_get": 5.0, "to_arrow_sum": 1 / 1.2, "size": 1.0}
_BLOCK = 2_000   # random reads per peer before switching to the other
_REPEAT = 15     # repetitions of each millisecond-scale operation (median)


def _time(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def one_run(n: int, tmp: str, run: int, idx: list[int]) -> dict:
    dicts = [{"a": i, "b": i / 2, "s": f"k{i:07d}"} for i in range(n)]
    fpath, mpath, opath, apath = (os.path.join(tmp, f"{x}{run}") for x in ("f.feather", "m.mma", "o.mma", "a.mma"))
    r = {}

    def fb():
        t = pa.Table.from_pylist(dicts)
        feather.write_feather(t, fpath, compression="uncompressed")
        return t

    r["feather_build_s"], table = _time(fb)
    r["mmstore_build_s"], arr = _time(lambda: mmstore.RecordArray.build(dicts, mpath, schema=Rec.__schema__,
                                                                        progress=False))
    r["mmstore_build_objects_s"], arr_o = _time(
        lambda: mmstore.RecordArray.build((Rec(**d) for d in dicts), opath, progress=False))
    r["mmstore_from_arrow_s"], arr_a = _time(lambda: mmstore.RecordArray.from_arrow(table, apath, progress=False))
    arr_o.close()
    arr_a.close()
    del table, dicts

    ft = feather.read_table(fpath, memory_map=True)
    col = ft.column("s")
    # The peers alternate in blocks of reads, so a change of machine load hits both alike.
    vals = arr.values("s")

    def read_feather(block):
        for i in block:
            col[i].as_py()

    def read_values(block):
        for i in block:
            vals[i]

    def read_proxy(block):
        for i in block:
            arr[i].s

    readers = [("feather", read_feather), ("mmstore", read_values), ("proxy", read_proxy)]
    spent = dict.fromkeys(("feather", "mmstore", "proxy"), 0.0)
    for k, b in enumerate(range(0, len(idx), _BLOCK)):
        block = idx[b:b + _BLOCK]
        for name, read in readers[k % 3:] + readers[:k % 3]:  # rotated: each one follows each other alike
            t0 = time.perf_counter()
            read(block)
            spent[name] += time.perf_counter() - t0
    r["feather_random_s_us"] = spent["feather"] / len(idx) * 1e6
    r["mmstore_random_s_us"] = spent["mmstore"] / len(idx) * 1e6
    r["mmstore_random_proxy_s_us"] = spent["proxy"] / len(idx) * 1e6

    # Millisecond-scale one-shot operations: median of _REPEAT alternating repetitions each.
    sums = {"feather_sum_ms": lambda: pc.sum(feather.read_table(fpath, memory_map=True).column("a")).as_py(),
            "mmstore_to_arrow_sum_ms": lambda: pc.sum(arr.to_arrow().column("a")).as_py(),
            "mmstore_to_arrow_a_sum_ms": lambda: pc.sum(arr.to_arrow(columns=["a"]).column("a")).as_py(),
            "mmstore_column_sum_ms": lambda: int(arr.column("a").sum()),
            "mmstore_to_arrow_all_ms": lambda: arr.to_arrow()}
    times = {k: [] for k in sums}
    for _ in range(_REPEAT):
        for k, fn in sums.items():
            times[k].append(_time(fn)[0] * 1e3)
    for k, v in times.items():
        r[k] = statistics.median(v)
    r["feather_bytes_per_record"] = os.path.getsize(fpath) / n
    r["mmstore_bytes_per_record"] = os.path.getsize(mpath) / n
    del ft, col, vals
    import gc

    gc.collect()
    arr.close()
    for p in (fpath, mpath, opath, apath):
        os.unlink(p)
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reads", type=int, default=200_000)
    ap.add_argument("--json", default=None, help="write the results here (e.g. bench/results/bench_arrow.json)")
    args = ap.parse_args(argv)
    rng = random.Random(12)
    idx = [rng.randrange(args.n) for _ in range(args.reads)]
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-arrow-") as tmp:
        for run in range(args.runs):
            runs.append(one_run(args.n, tmp, run, idx))
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    ratios = {
        "build": med["feather_build_s"] / med["mmstore_build_s"],
        "random_get": med["feather_random_s_us"] / med["mmstore_random_s_us"],
        "to_arrow_sum": med["feather_sum_ms"] / med["mmstore_to_arrow_sum_ms"],
        "size": med["feather_bytes_per_record"] / med["mmstore_bytes_per_record"],
    }
    print(f"{'metric':<28}{'feather':>12}{'mmstore':>12}{'advantage':>11}{'target':>9}")
    rows = [("build (s)", "feather_build_s", "mmstore_build_s", "build"),
            ("random s[i] (us)", "feather_random_s_us", "mmstore_random_s_us", "random_get"),
            ("sum of a (ms)", "feather_sum_ms", "mmstore_to_arrow_sum_ms", "to_arrow_sum"),
            ("bytes per record", "feather_bytes_per_record", "mmstore_bytes_per_record", "size")]
    for label, f, m, k in rows:
        ok = "ok" if ratios[k] >= TARGETS[k] else "MISS"
        print(f"{label:<28}{med[f]:>12.4g}{med[m]:>12.4g}{ratios[k]:>10.2f}x{TARGETS[k]:>8.2f} {ok}")
    print(f"(mmstore: arr[i].s {med['mmstore_random_proxy_s_us']:.3g} us "
          f"({med['feather_random_s_us'] / med['mmstore_random_proxy_s_us']:.2f}x feather), "
          f"build from @struct objects {med['mmstore_build_objects_s']:.3g} s, from_arrow(table) "
          f"{med['mmstore_from_arrow_s']:.3g} s, column('a').sum() {med['mmstore_column_sum_ms']:.3g} ms, "
          f"to_arrow() of all columns {med['mmstore_to_arrow_all_ms']:.3g} ms, "
          f"to_arrow(columns=['a']) then sum {med['mmstore_to_arrow_a_sum_ms']:.3g} ms)")
    if args.json:
        out = {"config": {"n": args.n, "runs": args.runs, "reads": args.reads, "python": platform.python_version(),
                          "pyarrow": pa.__version__, "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
               "targets": TARGETS, "ratios": ratios, "medians": med, "runs": runs}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
