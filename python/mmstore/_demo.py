"""``python -m mmstore demo``: a short tour that proves what the README claims, step by step.

Each step prints what it does, then evidence a reader can check: the values read back, counts that must be
exact, the time each part took (and why the first lookup of a freshly opened file costs more than the next
ones). It needs only the package itself: without numpy, the two places that use it (a RecordArray column as
a numpy view, numpy arrays in the Pool) say so in one line and use bytes instead. With ``keep`` the files
stay in that directory for ``python -m mmstore stats|verify PATH``; otherwise they live in a temporary
directory removed at the end. The C++ step runs tools/mmstore_xlang.cpp when it is built (scripts/test.sh
builds it), found through ``xlang``, ``$MMSTORE_XLANG`` or ./build/test-cpp/mmstore_xlang.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from . import Dict, List

_FILES = ("demo.mms", "demo.mml", "crash.mms", "items.mms", "by_name.mms", "xlang.mms")

_XLANG_HINT = ("build it with scripts/test.sh, or: cmake -S . -B build/test-cpp -DMMSTORE_BUILD_TESTS=ON && "
               "cmake --build build/test-cpp --target mmstore_xlang; then pass --xlang PATH or set MMSTORE_XLANG")

# Run in a fresh process: open the file, time the first lookup (cold: its pages are not mapped into this
# process yet, so the kernel faults them in from the page cache) and then warm lookups of random keys.
_REOPEN_CHECK = r"""
import json, os, random, sys, time
import mmstore
path, n = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
d = mmstore.Dict(path, create=False)
opened = time.perf_counter() - t0
t0 = time.perf_counter()
first = d[f"k{n // 2}"]
first_s = time.perf_counter() - t0
keys = [f"k{random.randrange(n)}" for _ in range(1000)]
for k in keys:          # touch the pages once, then time the warm lookups
    d[k]
t0 = time.perf_counter()
for k in keys:
    d[k]
warm_s = (time.perf_counter() - t0) / len(keys)
sample = {k: d[k] for k in ("k0", f"k{n // 2}", f"k{n - 1}")}
d.verify()
print(json.dumps({"pid": os.getpid(), "open_ms": opened * 1e3, "first_us": first_s * 1e6, "warm_us": warm_s * 1e6,
                  "first": first, "sample": sample, "entries": len(d), "stats": d.stats()}))
d.close()
"""

# Writes key i -> "value i" for i = 0, 1, 2, ... forever, reporting every 1,000 writes; the parent kills it.
_CRASH_WRITER = r"""
import sys, mmstore
d = mmstore.Dict(sys.argv[1])
i = 0
while True:
    d[i] = f"value {i}" * (1 + i % 7)
    i += 1
    if i % 1000 == 0:
        print(i, flush=True)
"""

_SHARED_WORKER = r"""
import sys, mmstore
d = mmstore.SharedDict(sys.argv[1], create=False)
for _ in range(int(sys.argv[2])):
    with d.lock:
        d["n"] += 1
    d.increment("m")
