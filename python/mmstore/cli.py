"""The ``mmstore`` command line: ``python -m mmstore demo | info | stats | verify | compact | dump | load | shm``.

Every store kind is handled: Dict, List, RecordArray, Mapping and Pool save files by path, SharedDict segments
by name as ``shm:NAME``. The inspection commands (info, stats, verify, compact, dump, load, shm) live in
``_cli_store.py``; this file keeps the demo and the argument parser."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from . import CorruptFileError, Dict, Error, List

_REOPEN_CHECK = r"""
import json, sys, time
import mmstore
t0 = time.perf_counter()
d = mmstore.Dict(sys.argv[1], create=False)
opened = time.perf_counter() - t0
t0 = time.perf_counter()
n = int(sys.argv[2])
sample = {k: d[k] for k in (f"k0", f"k{n // 2}", f"k{n - 1}")}
first = time.perf_counter() - t0
d.verify()
print(json.dumps({"pid": __import__("os").getpid(), "open_ms": opened * 1e3, "three_lookups_us": first * 1e6,
                  "sample": sample, "entries": len(d), "stats": d.stats()}))
d.close()
"""


def demo(n: int) -> int:
    n = max(n, 1)
    with tempfile.TemporaryDirectory(prefix="mmstore-demo-") as tmp:
        path = os.path.join(tmp, "demo.mms")
        print(f"1. persistent Dict: writing {n:,} entries to {path}")
        t0 = time.perf_counter()
        with Dict(path) as d:
            d.update((f"k{i}", {"i": i, "sq": i * i, "tag": f"v{i}"}) for i in range(n))
            d["meta"] = {"created_by": os.getpid(), "when": time.time()}
        print(f"   wrote and closed in {time.perf_counter() - t0:.2f} s")
        print("2. reopening in a new process (no load step: the file is mapped in place)")
        out = subprocess.run([sys.executable, "-c", _REOPEN_CHECK, path, str(n)], capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        info = json.loads(out.stdout)
        print(f"   pid {info['pid']} opened {info['entries']:,} entries in {info['open_ms']:.2f} ms; "
              f"3 lookups took {info['three_lookups_us']:.0f} us")
        print(f"   sample: {info['sample']}")
        st = info["stats"]
        print(f"   stats: file {st['file_bytes'] / 2**20:.1f} MiB, on disk {st['allocated_bytes'] / 2**20:.1f} MiB, "
              f"{st['allocated_bytes'] / max(1, st['entries']):.0f} B/entry, capacity {st['capacity']:,} entries before the next rebuild")
        lpath = os.path.join(tmp, "demo.mml")
        print(f"3. persistent List: appending {n:,} values to {lpath}")
        with List(lpath) as lst:
            lst.extend(range(n))
            lst[0:3] = ["a", "b", "c"]
        with List(lpath, readonly=True) as lst:
            print(f"   reopened: len={len(lst):,} head={lst[:5]} tail={lst[-2:]} stats={lst.stats()}")
        _demo_records(tmp, n)
        if _demo_shared(n) != 0:
            return 1
        _demo_pool(tmp)
    return 0


def _demo_records(tmp: str, n: int) -> None:
    import mmstore

    @mmstore.struct
    class Item:
        a: int
        b: float
        s: str

    path = os.path.join(tmp, "items.mms")
    print(f"4. typed records: RecordArray.build of {n:,} {{a: int, b: float, s: str}} records to {path}")
    t0 = time.perf_counter()
    items = (Item(a=i, b=i / 2, s=f"k{i:07d}") for i in range(n))
    arr = mmstore.RecordArray.build(items, path, schema=Item.__schema__, progress=False)
    built = time.perf_counter() - t0
    print(f"   built in {built:.2f} s, {os.path.getsize(path) / n:.1f} B/record; arr[{n // 2}] = "
          f"(a={arr[n // 2].a}, b={arr[n // 2].b}, s={arr[n // 2].s!r}) read through a proxy, no unpickling")
    print(f"   column('a') is a zero-copy numpy view: sum = {int(arr.column('a').sum()):,}")
    mpath = os.path.join(tmp, "by_name.mms")
    pairs = ((f"k{i:07d}", arr[i]) for i in range(n))
    m = mmstore.Mapping.build(pairs, mpath, key=str, schema=Item.__schema__, progress=False)
    print(f"   Mapping by name: m['k{n - 1:07d}'].a = {m[f'k{n - 1:07d}'].a}, 'nope' in m = {'nope' in m}")
    arr.close()
    m.close()


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


def _demo_shared(n: int) -> int:
    import mmstore

    each, procs = max(1, min(n, 20_000)), 3
    with mmstore.SharedDict(recurse=True) as d:
        print(f"5. SharedDict {d.name!r} in /dev/shm: {procs} processes attach by name, each adds {each:,} "
              f"under d.lock and {each:,} with d.increment")
        d.update_many({"n": 0, "m": 0, "workers": {"done": 0}})
        t0 = time.perf_counter()
        kids = [subprocess.Popen([sys.executable, "-c", _SHARED_WORKER, d.name, str(each)]) for _ in range(procs)]
        if any(k.wait() != 0 for k in kids):
            return 1
        print(f"   n = {d['n']:,}, m = {d['m']:,} (exactly {procs * each:,} each), nested workers done = "
              f"{d['workers']['done']}, in {time.perf_counter() - t0:.2f} s; reads never took the lock")
    return 0


def _demo_pool(tmp: str) -> None:
    import numpy as np

    import mmstore

    with mmstore.Pool(max_memory="8MiB", spill_dir=tmp) as pool:
        print("6. Pool(max_memory='8MiB'): putting ten 2 MiB arrays, least recently used ones spill to disk")
        refs = [pool.put(np.full(2**18, i, dtype=np.float64)) for i in range(10)]
        st = pool.stats()
        print(f"   ram {st['ram_bytes'] / 2**20:.0f} MiB, disk {st['disk_bytes'] / 2**20:.0f} MiB, spills {st['spills']}")
        x = pool.get(refs[0])
        print(f"   get(refs[0]) -> mean {x.mean():.0f}, read back by mapping (zero-copy view: {mmstore.is_mapped(x)})")


# ---------------------------------------------------------------------------------------------------------
# The argument parser: one sub-command per entry, each with its own --help

_TARGET_HELP = "a store file (Dict, List, RecordArray, Mapping, Pool save file) or shm:NAME for a SharedDict"
_COMMANDS = {  # name: (help, takes a target)
    "info": ("kind, format version, sizes, schema or element types, clean/dirty", True),
    "stats": ("a store's statistics (JSON)", True),
    "verify": ("check every invariant (reads the whole file); exit 3 when it fails", True),
    "compact": ("rewrite a Dict/List/SharedDict at its minimal size", True),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmstore", description=__doc__.split("\n\n")[0],
                                epilog="exit codes: 0 ok, 2 usage or missing target, 3 corrupt or foreign file")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    d = sub.add_parser("demo", help="the four faces: Dict/List files, typed records, SharedDict, the spilling Pool")
    d.add_argument("--n", type=int, default=100_000)
    for name, (help_, _) in _COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("path", metavar="TARGET", help=_TARGET_HELP)
        sp.add_argument("--json", action="store_true", help="print the result as JSON")
    sp = sub.add_parser("dump", help="write a store as JSON lines (or an Arrow file for records)",
                        description="Write a store as JSON lines: a header line, then one line per entry; types "
                                    "JSON cannot carry are tagged {\"$t\": type, \"v\": ...}.")
    sp.add_argument("path", metavar="TARGET", help=_TARGET_HELP)
    sp.add_argument("-o", "--output", help="output file (default: stdout)")
    sp.add_argument("--format", choices=("jsonl", "arrow"), default="jsonl",
                    help="jsonl (default) or arrow (an Arrow IPC file; RecordArray and Mapping only)")
    sp.add_argument("--json", action="store_true", help="print a JSON summary on stderr")
    sp = sub.add_parser("load", help="read a dump back into a new store",
                        description="Read a dump made by 'mmstore dump' (JSON lines or Arrow) into a new store.")
    sp.add_argument("dump", help="the dump file")
    sp.add_argument("path", metavar="TARGET", help="the new store: a path, or shm:NAME for a SharedDict")
    sp.add_argument("--json", action="store_true", help="print the result as JSON")
    shm = sub.add_parser("shm", help="list and remove SharedDict segments", description="SharedDict segments.")
    shm_sub = shm.add_subparsers(dest="shm_cmd", required=True, metavar="ACTION")
    sp = shm_sub.add_parser("ls", help="list segments with size, creator pid and whether they are in use")
    sp.add_argument("--json", action="store_true", help="print the result as JSON")
    sp = shm_sub.add_parser("rm", help="remove a segment (refused while in use unless --force)")
    sp.add_argument("name", help="segment name (NAME or shm:NAME)")
    sp.add_argument("--force", action="store_true", help="remove it even if a process has it attached")
    sp.add_argument("--json", action="store_true", help="print the result as JSON")
    sp = shm_sub.add_parser("gc", help="remove every segment no process has attached (left by crashes)")
    sp.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def _print(result, as_json: bool, text) -> None:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(text(result))


def _kv(result: dict) -> str:
    return "\n".join(f"{k}: {v}" for k, v in result.items())


def _run(args) -> int:
    from . import _cli_store as cs

    if args.cmd == "info":
        _print(cs.info(args.path), args.json, _kv)
    elif args.cmd == "stats":
        _print(cs.stats(args.path), True, None)
    elif args.cmd == "verify":
        _print(cs.verify(args.path), args.json, lambda r: f"{args.path}: OK ({r['entries']:,} entries)")
    elif args.cmd == "compact":
        _print(cs.compact(args.path), True, None)
    elif args.cmd == "dump":
        out = open(args.output, "wb") if args.output else sys.stdout.buffer
        try:
            n = cs.dump(args.path, out, args.format)
        finally:
            if args.output:
                out.close()
        if args.json:
            print(json.dumps({"target": args.path, "entries": n, "format": args.format}), file=sys.stderr)
    elif args.cmd == "load":
        n = cs.load(args.dump, args.path)
        _print({"target": args.path, "entries": n}, args.json, lambda r: f"{args.path}: loaded {n:,} entries")
    elif args.shm_cmd == "ls":
        rows = cs.shm_ls()
        _print(rows, args.json, lambda r: "\n".join(
            [f"{'NAME':<32} {'SIZE':>12} {'PID':>8} IN_USE"]
            + [f"{x['name']:<32} {x['size']:>12,} {x['creator_pid']:>8} {'yes' if x['in_use'] else 'no'}" for x in r]))
    elif args.shm_cmd == "rm":
        _print(cs.shm_rm(args.name, args.force), args.json, lambda r: f"removed {r['removed'][0]}")
    else:
        _print(cs.shm_gc(), args.json, lambda r: f"removed {len(r['removed'])} unused segment(s)"
               + "".join(f"\n  {n}" for n in r["removed"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    from ._cli_store import CliError

    args = _parser().parse_args(argv)
    if args.cmd == "demo":
        return demo(args.n)
    try:
        return _run(args)
    except BrokenPipeError:  # `mmstore dump x | head`
        return 0
    except CorruptFileError as exc:
        print(f"mmstore: {exc}", file=sys.stderr)
        return 3
    except (Error, CliError, ValueError, TypeError, OSError) as exc:
        print(f"mmstore: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
