"""The ``mmstore`` command line: ``python -m mmstore demo | stats PATH | verify PATH | compact PATH``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from . import CorruptFileError, Dict, Error, List, WrongKindError

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


def _open_any(path: str, readonly: bool = True):
    try:
        return Dict(path, create=False, readonly=readonly)
    except WrongKindError:
        return List(path, create=False, readonly=readonly)


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
        print("Typed records, SharedDict and the spilling Pool are the next milestones (see docs/).")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mmstore", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="create a Dict and a List, reopen them in a new process, print stats")
    d.add_argument("--n", type=int, default=100_000)
    for name, help_ in (("stats", "print a store's statistics as JSON"), ("verify", "check every invariant"),
                        ("compact", "rewrite a store at its minimal size")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("path")
    args = p.parse_args(argv)
    if args.cmd == "demo":
        return demo(args.n)
    try:
        store = _open_any(args.path, readonly=args.cmd != "compact")
        with store:
            if args.cmd == "stats":
                print(json.dumps({"kind": type(store).__name__, **store.stats()}, indent=2))
            elif args.cmd == "verify":
                store.verify()
                print(f"{args.path}: OK ({len(store):,} entries)")
            else:
                store.compact()
                print(json.dumps(store.stats(), indent=2))
    except CorruptFileError as exc:
        print(f"mmstore: {exc}", file=sys.stderr)
        return 3
    except Error as exc:
        print(f"mmstore: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