d["workers"]["done"] += 1   # a nested dict, shared live
d.close()
"""


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def format_stats(st: dict) -> str:
    """One line for the stats() of a Dict or a List (the same keys, so the same format)."""
    per = st["allocated_bytes"] / max(1, st["entries"])
    return (f"{st['entries']:,} entries, file {_mib(st['file_bytes'])}, allocated {_mib(st['allocated_bytes'])} "
            f"({per:.0f} B/entry), capacity {st['capacity']:,} before the next growth")


def _has_numpy() -> bool:
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


def find_xlang(explicit: str | None) -> str | None:
    """The C++ example tool: ``explicit``, else $MMSTORE_XLANG, else ./build/test-cpp/mmstore_xlang."""
    for cand in (explicit, os.environ.get("MMSTORE_XLANG"), os.path.join("build", "test-cpp", "mmstore_xlang")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return os.path.abspath(cand)
    return None


class _Step:
    def __init__(self) -> None:
        self.n = 0
        self.results: list[str] = []

    def __call__(self, text: str) -> None:
        self.n += 1
        print(f"\n{self.n}. {text}", flush=True)

    def ok(self, summary: str) -> None:
        self.results.append(summary)


def run(n: int = 100_000, keep: str | None = None, xlang: str | None = None) -> int:
    """Run the demo; returns the process exit code (0 when every check held)."""
    n = max(n, 10)
    if xlang is not None and find_xlang(xlang) is None:
        print(f"mmstore demo: --xlang {xlang}: no executable file there", file=sys.stderr)
        return 2
    if keep is not None:
        os.makedirs(keep, exist_ok=True)
        clash = [f for f in _FILES if os.path.exists(os.path.join(keep, f))]
        if clash:
            print(f"mmstore demo: --keep {keep}: the directory already holds {', '.join(clash)} "
                  f"(from an earlier demo?); pass a new or empty directory", file=sys.stderr)
            return 2
        return _run_in(os.path.abspath(keep), n, xlang, kept=True)
    with tempfile.TemporaryDirectory(prefix="mmstore-demo-") as tmp:
        return _run_in(tmp, n, xlang, kept=False)


def _run_in(tmp: str, n: int, xlang: str | None, kept: bool) -> int:
    t_start = time.perf_counter()
    print(f"mmstore demo: the four faces on {n:,} entries, about 5 s. Files go to {tmp}"
          f"{'' if kept else ' (a temporary directory, removed at the end; --keep DIR keeps them)'}.", flush=True)
    step = _Step()
    steps = (_demo_dict, _demo_list, _demo_crash, _demo_records, _demo_shared, _demo_pool)
    for fn in steps:
        if fn(step, tmp, n) != 0:
            return 1
    if _demo_xlang(step, tmp, xlang) != 0:
        return 1
    print(f"\nSummary ({time.perf_counter() - t_start:.1f} s):")
    for line in step.results:
        print(f"  - {line}")
    if kept:
        print(f"Files kept in {tmp}. Inspect them with, for example:\n"
              f"  python -m mmstore stats {os.path.join(tmp, 'demo.mms')}\n"
              f"  python -m mmstore verify {os.path.join(tmp, 'crash.mms')}")
    return 0


def _demo_dict(step: _Step, tmp: str, n: int) -> int:
    path = os.path.join(tmp, "demo.mms")
    step(f"persistent Dict: writing {n:,} entries k<i> -> {{'i': i, 'sq': i*i, 'tag': 'v<i>'}} to {path}")
    t0 = time.perf_counter()
    with Dict(path) as d:
        d.update((f"k{i}", {"i": i, "sq": i * i, "tag": f"v{i}"}) for i in range(n))
    print(f"   wrote and closed in {time.perf_counter() - t0:.2f} s")
    print("   reopening in a new Python process (nothing is loaded: the file is mapped and read in place)")
    out = subprocess.run([sys.executable, "-c", _REOPEN_CHECK, path, str(n)], capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return 1
    info = json.loads(out.stdout)
    print(f"   pid {info['pid']} opened {info['entries']:,} entries in {info['open_ms']:.2f} ms")
    print(f"   first lookup {info['first_us']:.0f} us (cold: the kernel maps the touched pages into the new process "
          f"on first use), then {info['warm_us']:.2f} us per lookup warm (1,000 random keys)")
    print(f"   sample: {info['sample']}")
    print(f"   stats: {format_stats(info['stats'])}")
    expect = {"k0": {"i": 0, "sq": 0, "tag": "v0"}, f"k{n - 1}": {"i": n - 1, "sq": (n - 1) ** 2, "tag": f"v{n - 1}"}}
    if info["entries"] != n or any(info["sample"][k] != v for k, v in expect.items()):
        print("   MISMATCH after reopening", file=sys.stderr)
        return 1
    step.ok(f"Dict: {n:,} entries reopened in another process in {info['open_ms']:.1f} ms, "
            f"lookups {info['warm_us']:.2f} us warm ({info['first_us']:.0f} us for the very first)")
    return 0


def _demo_list(step: _Step, tmp: str, n: int) -> int:
    path = os.path.join(tmp, "demo.mml")
    step(f"persistent List: appending {n:,} ints to {path}, then replacing the first three with str")
    with List(path) as lst:
        lst.extend(range(n))
        lst[0:3] = ["a", "b", "c"]
    with List(path, readonly=True) as lst:
        head, tail, length = lst[:5], lst[-2:], len(lst)
        print(f"   reopened read-only: len={length:,} head={head} tail={tail}")
        print(f"   stats: {format_stats(lst.stats())}")
    if head != ["a", "b", "c", 3, 4] or tail != [n - 2, n - 1] or length != n:
        print("   MISMATCH after reopening", file=sys.stderr)
        return 1
    step.ok(f"List: {n:,} values reopened read-only, slices and negative indices as in a list")
    return 0


def _demo_crash(step: _Step, tmp: str, n: int) -> int:
    path = os.path.join(tmp, "crash.mms")
    target = max(1000, min(n, 20_000)) // 1000 * 1000
    step(f"crash safety: a child process writes i -> 'value i' to {os.path.basename(path)} without end; "
         f"once it has reported {target:,} writes it runs on briefly, then is killed with SIGKILL mid-write")
    child = subprocess.Popen([sys.executable, "-c", _CRASH_WRITER, path], stdout=subprocess.PIPE, text=True)
    reported = 0
    assert child.stdout is not None
    for line in child.stdout:
        reported = int(line)
        if reported >= target:
            break
    time.sleep(0.05)  # let it run on, so the kill lands at an arbitrary instant of some write
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    if reported < target:
        print(f"   the writer stopped early (exit {child.returncode})", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    with Dict(path) as d:
        opened_ms = (time.perf_counter() - t0) * 1e3
        d.verify()
        count = len(d)
        intact = all(d.get(i) == f"value {i}" * (1 + i % 7) for i in range(count))
    print(f"   pid {child.pid} killed (exit {child.returncode}) after reporting {reported:,} writes")
    print(f"   reopened in {opened_ms:.1f} ms (an unclean close is checked and repaired on open): {count:,} entries, "
          f"verify() OK, keys 0..{count - 1:,} all present with their values: {intact}")
    if not intact or count < reported:
        print("   MISMATCH after the crash", file=sys.stderr)
        return 1
    step.ok(f"kill -9: a writer killed after {reported:,} writes left {count:,} intact entries (none lost, none torn)")
    return 0


def _demo_records(step: _Step, tmp: str, n: int) -> int:
    import mmstore

    @mmstore.struct
    class Item:
        a: int
        b: float
        s: str

    path = os.path.join(tmp, "items.mms")
    step(f"typed records: RecordArray.build of {n:,} {{a: int, b: float, s: str}} records to {path}")
    t0 = time.perf_counter()
    items = (Item(a=i, b=i / 2, s=f"k{i:07d}") for i in range(n))
    arr = mmstore.RecordArray.build(items, path, schema=Item.__schema__, progress=False)
    built = time.perf_counter() - t0
    mid = arr[n // 2]
    print(f"   built in {built:.2f} s, {os.path.getsize(path) / n:.1f} B/record; arr[{n // 2}] = "
          f"(a={mid.a}, b={mid.b}, s={mid.s!r}) read through a proxy, no unpickling")
    if _has_numpy():
        total = int(arr.column("a").sum())
        print(f"   column('a') is a zero-copy numpy view: sum = {total:,} (expected {n * (n - 1) // 2:,})")
    else:
        total = n * (n - 1) // 2
        print("   column('a') (a zero-copy numpy view) skipped: numpy is not installed (pip install 'mmstore[numpy]')")
    mpath = os.path.join(tmp, "by_name.mms")
    pairs = ((f"k{i:07d}", arr[i]) for i in range(n))
    m = mmstore.Mapping.build(pairs, mpath, key=str, schema=Item.__schema__, progress=False)
    last = m[f"k{n - 1:07d}"].a
    print(f"   Mapping by name: m['k{n - 1:07d}'].a = {last}, 'nope' in m = {'nope' in m}")
    ok = mid.a == n // 2 and total == n * (n - 1) // 2 and last == n - 1
    arr.close()
    m.close()
    if not ok:
        print("   MISMATCH in the records", file=sys.stderr)
        return 1
    step.ok(f"records: {n:,} typed records built in {built:.2f} s and read in place, plus a str-keyed Mapping")
    return 0


def _demo_shared(step: _Step, tmp: str, n: int) -> int:
    import mmstore

    each, procs = max(1, min(n, 20_000)), 3
    with mmstore.SharedDict(recurse=True) as d:
        step(f"SharedDict {d.name!r} in /dev/shm: {procs} processes attach by name, each adds {each:,} "
             f"under d.lock and {each:,} with d.increment")
        d.update_many({"n": 0, "m": 0, "workers": {"done": 0}})
        t0 = time.perf_counter()
        kids = [subprocess.Popen([sys.executable, "-c", _SHARED_WORKER, d.name, str(each)]) for _ in range(procs)]
        if any(k.wait() != 0 for k in kids):
            return 1
        nv, mv, done = d["n"], d["m"], d["workers"]["done"]
        print(f"   n = {nv:,}, m = {mv:,} (exactly {procs * each:,} each), nested workers done = {done}, "
              f"in {time.perf_counter() - t0:.2f} s; reads never took the lock")
    if (nv, mv, done) != (procs * each, procs * each, procs):
        print("   MISMATCH in the SharedDict counts", file=sys.stderr)
        return 1
    step.ok(f"SharedDict: {procs} processes, {2 * procs * each:,} concurrent updates, every count exact")
    return 0


def _demo_pool(step: _Step, tmp: str, n: int) -> int:
    import mmstore

    numpy = _has_numpy()
    kind = "float64 arrays (2 MiB each, object i holds i*1000 + 0, 1, 2, ...)" if numpy else "bytes objects"
    step(f"Pool(max_memory='8MiB'): putting ten 2 MiB {kind}; least recently used ones spill to disk")
    if not numpy:
        print("   numpy is not installed, so bytes stand in for arrays: they come back as copies, where arrays come "
              "back as zero-copy views of the file (pip install 'mmstore[numpy]')")
    spill = os.path.join(tmp, "pool-spill")
    os.makedirs(spill, exist_ok=True)
    with mmstore.Pool(max_memory="8MiB", spill_dir=spill) as pool:
        if numpy:
            import numpy as np

            make = lambda i: np.arange(2**18, dtype=np.float64) + i * 1000  # noqa: E731
        else:
            make = lambda i: bytes(range(i, i + 8)) * 2**18  # noqa: E731
        refs = [pool.put(make(i)) for i in range(10)]
        st = pool.stats()
        print(f"   ram {_mib(st['ram_bytes'])} (limit 8.0 MiB), disk {_mib(st['disk_bytes'])}, "
              f"{st['ram_count']} objects in RAM, {st['disk_count']} spilled")
        x = pool.get(refs[1])
        if numpy:
            same = bool((x == make(1)).all())
            print(f"   get(refs[1]) -> [{x[0]:.0f}, {x[1]:.0f}, {x[2]:.0f}, ..., {x[-1]:.0f}], equal to what was put: "
                  f"{same}; a zero-copy view of the spill file: {mmstore.is_mapped(x)}")
        else:
            same = bytes(x) == make(1)
            print(f"   get(refs[1]) -> {bytes(x[:8])!r}..., {len(x):,} bytes, equal to what was put: {same}")
        ok = same and st["ram_bytes"] <= st["max_memory"] and st["disk_count"] > 0
        del x
    if not ok:
        print("   MISMATCH in the Pool", file=sys.stderr)
        return 1
    step.ok(f"Pool: 20 MiB through an 8 MiB limit, {st['disk_count']} objects spilled and read back equal")
    return 0


def _demo_xlang(step: _Step, tmp: str, xlang: str | None) -> int:
    import datetime as dt

    import mmstore

    tool = find_xlang(xlang)
    path = os.path.join(tmp, "xlang.mms")
    sample = {"name": "alice", "age": 31, "langs": ["en", "fr"], (2024, "q1"): 12.5, b"raw": {1, 2, 3},
              "born": dt.date(1993, 5, 17), "big": 2**80}
    step(f"C++ reads what Python wrote: {len(sample)} entries of different types in {os.path.basename(path)}")
    with Dict(path) as d:
        d.update(sample)
    if tool is None:
        print(f"   skipped: the C++ example tool mmstore_xlang is not built ({_XLANG_HINT})")
        step.ok("C++: skipped (mmstore_xlang not built)")
        return 0
    out = subprocess.run([tool, "dump-dict", path], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"   {tool} failed: {out.stderr.strip()}", file=sys.stderr)
        return 1
    lines = out.stdout.splitlines()
    want = {mmstore.encode(k, True).hex(): mmstore.encode(v).hex() for k, v in sample.items()}
    same = 0
    types = []
    for line in lines:
        khex, vhex, ktype, vtype = line.split(" ")
        same += want.get(khex) == vhex
        types.append(f"{ktype}->{vtype}")
    print(f"   {tool} dump-dict: {len(lines)} entries ({', '.join(types)})")
    print(f"   every value C++ decoded and re-encoded is byte-identical to Python's encoding: "
          f"{same == len(sample) == len(lines)}")
    if not same == len(sample) == len(lines):
        print("   MISMATCH between C++ and Python", file=sys.stderr)
        return 1
    step.ok(f"C++: mmstore_xlang read all {len(lines)} entries Python wrote, byte for byte")
    return 0
