"""bench/bench_scale.py -- mmstore at 1M, 10M and 100M entries: rates, file density, memory, reopen time.

Run:  PYTHONPATH=python python3 bench/bench_scale.py [--sizes 1M,10M,100M] [--kinds dict-int,list-str,...]

For every size and kind, one child process builds a store of that many entries and measures it; the parent
samples the child's /proc/<pid>/status every 10 ms for its peak RssAnon (anonymous memory: the heap,
which DESIGN.md contract 8 wants flat in the number of entries) and peak VmRSS (which also counts the
mapped file pages the kernel may evict). Kinds:

  dict-int   mmstore.Dict, d[i] = i for i in range(n)                (keys in order)
  dict-str   mmstore.Dict, d[str(i)] = 'v' + str(i)
  list-int   mmstore.List, l.append(i)
  list-str   mmstore.List, l.append('v' + str(i))
  records    mmstore.RecordArray.build of n records (a: int, b: float, s: str), from a generator
  mapping    mmstore.Mapping.build of n str keys -> int64 values, from a generator, default 256 MiB budget

Per Dict/List kind it reports:
  * insert rate: n / (time of the whole insert loop, rehashes and growth included); `last` is the rate of
    the last tenth of the loop, where the table is largest;
  * random-get rate: --gets lookups of random keys (or indices) after close and reopen in the same process;
  * file size per entry after close(): st_size / n and st_blocks * 512 / n ("alloc");
  * peak RssAnon and VmRSS of the child, and its RssAnon right after `import mmstore` (the floor);
  * reopen: in a fresh process (interpreter and `import mmstore` already done, page cache left warm as the
    build left it: nothing is dropped), the time of `Dict(path)` / `List(path)` plus the first get; median
    of --reopens processes. `ro ms` is the same with readonly=True. A writable open writes nothing
    durable (the dirty commit slot waits for the first write, docs/design.md), so the two should match;
    before that change the writable open synced a 4 KiB page and waited for the disk (3-160 ms).

Loops generate their keys as they go (str(i), random indices drawn in blocks of 64k into an array('q')),
so no list of n keys inflates the child's anonymous memory; the same loop shape at every size keeps the
rates comparable across sizes. Files go to --dir (default: a temporary directory under /tmp) and are
deleted after each measurement; check `df -h` first: 100M entries need about 15 GB for dict-str.
Results also go to bench/results/bench_scale.json (--out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_scale.json"
KINDS = ("dict-int", "dict-str", "list-int", "list-str", "records", "mapping")
ANON_TARGET_MIB = 64
REOPEN_TARGET_MS = 10.0
BUILD_KINDS = ("records", "mapping")
BUILD_BUDGET_MIB = 256


def parse_size(s: str) -> int:
    s = s.strip().upper().replace("_", "")
    mult = {"K": 10**3, "M": 10**6, "G": 10**9}.get(s[-1:], 1)
    return int(float(s[:-1] if s[-1:] in "KMG" else s) * mult)


def fmt_size(n: int) -> str:
    for unit, div in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def status_kib(pid, fields=("RssAnon", "VmRSS")) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in fields:
                    out[name] = int(rest.split()[0])
    except OSError:
        pass
    return out


# ---------------------------------------------------------------------------------------------------------
# Child side: one build and its measurements, printed as one JSON line.


def random_blocks(n: int, count: int, seed: int):
    """Yields array('q') blocks of random ints in [0, n), `count` in total (64k at a time: bounded memory)."""
    import random
    from array import array

    rnd = random.Random(seed)
    left = count
    while left > 0:
        k = min(left, 1 << 16)
        yield array("q", [rnd.randrange(n) for _ in range(k)])
        left -= k


def child_store(kind: str, n: int, path: str, gets: int) -> dict:
    import gc
    import resource

    import mmstore

    out: dict = {"anon_after_import_kib": status_kib(os.getpid())["RssAnon"]}
    gc.disable()
    is_dict = kind.startswith("dict")
    strs = kind.endswith("str")
    h = mmstore.Dict(path) if is_dict else mmstore.List(path)
    faults0 = resource.getrusage(resource.RUSAGE_SELF)
    tenth = max(1, n // 10)
    t0 = time.perf_counter()
    t_last = t0
    # Ten slices, so the rate of the last one (largest table) shows on its own. The loops are the same at
    # every size.
    for start in range(0, n, tenth):
        stop = min(n, start + tenth)
        t_last = time.perf_counter()
        if is_dict and strs:
            for i in range(start, stop):
                s = str(i)
                h[s] = "v" + s
        elif is_dict:
            for i in range(start, stop):
                h[i] = i
        elif strs:
            app = h.append
            for i in range(start, stop):
                app("v" + str(i))
        else:
            app = h.append
            for i in range(start, stop):
                app(i)
    t1 = time.perf_counter()
    out["insert_s"] = t1 - t0
    out["insert_rate"] = n / (t1 - t0)
    out["insert_rate_last"] = (stop - start) / (t1 - t_last)
    # Page faults per insert: first touches of new pages, and write faults on pages the kernel's writeback
    # cleaned meanwhile (a shared file mapping re-faults on the first write after each writeback).
    faults1 = resource.getrusage(resource.RUSAGE_SELF)
    out["minflt_per_insert"] = (faults1.ru_minflt - faults0.ru_minflt) / n
    out["majflt_per_insert"] = (faults1.ru_majflt - faults0.ru_majflt) / n
    t = time.perf_counter()
    h.close()
    out["close_s"] = time.perf_counter() - t
    st = os.stat(path)
    out["st_size"] = st.st_size
    out["alloc"] = st.st_blocks * 512
    h = mmstore.Dict(path) if is_dict else mmstore.List(path)
    assert len(h) == n, (len(h), n)
    total = 0.0
    count = 0
    for block in random_blocks(n, min(gets, n), seed=n):
        t = time.perf_counter()
        if is_dict and strs:
            for k in block:
                h[str(k)]
        else:
            for k in block:
                h[k]
        total += time.perf_counter() - t
        count += len(block)
    out["get_rate"] = count / total
    probe = n // 2
    want = ("v" + str(probe)) if strs else probe
    got = h[str(probe)] if (is_dict and strs) else h[probe]
    assert got == want, (got, want)
    h.close()
    return out


def child_records(kind: str, n: int, path: str) -> dict:
    import mmstore

    out: dict = {"anon_after_import_kib": status_kib(os.getpid())["RssAnon"]}
    t = time.perf_counter()
    if kind == "records":
        schema = mmstore.Schema.from_fields({"a": int, "b": float, "s": str}, name="Row")
        arr = mmstore.RecordArray.build(((i, i * 0.5, "k%d" % i) for i in range(n)), path, schema=schema,
                                        progress=False)
        out["build_s"] = time.perf_counter() - t
        ok = len(arr) == n and arr[n // 2].a == n // 2
        arr.close()
    else:
        m = mmstore.Mapping.build((("k%d" % i, i) for i in range(n)), path, key=str, value=mmstore.int64,
                                  progress=False)
        out["build_s"] = time.perf_counter() - t
        ok = len(m) == n and m["k%d" % (n // 2)] == n // 2
        m.close()
    assert ok
    out["insert_rate"] = n / out["build_s"]
    st = os.stat(path)
    out["st_size"] = st.st_size
    out["alloc"] = st.st_blocks * 512
    return out


REOPEN_CODE = r"""
import sys, time, mmstore
kind, path, n, ro = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "ro"
k = n // 3
t = time.perf_counter()
if kind == "dict-int":
    h = mmstore.Dict(path, readonly=ro); v = h[k]
