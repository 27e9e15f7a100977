"""Typed records: mmstore vs sharedbuffers (mapped_struct), side by side in one run.

Workload (issue 3): 1M records {a: int, b: float, s: str 'k%07d'}. Each peer runs in its own subprocess
(same interpreter unless --peer-python is given), every measure is the median of --repeat runs.

    python3 bench/bench_records.py                        # mmstore, and sharedbuffers if importable
    python3 bench/bench_records.py --peer-python build/bench-venv/bin/python   # sharedbuffers from that venv
    python3 bench/bench_records.py --big 10000000         # + 10M-entry mapping build: time and peak RSS
    python3 bench/bench_records.py --out bench/results/bench_records.json
    python3 bench/bench_records.py --ab DIR_A DIR_B   # two builds of mmstore (pip install --target DIR)

sharedbuffers 1.2.3 does not build on Python 3.11 with Cython 3 (its dependency clru fails to cythonize:
``ntablesize += max(1, ntablesize / 2)`` is a float under Cython 3's language_level=3); bench/setup_peers.sh
builds it with Cython < 3 into build/bench-venv.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class Item:
    __slot_types__ = {"a": int, "b": float, "s": str}
    __slots__ = ("a", "b", "s")

    def __init__(self, a, b, s):
        self.a, self.b, self.s = a, b, s


def make_items(n):
    return [Item(i, i * 0.5, "k%07d" % i) for i in range(n)]


def _import_mmstore():
    """The installed mmstore, or the one in the directory MMSTORE_BENCH_PKG names (--ab: two builds)."""
    pkg = os.environ.get("MMSTORE_BENCH_PKG")
    if pkg:
        sys.path.insert(0, pkg)
    import mmstore

    return mmstore


def timed(fn):
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


# ---------------------------------------------------------------------------------------------------------
# Workers: each returns {measure: value} for one repetition.


def run_mmstore(n, d, rep):
    import numpy as np

    mmstore = _import_mmstore()

    schema = mmstore.Schema.from_fields({"a": int, "b": float, "s": str}, name="Item")
    items = make_items(n)
    rng = random.Random(rep)
    idx = [rng.randrange(n) for _ in range(n)]
    keys = ["k%07d" % i for i in idx]
    out = {}
    path = os.path.join(d, "a.mms")
    out["array_build_s"], arr = timed(lambda: mmstore.RecordArray.build(items, path, schema=schema, progress=False))
    out["array_bytes_per_record"] = os.path.getsize(path) / n

    def rand():
        s = 0
        for i in idx:
            s += arr[i].a
        return s

    def scan():
        s = 0
        for r in arr:
            s += r.a
        return s

    t, _ = timed(rand)
    out["random_get_a_Mops"] = n / t / 1e6
    t, _ = timed(scan)
    out["scan_a_Mops"] = n / t / 1e6
    col = arr.column("a")
    ram = np.array(col)
    col.sum(), ram.sum()  # warm
    out["column_sum_s"] = min(timed(col.sum)[0] for _ in range(5))
    out["numpy_ram_sum_s"] = min(timed(ram.sum)[0] for _ in range(5))
    del col, ram
    arr.close()

    mpath = os.path.join(d, "m.mms")
    t, m = timed(lambda: mmstore.Mapping.build(((it.s, it) for it in items), mpath, key=str, schema=schema,
                                               progress=False))
    out["mapping_build_s"] = t
    out["mapping_bytes_per_entry"] = os.path.getsize(mpath) / n

    def mget():
        s = 0
        for k in keys:
            s += m[k].a
        return s

    t, _ = timed(mget)
    out["mapping_get_a_Mops"] = n / t / 1e6
    ipath = os.path.join(d, "id.mms")
    ids = mmstore.Mapping.build(((it.s, it.a) for it in items), ipath, key=str, value=mmstore.int64, progress=False)

    def idget():
        s = 0
        for k in keys:
            s += ids[k]
        return s

    t, _ = timed(idget)
    out["str_to_id_Mops"] = n / t / 1e6
    return out


def run_sharedbuffers(n, d, rep):
    from sharedbuffers import mapped_struct as ms

    schema = ms.Schema.from_typed_slots(Item)

    class ItemArray(ms.MappedArrayProxyBase):
        pass

    ItemArray.schema = schema

    class ItemMapping(ms.MappedMappingProxyBase):
        IdMapper = ms.StringIdMapper
        ValueArray = ItemArray

    items = make_items(n)
    rng = random.Random(rep)
    idx = [rng.randrange(n) for _ in range(n)]
    keys = ["k%07d" % i for i in idx]
    out = {}
    path = os.path.join(d, "a.sb")
    with open(path, "w+b") as f:
        out["array_build_s"], _ = timed(lambda: ItemArray.build(items, destfile=f))
    out["array_bytes_per_record"] = os.path.getsize(path) / n
    f = open(path, "rb")
    arr = ItemArray.map_file(f)

    def rand():
        s = 0
        for i in idx:
            s += arr[i].a
        return s

    def scan():
        s = 0
        for r in arr:
            s += r.a
        return s

    def scan_fast():  # sharedbuffers' fastest documented scan: one reused proxy
        s = 0
        for r in arr.iter_fast():
            s += r.a
        return s

    t, _ = timed(rand)
    out["random_get_a_Mops"] = n / t / 1e6
    t, _ = timed(scan)
    t2, _ = timed(scan_fast)
    out["scan_a_Mops"] = n / min(t, t2) / 1e6

    mpath = os.path.join(d, "m.sb")
    with open(mpath, "w+b") as mf:
        t, _ = timed(lambda: ItemMapping.build(((it.s, it) for it in items), destfile=mf))
    out["mapping_build_s"] = t
    out["mapping_bytes_per_entry"] = os.path.getsize(mpath) / n
    mf = open(mpath, "rb")
    m = ItemMapping.map_file(mf)

    def mget():
        s = 0
        for k in keys:
            s += m[k].a
        return s

    t, _ = timed(mget)
    out["mapping_get_a_Mops"] = n / t / 1e6
    ipath = os.path.join(d, "id.sb")
    with open(ipath, "w+b") as idf:
        ms.StringIdMapper.build(((it.s, it.a) for it in items), destfile=idf)
    idf = open(ipath, "rb")
    ids = ms.StringIdMapper.map_file(idf)

    def idget():
        s = 0
        for k in keys:
            s += ids[k]
        return s

    t, _ = timed(idget)
    out["str_to_id_Mops"] = n / t / 1e6
    return out


def run_big(n, d):
    """A mapping build of n entries from a generator (default 256 MiB budget): seconds and peak RSS."""
    import resource

    mmstore = _import_mmstore()

    schema = mmstore.Schema.from_fields({"a": int, "b": float, "s": str}, name="Item")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gen = (("k%08d" % i, Item(i, i * 0.5, "k%08d" % i)) for i in range(n))
    path = os.path.join(d, "big.mms")
    t, m = timed(lambda: mmstore.Mapping.build(gen, path, key=str, schema=schema, progress=False))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ok = m["k%08d" % (n // 2)].a == n // 2 and len(m) == n
    return {"entries": n, "build_s": t, "peak_rss_MiB": rss / 1024, "rss_before_MiB": rss0 / 1024,
            "bytes_per_entry": os.path.getsize(path) / n, "checked": ok}


def worker(args):
    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        if args.worker == "big":
            res = run_big(args.n, d)
        else:
            fn = run_mmstore if args.worker == "mmstore" else run_sharedbuffers
            res = fn(args.n, d, args.rep)
    print(json.dumps(res))


# ---------------------------------------------------------------------------------------------------------

MEASURES = [
    # (key, label, higher is better)
    ("array_build_s", "RecordArray build (s)", False),
    ("random_get_a_Mops", "arr[i].a random (M/s)", True),
    ("scan_a_Mops", "scan r.a (M items/s)", True),  # sharedbuffers: best of iteration and iter_fast()
    ("array_bytes_per_record", "array size (B/record)", False),
    ("mapping_build_s", "str mapping build (s)", False),
    ("mapping_get_a_Mops", "m[key].a (M/s)", True),
    ("mapping_bytes_per_entry", "mapping size (B/entry)", False),
    ("str_to_id_Mops", "str->id lookup (M/s)", True),
]


def run_once(python, name, n, rep, tmp, pkg=None):
    cmd = [python, os.path.abspath(__file__), "--worker", name, "--n", str(n), "--rep", str(rep)]
    if tmp:
        cmd += ["--tmp", tmp]
    env = dict(os.environ)
    if pkg is not None:
        env["MMSTORE_BENCH_PKG"] = pkg
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        print(f"{name} failed:\n{p.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_peers(peers, n, reps, tmp):
    """Runs the peers alternately (mmstore, sharedbuffers, mmstore, ...) so that both see the same load
    over time; returns the median of each measure per peer (None for a peer that failed). A peer is
    (label, worker, interpreter, package directory or None)."""
    runs = {label: [] for label, *_ in peers}
    for rep in range(reps):
        order = peers if rep % 2 == 0 else peers[::-1]  # each goes first alike
        for label, worker_name, python, pkg in order:
            if runs[label] is not None:
                r = run_once(python, worker_name, n, rep, tmp, pkg)
                runs[label] = None if r is None else runs[label] + [r]
    return {label: (None if not rs else {k: statistics.median(r[k] for r in rs) for k in rs[0]})
            for label, rs in runs.items()}


def ab(args):
    """--ab DIR_A DIR_B: mmstore's measures for two builds, runs alternating, medians and B/A."""
    a, b = args.ab
    res = run_peers([("A", "mmstore", sys.executable, a), ("B", "mmstore", sys.executable, b)], args.n,
                    args.repeat, args.tmp)
    print(f"n = {args.n:,}, medians of {args.repeat} alternating runs; A = {a}, B = {b}; load {os.getloadavg()}")
    print(f"{'measure':28} {'A':>10} {'B':>10} {'B cost':>8}   (B cost: time B / time A, > 1 is slower)")
    for key, label, higher in MEASURES:
        x, y = res["A"][key], res["B"][key]
        cost = (x / y) if higher else (y / x)
        print(f"{label:28} {x:10.3f} {y:10.3f} {cost:7.3f}x")
    x, y = res["A"]["column_sum_s"], res["B"]["column_sum_s"]
    print(f"{'column(a).sum (ms)':28} {x * 1e3:10.3f} {y * 1e3:10.3f} {y / x:7.3f}x")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peer-python", default=sys.executable, help="interpreter that has sharedbuffers")
    ap.add_argument("--big", type=int, default=0, help="also build a mapping of this many entries")
    ap.add_argument("--out", help="write the results as JSON")
    ap.add_argument("--tmp", help="directory for the files built")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--rep", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--ab", nargs=2, metavar=("DIR_A", "DIR_B"),
                    help="compare two mmstore builds (directories holding an installed mmstore each)")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.ab:
        return ab(args)

    load0 = os.getloadavg()
    res = run_peers([("mmstore", "mmstore", sys.executable, None), ("sharedbuffers", "sharedbuffers", args.peer_python, None)],
                    args.n, args.repeat, args.tmp)
    mm, sb = res["mmstore"], res["sharedbuffers"]
    load1 = os.getloadavg()
    print(f"n = {args.n:,}, medians of {args.repeat} runs (peers alternating); load average "
          f"{load0[0]:.2f} at start, {load1[0]:.2f} at end on {os.cpu_count()} CPUs (noise indicator)")
    print(f"{'measure':28} {'mmstore':>10} {'sharedbuffers':>14} {'ratio':>8}")
    for key, label, _higher in MEASURES:
        a = mm[key] if mm else float("nan")
        b = sb[key] if sb else float("nan")
        ratio = (a / b) if sb else float("nan")
        print(f"{label:28} {a:10.3f} {b:14.3f} {ratio:7.2f}x")
    if mm:
        print(f"{'column(a).sum / RAM sum':28} {mm['column_sum_s'] / mm['numpy_ram_sum_s']:10.2f}x "
              f"({mm['column_sum_s'] * 1e3:.3f} ms vs {mm['numpy_ram_sum_s'] * 1e3:.3f} ms)")
    big = None
    if args.big:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "big", "--n", str(args.big)]
        if args.tmp:
            cmd += ["--tmp", args.tmp]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode == 0:
            big = json.loads(p.stdout.strip().splitlines()[-1])
            print(f"big mapping: {big['entries']:,} entries in {big['build_s']:.1f} s, peak RSS "
                  f"{big['peak_rss_MiB']:.0f} MiB (before build {big['rss_before_MiB']:.0f} MiB), "
                  f"{big['bytes_per_entry']:.1f} B/entry, lookups ok: {big['checked']}")
        else:
            print("big mapping failed:\n" + p.stderr[-3000:], file=sys.stderr)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"n": args.n, "repeat": args.repeat, "loadavg": [load0, load1], "mmstore": mm,
                       "sharedbuffers": sb, "big": big}, f, indent=2)


if __name__ == "__main__":
    main()