elif kind == "dict-str":
    h = mmstore.Dict(path, readonly=ro); v = h[str(k)]
elif kind.startswith("list"):
    h = mmstore.List(path, readonly=ro); v = h[k]
elif kind == "records":
    h = mmstore.RecordArray(path); v = h[k].a
else:
    h = mmstore.Mapping(path); v = h["k%d" % k]
dt = time.perf_counter() - t
h.close()
print(dt)
"""


def reopen_ms(kind: str, path: str, n: int, runs: int, mode: str = "rw") -> float:
    times = []
    for _ in range(runs):
        p = subprocess.run([sys.executable, "-c", REOPEN_CODE, kind, path, str(n), mode], capture_output=True,
                           text=True)
        if p.returncode != 0:
            raise RuntimeError(f"reopen of {kind} failed:\n{p.stderr[-2000:]}")
        times.append(float(p.stdout.strip().splitlines()[-1]) * 1e3)
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------------------
# Parent side.


def run_child(args, kind: str, n: int, path: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, "--n", str(n), "--path", path,
           "--gets", str(args.gets)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"RssAnon": 0, "VmRSS": 0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            s = status_kib(proc.pid)
            for k, v in s.items():
                peak[k] = max(peak[k], v)
            time.sleep(0.01)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    stop.set()
    th.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} at {n:,} failed:\n{err[-3000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_anon_mib"] = peak["RssAnon"] / 1024
    res["peak_rss_mib"] = peak["VmRSS"] / 1024
    res["anon_after_import_mib"] = res.pop("anon_after_import_kib") / 1024
    return res


def measure(args, kind: str, n: int, root: str) -> dict:
    d = tempfile.mkdtemp(prefix=f"scale-{kind}-", dir=root)
    path = os.path.join(d, "store.mms")
    try:
        res = run_child(args, kind, n, path)
        res["reopen_ms"] = reopen_ms(kind, path, n, args.reopens)
        res["reopen_ro_ms"] = reopen_ms(kind, path, n, args.reopens, "ro")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    res["n"] = n
    res["size_per_entry"] = res["st_size"] / n
    res["alloc_per_entry"] = res["alloc"] / n
    return res


def render(results: dict) -> str:
    rows = results["rows"]
    lines = [f"mmstore {results['config']['mmstore']}, Python {platform.python_version()}, "
             f"loadavg at start {results['config']['loadavg']}"]
    hdr = (f"{'kind':9} {'n':>5} {'insert/s':>10} {'last/s':>10} {'get/s':>10} {'B/entry':>8} {'alloc':>7} "
           f"{'anon MiB':>8} {'rss MiB':>8} {'reopen ms':>9} {'ro ms':>6}")
    lines += [hdr, "-" * len(hdr)]
    base: dict = {}
    for r in rows:
        base.setdefault(r["kind"], r)
        lines.append(
            f"{r['kind']:9} {fmt_size(r['n']):>5} {r['insert_rate']:>10,.0f} "
            f"{r.get('insert_rate_last', float('nan')):>10,.0f} {r.get('get_rate', float('nan')):>10,.0f} "
            f"{r['size_per_entry']:>8.1f} {r['alloc_per_entry']:>7.1f} {r['peak_anon_mib']:>8.1f} "
            f"{r['peak_rss_mib']:>8.0f} {r['reopen_ms']:>9.2f} {r.get('reopen_ro_ms', float('nan')):>6.2f}")
    lines.append("")
    lines.append(f"targets: peak anon < {ANON_TARGET_MIB} MiB ({BUILD_BUDGET_MIB} MiB, the default memory_budget, for "
                 f"{' and '.join(BUILD_KINDS)} builds); reopen + first get < {REOPEN_TARGET_MS} ms (Dict, List); "
                 "insert rate at the largest size >= 0.5 x the rate at the smallest")
    for kind in dict.fromkeys(r["kind"] for r in rows):
        rs = [r for r in rows if r["kind"] == kind]
        anon = max(r["peak_anon_mib"] for r in rs)
        reopen = max(r["reopen_ms"] for r in rs)
        ratio = rs[-1]["insert_rate"] / rs[0]["insert_rate"]
        # Builds (records, mapping) have their own memory budget and no reopen target: their open checks
        # the whole file's checksums and Arrow offsets once (docs/design.md "Integrity"), O(file size).
        built = kind in BUILD_KINDS
        anon_target = BUILD_BUDGET_MIB if built else ANON_TARGET_MIB
        reopen_verdict = "(whole-file check)" if built else ("PASS" if reopen < REOPEN_TARGET_MS else "FAIL")
        lines.append(f"  {kind:9} anon max {anon:6.1f} MiB {'PASS' if anon < anon_target else 'FAIL'}   "
                     f"reopen max {reopen:6.2f} ms {reopen_verdict}   "
                     f"rate {fmt_size(rs[-1]['n'])}/{fmt_size(rs[0]['n'])} {ratio:5.2f}"
                     f"{'' if len(rs) == 1 else (' PASS' if ratio >= 0.5 else ' FAIL')}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1M", help="comma-separated entry counts, e.g. 1M,10M,100M (default 1M)")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {', '.join(KINDS)}")
    ap.add_argument("--gets", type=int, default=1_000_000, help="random gets per store (default 1M, at most n)")
    ap.add_argument("--reopens", type=int, default=3, help="fresh processes timing reopen + first get")
    ap.add_argument("--dir", default=None, help="where the stores are written (default: a temp dir in /tmp)")
    ap.add_argument("--out", default=str(RESULTS), help="JSON results file ('' for none)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        if args.child in ("records", "mapping"):
            res = child_records(args.child, args.n, args.path)
        else:
            res = child_store(args.child, args.n, args.path, args.gets)
        print(json.dumps(res))
        return 0

    import mmstore

    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for k in kinds:
        if k not in KINDS:
            ap.error(f"unknown kind {k!r}; choose from {', '.join(KINDS)}")
    root = tempfile.mkdtemp(prefix="mmstore-scale-", dir=args.dir)
    results = {"config": {"sizes": sizes, "kinds": kinds, "gets": args.gets, "mmstore": mmstore.__version__,
                          "python": platform.python_version(), "loadavg": os.getloadavg()[0],
                          "host": platform.node()},
               "rows": []}
    try:
        for kind in kinds:
            for n in sizes:
                r = measure(args, kind, n, root)
                r["kind"] = kind
                results["rows"].append(r)
                print(f"  {kind} {fmt_size(n)}: {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()})}",
                      file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results["rows"].sort(key=lambda r: (kinds.index(r["kind"]), r["n"]))
    print(render(results))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
